"""Package stage: a reproducible, verifiable edge release.

    from edgecompress.package import PackageConfig, package, verify
    result = package("int8.onnx", PackageConfig(name="mnist", version="1.0.0"), out="release",
                     target="x86_64-avx2", baseline="fp32.onnx", eval_data="calibration_data/mnist_eval.npz")
    assert verify("release.tar.gz").ok

The release holds model.onnx, model.ort (ORT format), required_operators.config, manifest.json, report.html,
MODEL_CARD.md and sample/ (see docs/package.md). Importing this package does not import torch.
"""

from typing import TYPE_CHECKING

from .._api import callable_module, lazy_exports
from .config import PackageConfig, PackageReport, VerifyReport

if TYPE_CHECKING:
    from .builder import package, tarball_path
    from .verify import verify

__all__ = ["PackageConfig", "PackageReport", "VerifyReport", "package", "tarball_path", "verify"]

lazy_exports(__name__, {"package": "builder", "tarball_path": "builder", "verify": "verify"})
callable_module(__name__, "package")
