"""Tables and the results files of bench/real_models.py: machine facts, one markdown table per zoo model, the
.md and .json written atomically."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .variants import Variant, size_mb

# headline keys in table order (others follow, sorted)
FIDELITY_ORDER = ("accuracy", "accuracy_reference", "top1_agreement", "top5_containment", "decision_agreement",
                  "detection_recall", "detection_precision", "exact_agreement", "balanced_cosine", "cosine",
                  "slice_cosine_min", "sqnr_db", "drop")


def machine_facts(root: Path) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    cpu, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu == "?":
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                         check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                           cwd=root, capture_output=True,
                           text=True, check=False).stdout.strip()
    return {"cpu": cpu, "avx512_vnni": "avx512_vnni" in flags, "avx2": "avx2" in flags,
            "cores": os.cpu_count(), "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "python": platform.python_version(), "git": rev + ("+dirty" if dirty else ""),
            "loadavg_start": list(os.getloadavg())}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def fidelity_columns(variants: list[Variant]) -> list[str]:
    keys: set[str] = set()
    for v in variants:
        keys |= set((v.fidelity or {}).get("headline") or {})
    return [k for k in FIDELITY_ORDER if k in keys] + sorted(keys - set(FIDELITY_ORDER))


def _cell_note(v: Variant) -> str:
    text = v.error if v.error else v.note
    if v.error and v.note:
        text = f"{v.error} ({v.note})"
    return text.replace("|", "\\|").replace("\n", " ")


def table(variants: list[Variant]) -> str:
    cols = fidelity_columns(variants)
    head = ["variant", "exit", "wall s", "size MB", "p50 ms", "x fp32", "x ORT best", *cols, "note"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for v in variants:
        t = v.timing
        hl = (v.fidelity or {}).get("headline") or {}
        fid = []
        for k in cols:
            if v.tool == "fp32" and k not in ("accuracy", "accuracy_reference"):
                fid.append("ref")
            else:
                fid.append(_fmt(hl.get(k), 2 if k == "sqnr_db" else 4))
        ex = "-" if v.exit is None else str(v.exit)
        if v.tool == "ort":
            ex = "raised" if v.error else "ok"
        cells = [v.label, ex, _fmt(v.wall_s, 1), _fmt(size_mb(v.path) if v.ok else None, 2),
                 _fmt(t.get("p50_ms"), 2), _fmt(t.get("x_fp32"), 2), _fmt(t.get("x_ort_best"), 2), *fid,
                 _cell_note(v)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def model_section(name: str, info: dict[str, Any], variants: list[Variant]) -> str:
    lines = [f"## {name}", ""]
    for key in ("kind", "model", "score", "timing", "compare", "ort_best", "fidelity_seconds", "seconds"):
        if info.get(key) not in (None, "", [], {}):
            lines.append(f"- {key}: {info[key]}")
    for n in info.get("notes", []):
        lines.append(f"- note: {n}")
    lines += ["", table(variants), ""]
    return "\n".join(lines)


def _made_by(meta: dict[str, Any]) -> list[str]:
    run = (f"`{meta['command']}` (`make bench-real` runs `bench/zoo/prepare.py` first), {meta['started']} - "
           f"{meta['finished']} UTC, {meta['wall_min']:.1f} min.")
    if not meta.get("rerun"):
        return [f"Made by {run}", ""]
    e = meta["earlier"]
    lines = [f"Made by `{e['command']}`, {e['started']} - {e['finished']} UTC, {e['wall_min']:.1f} min, "
             f"edgecompress git {e.get('git') or '?'}; then, with `--update`:"]
    lines += [f"- {r}" for r in e.get("reruns") or []]
    lines += [f"- {meta['rerun']} by {run}", ""]
    return lines


def document(meta: dict[str, Any], sections: list[str]) -> str:
    m = meta["machine"]
    head = [
        "# edgecompress vs ONNX Runtime's quantizers on the zoo (real pretrained models)", "",
        *(_made_by(meta)),
        f"- CPU: {m['cpu']}, {m['cores']} cores; avx512_vnni in /proc/cpuinfo: {'yes' if m['avx512_vnni'] else 'no'}; "
        f"avx2: {'yes' if m['avx2'] else 'no'}",
        f"- onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, Python {m['python']}, edgecompress git {m['git']}",
        f"- load average at start {', '.join(f'{x:.1f}' for x in m['loadavg_start'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in meta['loadavg_end'])}",
        f"- {'--fast: ' if meta['fast'] else ''}timing: {meta['timing_desc']}",
        "- fidelity: `edgecompress.fidelity.compare_models` of every variant against fp32 on the zoo's score split "
        "(never calibration/eval) with the zoo's compare hints; each column is the worst over the outputs that have "
        "it; `drop` is the worst output's drop (0 = identical). fp32 is the reference (`ref`).",
        "- ORT variants: `quant_pre_process` then `quantize_static` over the calibration split (defaults: QDQ, "
        "S8S8, per-tensor, MinMax), the same U8S8 per-channel, and for transformers `quantize_dynamic` "
        "(per-channel / per-tensor) on the fp32 model. `x ORT best` = speed-up over the fastest ORT variant.",
        "- edgecompress variants: the CLI with defaults (`quantize --calibration C --eval T`, `prune --target-macs F "
        "--calibration C --eval T` with F an upper bound under the default `--max-drop 0.02`, `prune --calibration C "
        "--eval T` (the budget search), then `quantize` of each pruned model), compare hints passed as `--detection` / "
        "`--state`; exit code and wall time of each call; the error line where it failed.", ""]
    return "\n".join(head) + "\n" + "\n".join(sections) + "\n"


def write_results(md_path: Path, md: str, obj: dict[str, Any]) -> None:
    from edgecompress.fsutil import atomic_write_text

    md_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md_path, md)
    atomic_write_text(md_path.with_suffix(".json"), json.dumps(obj, indent=1, default=str) + "\n")
