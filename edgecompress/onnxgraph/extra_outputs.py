"""Reading intermediate tensors: expose them as extra graph outputs and start an ONNX Runtime session."""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from .runtime import make_session


def serialized_with_outputs(model: onnx.ModelProto, names: Iterable[str]) -> bytes:
    """`model` serialized with `names` (those not already graph outputs) appended as outputs; `model` is
    left as it was."""
    existing = {o.name for o in model.graph.output}
    added = [n for n in names if n not in existing]
    outputs = model.graph.output
    for n in added:
        outputs.append(onnx.ValueInfoProto(name=n))
    try:
        return model.SerializeToString()
    finally:
        del outputs[len(outputs) - len(added):]


def session_with_outputs(model: onnx.ModelProto, names: Iterable[str], *, origin: str, threads: int = 1,
                         graph_optimization: str = "all"):
    """An InferenceSession on `model` whose outputs include the intermediate tensors `names` (see make_session)."""
    return make_session(serialized_with_outputs(model, names), threads=threads,
                        graph_optimization=graph_optimization, origin=origin)
