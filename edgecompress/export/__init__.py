"""Export stage: PyTorch model -> ONNX, validated against PyTorch output by output.

`export(model, config, *, out, data=None) -> StageResult`
    model: "path/file.py:factory" | "package.module:factory" | a .pt2 ExportedProgram | a distill checkpoint
           (.pt), or a ModelArtifact of one of those.
Steps: load (weights via torch.load(weights_only=True)) -> torch.onnx.export (dynamo, TorchScript fallback with a
notice) -> fix duplicate value names -> onnx.checker -> ONNX Runtime load -> parity on random inputs (dynamic
axes at several sizes) and on `data` -> write `out` atomically. Over tolerance: ValidationError (exit 1) with
the per-output report and no output file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifact import ModelArtifact, StageResult
from ..errors import ConfigError, ModelError, OutputError, ValidationError
from ..fsutil import check_output_path, private_tempdir
from .config import ExportConfig, InputSpec, parse_dynamic, parse_input
from .parity import Parity, check_parity, data_feeds, forward, validate_data_early

__all__ = ["ExportConfig", "ExportReport", "InputSpec", "export", "parse_dynamic", "parse_input"]


@dataclass(frozen=True)
class ExportReport:
    ok: bool
    exporter: str  # "dynamo" | "torchscript"
    opset: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    tolerance: float
    parity: list[Parity]  # one per check (random inputs, data)
    max_error_rel_to_scale: float
    size_bytes: int = 0
    params: int = 0
    fixes: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""  # captured exporter output (not in to_dict; the CLI prints it with --debug)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "log"}
        d["parity"] = [p.to_dict() for p in self.parity]
        return d


def _probe_writable(folder: Path) -> None:
    """Fail before any work if a file cannot be created in `folder` (permission bits alone miss root, ro mounts)."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".edgecompress-probe-", dir=folder)
    except OSError as exc:
        raise OutputError(f"output folder is not writable: {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def _input_specs(config: ExportConfig, source, kind: str, ckpt_names: list[str] | None) -> list[InputSpec]:
    specs = config.input_specs()
    if specs:
        return specs
    if kind == "pt2":
        from .source import program_inputs

        return [InputSpec(n, s, d) for n, s, d in program_inputs(source)]
    hint = f" (the checkpoint's inputs are {list(ckpt_names)})" if ckpt_names else ""
    raise ConfigError(f"inputs: give each model input as --input NAME:SHAPE[:DTYPE]{hint}, e.g. input:1x1x28x28")


def _example_args(specs: list[InputSpec], seed: int):
    import numpy as np
    import torch

    from ..data import random_array

    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        out.append(torch.from_numpy(random_array(rng, s.shape, s.dtype, s.name)))
    return tuple(out)


def _output_names(config: ExportConfig, outputs: list[Any], keys: list[str] | None) -> list[str]:
    if config.output_names:
        if len(config.output_names) != len(outputs):
            raise ConfigError(f"output_names: {len(config.output_names)} names for {len(outputs)} model outputs")
        return list(config.output_names)
    if keys:
        return keys
    return ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]


def export(model: str | os.PathLike[str] | ModelArtifact, config: ExportConfig | None = None, *,
           out: str | os.PathLike[str], data: Any = None,
           progress: Callable[[str], None] | None = None) -> StageResult:
    """Export `model` to ONNX at `out` and validate it (see module doc)."""
    from .source import load_source
    from .torch_export import run_export

    config = config or ExportConfig()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    parent = model if isinstance(model, ModelArtifact) else None
    model_ref = str(model.path) if isinstance(model, ModelArtifact) else str(model)
    out = Path(out).absolute()
    if out.suffix != ".onnx":
        raise ConfigError(f"out must be a .onnx file, got {out.name!r}")
    check_output_path(out)
    _probe_writable(out.parent)
    specs = config.input_specs()
    feed_data = validate_data_early(data, specs, config.data_samples) if data is not None and specs else None

    say(f"loading {model_ref}")
    import torch

    torch.manual_seed(config.seed)  # a factory without weights then builds the same model on every run
    source, kind, ckpt_names = load_source(model_ref, config.weights)
    specs = _input_specs(config, source, kind, ckpt_names)
    if data is not None and feed_data is None:
        feed_data = validate_data_early(data, specs, config.data_samples)
    module = source.module() if kind == "pt2" else source.eval()
    args = _example_args(specs, config.seed)
    ref_out, keys = forward(module, args, what="example inputs " + ", ".join(
        f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in specs))
    names = _output_names(config, ref_out, keys)

    with private_tempdir("edgecompress-export-") as tmp:
        raw = tmp / "raw.onnx"
        say("exporting (torch.onnx)")
        used, notices, log = run_export(source if kind == "pt2" else module, module, args, specs, names, raw,
                                        opset=config.opset, exporter=config.exporter)
        try:
            return _validate_and_write(proto_path=raw, out=out, config=config, module=module, specs=specs,
                                       feed_data=feed_data, used=used, notices=notices, log=log, t0=t0,
                                       parent=parent, model_ref=model_ref, kind=kind, say=say)
        except ValidationError as exc:
            exc.exporter_log = log  # shown by the CLI with --debug
            raise


def _validate_and_write(*, proto_path: Path, out: Path, config: ExportConfig, module, specs: list[InputSpec],
                        feed_data, used: str, notices: list[str], log: str, t0: float, parent, model_ref: str,
                        kind: str, say: Callable[[str], None]) -> StageResult:
    import onnx

    from ..fsutil import atomic_write_bytes
    from ..onnxgraph.census import count_params
    from ..onnxgraph.io import check_model, opset_version, output_specs
    from ..onnxgraph.runtime import make_session
    from .names import fix_duplicate_names, strip_node_metadata

    for n in notices:
        say(f"notice: {n}")
    proto = onnx.load(str(proto_path))
    if not config.debug_metadata:
        strip_node_metadata(proto)
    fixes = fix_duplicate_names(proto.graph)
    for f in fixes:
        say(f"fixed: {f}")
    try:
        check_model(proto, "the exported model")
    except ModelError as exc:  # the exporter's output, not the user's input: the work failed
        raise ValidationError(exc.message, hint="re-run with --debug for the exporter log") from None
    data_bytes = proto.SerializeToString()
    say("validating in ONNX Runtime")
    try:
        session = make_session(data_bytes, origin="the exported model")
    except ModelError as exc:
        raise ValidationError(exc.message, hint="re-run with --debug for the exporter log") from None
    onnx_names = [o.name for o in session.get_outputs()]
    parity = [check_parity(module, session, specs, onnx_names, config, kind="random")]
    if feed_data is not None:
        feeds = data_feeds(feed_data, proto)
        parity.append(check_parity(module, session, specs, onnx_names, config, kind="data", feeds=feeds))
    worst = max((p.max_error_rel_to_scale for p in parity), default=0.0)
    ok = all(p.ok for p in parity)
    report = ExportReport(
        ok=ok, exporter=used, opset=opset_version(proto), inputs=[s.to_dict() for s in specs],
        outputs=[s.to_dict() for s in output_specs(proto)], tolerance=config.tolerance, parity=parity,
        max_error_rel_to_scale=worst, size_bytes=len(data_bytes), params=count_params(proto), fixes=fixes,
        notices=notices, seconds=round(time.perf_counter() - t0, 3), log=log)
    if not ok:
        bad = [f"{d['name']} ({p.kind}): max_abs={d['max_abs']:.3g}, rel to scale {d['rel_to_scale']:.3g}"
               for p in parity for d in p.outputs if not d["ok"]]
        raise ValidationError(f"exported model differs from PyTorch over tolerance {config.tolerance:g}: "
                              + "; ".join(bad), report=report.to_dict())
    atomic_write_bytes(out, data_bytes)
    metrics = {"size_bytes": report.size_bytes, "params": report.params,
               "max_error_rel_to_scale": report.max_error_rel_to_scale, "exporter": used}
    src_art = parent or ModelArtifact(path=Path(model_ref), format="pt2" if kind == "pt2" else "torch",
                                      stage="input", config={"model": model_ref, "weights": config.weights})
    artifact = src_art.derive(out, "export", config=config, metrics=metrics)
    return StageResult(artifact, report)

from .._api import callable_module  # noqa: E402

callable_module(__name__, "export")
