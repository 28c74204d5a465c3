"""Reading intermediate tensors: expose them as extra graph outputs and start an ONNX Runtime session."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import onnx

from .runtime import make_session


@contextlib.contextmanager
def _with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> Iterator[onnx.ModelProto]:
    """Within the block, `model` has `names` (those not already graph outputs) appended as outputs."""
    existing = {o.name for o in model.graph.output}
    added = [n for n in names if n not in existing]
    outputs = model.graph.output
    for n in added:
        outputs.append(onnx.ValueInfoProto(name=n))
    try:
        yield model
    finally:
        del outputs[len(outputs) - len(added):]


def serialized_with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> bytes:
    """`model` serialized with `names` (those not already graph outputs) appended as outputs; `model` is
    left as it was."""
    with _with_outputs(model, names):
        return model.SerializeToString()


def session_with_outputs(model: onnx.ModelProto, names: Iterable[str], *, origin: str, threads: int = 1,
                         graph_optimization: str = "all"):
    """An InferenceSession on `model` whose outputs include the intermediate tensors `names` (see make_session:
    a model over 2 GB goes to ORT through external data)."""
    with _with_outputs(model, names):
        return make_session(model, threads=threads, graph_optimization=graph_optimization, origin=origin)
