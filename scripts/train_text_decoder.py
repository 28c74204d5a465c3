"""Train examples/text_models.py's TinyGPT (byte-level decoder LM) on the running Python's stdlib source.

Corpus (deterministic, no download): every `*.py` file under `sysconfig.get_paths()["stdlib"]` (site-packages
excluded), sorted by relative path, read as bytes. Each FILE goes to one split by sha1(relative path) % 20:
0 -> eval, 1 -> calibration, else train, so held-out text is disjoint from calibration and training text. Each
split is its files' bytes concatenated. `--corpus-out F.npz` saves the three byte arrays (keys train /
calibration / eval, uint8) and `--corpus F.npz` loads them (to train on a machine with a different Python).

Training: AdamW, linear warm-up then cosine lr, random windows of 256 bytes from train, bf16 autocast on CUDA.
Prints train loss and held-out bits per byte (bpb = nats / ln 2) and perplexity per byte (exp(nats)) on the eval
split. Writes the state_dict (`--out`, fp16 with `--half`) and feed data (`--data-dir`): pytext_calibration.npz
and pytext_eval.npz, 128 windows of 128 bytes each from the calibration / eval split, keys `input_ids` int64
[N, 128] and `past` float32 [N, L, 2, H, 0, Dh] (an empty KV cache).

    python scripts/train_text_decoder.py --corpus-out .devrun/text/corpus.npz --steps 0
    python scripts/train_text_decoder.py --corpus .devrun/text/corpus.npz --steps 6000 --device cuda \
        --out out/decoder.pt --parts 4 --data-dir out/      # four files of ~11 MB (fp32 is 43.8 MB)
    python scripts/train_text_decoder.py --join out/decoder.part*.pt --out decoder.pt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from examples.text_models import CONFIGS, TinyGPT, empty_past  # noqa: E402

SPLITS = ("train", "calibration", "eval")
LN2 = math.log(2.0)


def split_of(rel: str) -> str:
    """The split of one file, by a stable hash of its relative path (posix separators)."""
    k = int.from_bytes(hashlib.sha1(rel.encode("utf-8")).digest(), "big") % 20
    return "eval" if k == 0 else "calibration" if k == 1 else "train"


def build_corpus(stdlib: str | Path | None = None) -> dict[str, np.ndarray]:
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.py")
                   if p.is_file() and "site-packages" not in p.relative_to(root).parts)
    parts: dict[str, list[bytes]] = {s: [] for s in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)
    for rel, p in files:
        s = split_of(rel)
        parts[s].append(p.read_bytes())
        counts[s] += 1
    out = {s: np.frombuffer(b"".join(parts[s]), dtype=np.uint8).copy() for s in SPLITS}
    out["files"] = np.array([counts[s] for s in SPLITS], dtype=np.int64)
    out["source"] = np.array(f"{root} (Python {sys.version.split()[0]})")
    return out


def load_corpus(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def windows(data: np.ndarray, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """n windows of `length` bytes at seeded random offsets, as int64 [n, length]."""
    if len(data) <= length:
        raise ValueError(f"split of {len(data)} bytes is too short for windows of {length}")
    off = rng.integers(0, len(data) - length, size=n)
    return data[off[:, None] + np.arange(length)].astype(np.int64)


def write_feed_data(corpus: dict[str, np.ndarray], model: TinyGPT, folder: str | Path, *, n: int = 128,
                    length: int = 128, seed: int = 0) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k, split in enumerate(("calibration", "eval")):
        ids = windows(corpus[split], n, length, np.random.default_rng([seed, 7, k]))
        past = np.repeat(empty_past(model, 1), n, axis=0)  # [N, L, 2, H, 0, Dh]
        path = folder / f"pytext_{split}.npz"
        np.savez_compressed(path, input_ids=ids, past=past)
        written.append(path)
    return written


def lm_loss(model: TinyGPT, x: torch.Tensor, amp: bool) -> torch.Tensor:
    """Mean cross-entropy (nats) of predicting x[:, 1:] from x[:, :-1], empty past."""
    b = x.shape[0]
    cfg = model.config
    past = torch.zeros(b, cfg.n_layers, 2, cfg.n_heads, 0, cfg.head_dim, device=x.device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        logits, _ = model(x[:, :-1], past)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model: TinyGPT, data: np.ndarray, device: torch.device, *, context: int, max_windows: int | None,
             amp: bool, batch: int = 64) -> dict[str, float]:
    """Held-out loss over non-overlapping windows of context+1 bytes (each predicts `context` bytes)."""
    model.eval()
    n = (len(data) - 1) // context
    if max_windows is not None and n > max_windows:  # evenly spaced subset
        starts = np.linspace(0, n - 1, max_windows).astype(np.int64) * context
    else:
        starts = np.arange(n, dtype=np.int64) * context
    total, count = 0.0, 0
    for i in range(0, len(starts), batch):
        idx = starts[i:i + batch, None] + np.arange(context + 1)
        x = torch.from_numpy(data[idx].astype(np.int64)).to(device)
        loss = lm_loss(model, x, amp)
        total += float(loss) * x[:, 1:].numel()
        count += x[:, 1:].numel()
    model.train()
    nats = total / max(count, 1)
    return {"nats": nats, "bpb": nats / LN2, "ppl": math.exp(nats), "bytes": count}


def lr_at(step: int, steps: int, lr: float, warmup: int, min_ratio: float = 0.1) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def train(model: TinyGPT, corpus: dict[str, np.ndarray], args: argparse.Namespace,
          device: torch.device) -> dict[str, float]:
    amp = device.type == "cuda"
    ctx = model.config.max_context
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos" not in n and "tok" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos" not in n and "tok" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    data = torch.from_numpy(corpus["train"]).to(device)
    span = torch.arange(ctx + 1, device=device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    warmup = min(200, max(1, args.steps // 10))
    ev = lambda m: evaluate(model, corpus["eval"], device, context=ctx, max_windows=m, amp=amp)  # noqa: E731
    first = ev(args.eval_windows_quick)
    print(f"step 0: held-out {first['bpb']:.3f} bpb (init)", flush=True)
    model.train()
    t0 = time.perf_counter()
    losses: list[float] = []
    run = 0.0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, warmup)
        off = torch.randint(0, len(data) - ctx - 1, (args.batch, 1), device=device, generator=gen)
        x = data[off + span].long()
        loss = lm_loss(model, x, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if args.time_limit and time.perf_counter() - t0 > args.time_limit:
            print(f"stopping at step {step + 1}: --time-limit {args.time_limit} s reached", flush=True)
            losses.append(loss.item())
            break
        if step < 10 or (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            v = loss.item()
            losses.append(v)
            run = v if step == 0 else 0.9 * run + 0.1 * v
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                e = ev(args.eval_windows_quick)
                print(f"step {step + 1}/{args.steps}: train loss {v:.4f} nats ({v / LN2:.3f} bpb), lr "
                      f"{opt.param_groups[0]['lr']:.2e}, held-out {e['bpb']:.3f} bpb, "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    torch.backends.cuda.matmul.allow_tf32 = False  # the final held-out numbers in plain fp32
    final = evaluate(model, corpus["eval"], device, context=ctx, max_windows=args.eval_windows, amp=False)
    print(f"held-out (eval split, {final['bytes']} bytes predicted): {final['bpb']:.4f} bits/byte, "
          f"perplexity/byte {final['ppl']:.3f}; train time {secs:.1f} s", flush=True)
    return {"train_seconds": secs, "steps_done": step + 1, "first_train_loss": losses[0] if losses else float("nan"),
            "last_train_loss": losses[-1] if losses else float("nan"), "init_eval_nats": first["nats"],
            "eval_nats": final["nats"], "eval_bpb": final["bpb"], "eval_ppl": final["ppl"],
            "eval_bytes": final["bytes"]}


def save_state_dict(sd: dict[str, torch.Tensor], out: str | Path, parts: int = 1) -> list[Path]:
    """Save `sd` to `out`, or (parts > 1) to OUT.part0.pt .. as dicts of about equal size (transfer limits)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if parts <= 1:
        torch.save(sd, out)
        return [out]
    groups: list[dict[str, torch.Tensor]] = [{} for _ in range(parts)]
    sizes = [0] * parts
    for k in sorted(sd, key=lambda k: -sd[k].nbytes):
        i = sizes.index(min(sizes))
        groups[i][k] = sd[k]
        sizes[i] += sd[k].nbytes
    paths = [out.with_suffix(f".part{i}.pt") for i in range(parts)]
    for g, p in zip(groups, paths, strict=True):
        torch.save(g, p)
    return paths


def join_parts(paths: list[str], out: str | Path) -> None:
    """Merge OUT.partK.pt files into one fp32 state_dict (fp16 tensors are widened)."""
    sd: dict[str, torch.Tensor] = {}
    for p in paths:
        sd.update(torch.load(p, weights_only=True))
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    torch.save(sd, out)
    print(f"wrote {out} ({len(sd)} tensors from {len(paths)} files)", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="load the corpus from this .npz (else build it from this Python's stdlib)")
    ap.add_argument("--corpus-out", help="save the corpus to this .npz")
    ap.add_argument("--stdlib", help="build the corpus from this folder instead of sysconfig's stdlib")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="default")
    ap.add_argument("--steps", type=int, default=5000, help="optimizer steps (0: no training)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=500)
    ap.add_argument("--eval-windows", type=int, default=None, help="cap on final held-out windows (default all)")
    ap.add_argument("--eval-windows-quick", type=int, default=64, help="held-out windows at each log line")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds")
    ap.add_argument("--out", help="write the trained state_dict here (.pt)")
    ap.add_argument("--half", action="store_true", help="save the state_dict in float16 (half the size)")
    ap.add_argument("--parts", type=int, default=1, help="split --out into N files OUT.partK.pt")
    ap.add_argument("--join", nargs="+", metavar="PART", help="only merge these parts into --out (fp32), then exit")
    ap.add_argument("--data-dir", help="write pytext_calibration.npz and pytext_eval.npz here")
    ap.add_argument("--summary", help="write the run's numbers as JSON here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.join:
        join_parts(args.join, args.out)
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_corpus(args.corpus) if args.corpus else build_corpus(args.stdlib)
    sizes = {s: int(len(corpus[s])) for s in SPLITS}
    print(f"corpus {corpus['source']}: bytes {sizes}, files {dict(zip(SPLITS, corpus['files'].tolist(), strict=True))}",
          flush=True)
    if args.corpus_out:
        Path(args.corpus_out).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.corpus_out, **corpus)
        print(f"wrote {args.corpus_out}", flush=True)
    dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else \
        "cpu" if args.device == "auto" else args.device
    device = torch.device(dev)
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    model = TinyGPT(CONFIGS[args.config]).to(device)
    summary: dict = {"config": args.config, "steps": args.steps, "batch": args.batch, "device": str(device),
                     "params": sum(p.numel() for p in model.parameters()), "corpus_bytes": sizes}
    if args.steps > 0:
        summary.update(train(model, corpus, args, device))
    if args.out:
        sd = {k: (v.half() if args.half and v.is_floating_point() else v).detach().cpu().contiguous()
              for k, v in model.state_dict().items()}
        for p in save_state_dict(sd, args.out, args.parts):
            print(f"wrote {p}" + (" (float16)" if args.half else ""), flush=True)
    if args.data_dir:
        for p in write_feed_data(corpus, model, args.data_dir):
            print(f"wrote {p}", flush=True)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
