"""The variants of one zoo model, each made as a user makes it: ONNX Runtime's quantizers called with their
defaults (in a private temp dir that is also the working directory, so ORT's temp files never reach the cwd), and
edgecompress's CLI in a subprocess (exit code, wall time, the --json report, the error line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "edgecompress"


@dataclass
class Variant:
    """One model of a zoo entry's table: how it was made and what came of it."""

    name: str
    label: str
    tool: str  # fp32 | ort | edgecompress
    path: Path | None = None
    exit: int | None = None  # CLI exit code (edgecompress); None for in-process ORT calls
    wall_s: float | None = None
    error: str = ""
    note: str = ""
    command: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None  # the CLI's --json object
    timing: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.path is not None and self.path.is_file() and not self.error

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "tool": self.tool,
                "path": str(self.path) if self.path else None, "exit": self.exit,
                "wall_s": None if self.wall_s is None else round(self.wall_s, 2), "error": self.error,
                "note": self.note, "command": self.command, "size_mb": size_mb(self.path) if self.ok else None,
                "timing": self.timing, "fidelity": self.fidelity, "report": slim(self.report)}


def slim(obj: Any) -> Any:
    """The CLI report without per-channel lists (prune groups' criterion values and removed indices become
    counts): the results file stays small enough to commit."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "criterion_values" and isinstance(v, list):
                continue
            if k == "removed" and isinstance(v, list):
                out["removed_count"] = len(v)
                continue
            out[k] = slim(v)
        return out
    if isinstance(obj, list):
        return [slim(v) for v in obj]
    return obj


def size_mb(path: Path | None) -> float | None:
    """Model size in MB (1e6 bytes), external-data sidecars included."""
    if path is None or not path.is_file():
        return None
    total = path.stat().st_size
    for side in path.parent.glob(path.name + ".data"):
        total += side.stat().st_size
    return round(total / 1e6, 3)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _in_private_dir(fn: Callable[[Path], None]) -> None:
    from edgecompress.fsutil import private_tempdir, working_directory

    with private_tempdir("realbench-ort-") as tmp, working_directory(tmp):
        fn(tmp)


def _pre_process(src: Path, pre: Path) -> str:
    """quant_pre_process with ORT's defaults; when symbolic shape inference rejects the model, ORT's documented
    retry with skip_symbolic_shape=True (returned as a note)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(pre))
        return ""
    except Exception as exc:  # noqa: BLE001 - ORT raises many types; the user-facing retry is the same
        first = one_line(exc)
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    return f"pre-process retried with skip_symbolic_shape=True after {first[:160]}"


def ort_static(name: str, label: str, src: Path, dest: Path, calibration: Any, **kwargs: Any) -> Variant:
    """quant_pre_process then quantize_static over the calibration split (extra kwargs: types, per_channel)."""
    from onnxruntime.quantization import quantize_static

    from edgecompress.quantize.calibration import FeedReader

    v = Variant(name, label, "ort")
    notes: list[str] = []

    def work(tmp: Path) -> None:
        pre = tmp / "pre.onnx"
        note = _pre_process(src, pre)
        if note:
            notes.append(note)
        quantize_static(str(pre), str(dest), FeedReader(calibration), **kwargs)

    t0 = time.perf_counter()
    try:
        _in_private_dir(work)
        v.path = dest
    except Exception as exc:  # noqa: BLE001 - a variant that raises is a result: its message goes in the table
        v.error = one_line(exc)
    v.wall_s = time.perf_counter() - t0
    v.note = "; ".join(notes)
    return v


def ort_dynamic(name: str, label: str, src: Path, dest: Path, *, per_channel: bool) -> Variant:
    from onnxruntime.quantization import quantize_dynamic

    v = Variant(name, label, "ort")
    t0 = time.perf_counter()
    try:
        _in_private_dir(lambda _tmp: quantize_dynamic(str(src), str(dest), per_channel=per_channel))
        v.path = dest
    except Exception as exc:  # noqa: BLE001 - a variant that raises is a result
        v.error = one_line(exc)
    v.wall_s = time.perf_counter() - t0
    return v


def _error_line(stderr: str, obj: dict[str, Any] | None) -> str:
    if obj and not obj.get("ok", True):
        msg = obj.get("message") or obj.get("error") or ""
        if msg:
            return " ".join(str(msg).split())[:300]
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln[:300]
    return lines[-1][:300] if lines else ""


def run_cli(name: str, label: str, args: list[str], out: Path, *, timeout_s: float, log: Callable[[str], None],
            cwd: Path) -> Variant:
    """`edgecompress ARGS --out OUT --json` in a subprocess, from `cwd` (a scratch folder, so stray files stay
    out of the repository)."""
    cmd = [str(CLI), *args, "--out", str(out), "--json"]
    v = Variant(name, label, "edgecompress", command=cmd)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=cwd, check=False)
    except subprocess.TimeoutExpired as exc:
        v.wall_s = time.perf_counter() - t0
        v.exit = -1
        v.error = f"timed out after {timeout_s:.0f} s"
        tail = (exc.stderr or b"").decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        v.note = tail.strip().splitlines()[-1][:200] if tail.strip() else ""
        return v
    v.wall_s = time.perf_counter() - t0
    v.exit = proc.returncode
    obj: dict[str, Any] | None = None
    try:
        obj = json.loads(proc.stdout) if proc.stdout.strip() else None
        if not isinstance(obj, dict):
            raise ValueError("not an object")
    except ValueError:
        head = " ".join(proc.stdout.split())[:200]
        v.note = f"stdout is not one JSON object: {head!r}" if proc.stdout.strip() else "no JSON on stdout"
        obj = None
    v.report = obj
    if proc.returncode == 0 and out.is_file():
        v.path = out
    else:
        v.error = _error_line(proc.stderr, obj) or f"exit {proc.returncode}"
        if proc.returncode == 0:
            v.error = f"exit 0 but {out.name} was not written"
    if proc.returncode not in (0, 1, 2):
        log(f"  {name}: exit {proc.returncode}; stderr tail:\n" + "\n".join(proc.stderr.splitlines()[-15:]))
        sys.stderr.flush()
    return v


def quant_note(report: dict[str, Any] | None) -> str:
    """What `edgecompress quantize` chose, in a few words, from its --json report (a failed run's report has
    only some of the keys)."""
    r = (report or {}).get("report") or {}
    bits: list[str] = []
    if r.get("mode"):
        bits.append(str(r["mode"]))
        if r["mode"] != "dynamic" and r.get("format"):
            bits.append(str(r["format"]))
            if r.get("activation_type") or r.get("weight_type"):
                bits.append(f"{r.get('activation_type') or '?'}/{r.get('weight_type') or '?'}")
        if "per_channel" in r:
            bits.append("per-channel" if r["per_channel"] else "per-tensor")
    if r.get("calibrator"):
        bits.append(str(r["calibrator"]))
    excl = r.get("excluded_nodes") or []
    if excl:
        bits.append(f"{len(excl)} nodes fp32")
    census = r.get("census") or {}
    if census.get("total") is not None and r.get("mode") != "dynamic":
        bits.append(f"{census.get('int8', 0)}/{census['total']} Conv/MatMul/Gemm int8")
    return " ".join(bits)


def prune_note(report: dict[str, Any] | None) -> str:
    r = (report or {}).get("report") or {}
    if not r:
        return ""
    bits = []
    for key, what in (("macs_kept", "MACs"), ("params_kept", "params")):
        val = r.get(key)
        if isinstance(val, (int, float)):
            bits.append(f"{what} kept {val:.3f}")
    curve = r.get("curve") or []
    if len(curve) > 1:  # the budget backed the request off, or searched
        pts = "; ".join(f"{p['macs_kept']:.3f}: {p['drop']:.3f}" + (" *" if p["chosen"] else "")
                        for p in curve if p.get("drop") is not None)
        bits.append(f"{len(curve)} tried (MACs kept: drop) {pts}")
    return ", ".join(bits)
