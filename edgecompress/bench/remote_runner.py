#!/usr/bin/env python3
"""Self-contained ONNX Runtime benchmark runner: standard library + numpy + onnxruntime, nothing else.

It runs on this machine (in its own process, so peak RSS is the model's own), on a remote device over SSH,
and under qemu-user in an arm64 root: the same script gives the same JSON fields everywhere.

Usage: python3 remote_runner.py JOB.json
JOB (relative paths resolve against the job file's folder):
  {"mode": "single" | "interleaved", "models": ["a.onnx", ...], "threads": 1,
   "providers": ["CPUExecutionProvider"], "graph_optimization": "all", "strict": false,
   "warmup": 5, "runs": 50, "duration_s": null, "block": 1,
   "feeds": "feeds.npz" | null, "feeds_per_model": [...] (interleaved), "outputs": "outputs_0.npz" | null,
   "coverage": true, "emulated": false}
feeds.npz keys are "<index>/<input name>"; without it, random feeds are drawn from the model's input metadata.
Prints one line `@@EDGECOMPRESS@@{json}` on stdout. Errors give {"ok": false, "error_kind", "message"} and exit 3.
"""

# ruff: noqa: UP031, B905  (runs on device pythons down to 3.8: no zip(strict=))
from __future__ import annotations

import json
import os
import platform
import sys
import time

MARK = "@@EDGECOMPRESS@@"
RUNNER_VERSION = 1
_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
           "tensor(bool)": "bool"}
_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL"}


class JobError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def emit(obj):
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def peak_rss_mb():
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round((kb / 1024.0) if sys.platform != "darwin" else kb / 2**20, 2)
    except Exception:
        return None


def latency_stats(lat_ms):
    import numpy as np

    a = np.asarray(lat_ms, dtype=np.float64)
    if a.size == 0:
        return {}
    q = np.percentile(a, [50, 90, 95, 99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p95": float(q[2]), "p99": float(q[3]),
            "mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max())}


def make_session(ort, path, job, profile=False):
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(job.get("threads", 1))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT[job.get("graph_optimization", "all")])
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(job["_workdir"], "ort_profile")
    requested = list(job.get("providers") or ["CPUExecutionProvider"])
    available = ort.get_available_providers()
    provs = [p for p in requested if p in available] or ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(path, sess_options=so, providers=provs)
    except Exception as exc:
        raise JobError("model_load", "ONNX Runtime cannot load %s: %s" % (
            os.path.basename(path), " ".join(str(exc).split())[:400])) from None


def random_feeds(session, n, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        feed = {}
        for i in session.get_inputs():
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
            dt = _DTYPES.get(i.type, "float32")
            if dt.startswith("float"):
                feed[i.name] = rng.standard_normal(shape).astype(dt)
            elif dt == "bool":
                feed[i.name] = rng.integers(0, 2, shape).astype(bool)
            else:
                feed[i.name] = rng.integers(0, 8, shape).astype(dt)
        feeds.append(feed)
    return feeds


def load_feeds(path):
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        by_index = {}
        for key in z.files:
            idx, name = key.split("/", 1)
            by_index.setdefault(int(idx), {})[name] = z[key]
    return [by_index[k] for k in sorted(by_index)]


def ep_coverage(ort, path, job, feed):
    """Which nodes each EP ran and in how many partitions, from an ORT profile of one run."""
    sess = make_session(ort, path, job, profile=True)
    sess.run(None, feed)
    prof = sess.end_profiling()
    try:
        with open(prof) as f:
            events = json.load(f)
    except (OSError, ValueError):
        return {"source": "session", "providers": sess.get_providers()}
    finally:
        try:
            os.remove(prof)
        except OSError:
            pass
    order, seen = [], set()
    for ev in events:
        args = ev.get("args") or {}
        if ev.get("cat") != "Node" or "provider" not in args:
            continue
        node = ev.get("name", "").rsplit("_kernel_time", 1)[0]
        if node in seen:
            continue
        seen.add(node)
        order.append((node, args["provider"], args.get("op_name", "")))
    nodes, ops, partitions = {}, {}, {}
    prev = None
    for _, prov, op in order:
        nodes[prov] = nodes.get(prov, 0) + 1
        ops.setdefault(prov, {})
        ops[prov][op] = ops[prov].get(op, 0) + 1
        if prov != prev:
            partitions[prov] = partitions.get(prov, 0) + 1
        prev = prov
    return {"source": "profile", "total_nodes": len(order), "nodes": nodes, "partitions": partitions, "ops": ops}


def timed_runs(sess, feeds, warmup, runs, duration_s):
    perf = time.perf_counter_ns
    run = sess.run
    nf = len(feeds)
    for k in range(warmup):
        run(None, feeds[k % nf])
    lat = []
    if duration_s:
        end = perf() + int(duration_s * 1e9)
        k = 0
        while perf() < end or k < 2:
            t0 = perf()
            run(None, feeds[k % nf])
            lat.append((perf() - t0) / 1e6)
            k += 1
    else:
        for k in range(runs):
            t0 = perf()
            run(None, feeds[k % nf])
            lat.append((perf() - t0) / 1e6)
    return lat


def run_single(ort, job, feeds_all):
    import numpy as np

    path = job["models"][0]
    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    sess = make_session(ort, path, job)
    create_ms = (time.perf_counter() - t0) * 1e3
    feeds = feeds_all or random_feeds(sess, 1, job.get("seed", 0))
    t0 = time.perf_counter()
    try:
        sess.run(None, feeds[0])
    except Exception as exc:
        raise JobError("runtime", "ONNX Runtime failed on %s: %s" % (
            os.path.basename(path), " ".join(str(exc).split())[:400])) from None
    first_ms = (time.perf_counter() - t0) * 1e3
    t_wall = time.perf_counter()
    lat = timed_runs(sess, feeds, int(job.get("warmup", 5)), int(job.get("runs", 50)), job.get("duration_s"))
    wall = time.perf_counter() - t_wall
    peak = peak_rss_mb()
    res = {"latency_ms": latency_stats(lat), "latencies_ms": [round(x, 5) for x in lat],
           "throughput_per_s": (len(lat) / sum(lat) * 1e3) if lat else 0.0, "runs": len(lat),
           "session_create_ms": create_ms, "first_run_ms": first_ms, "peak_rss_mb": peak,
           "rss_before_load_mb": rss0, "providers": sess.get_providers(), "wall_s": wall}
    if job.get("outputs"):
        names = [o.name for o in sess.get_outputs()]
        arrays = {}
        for k, feed in enumerate(feeds):
            for name, val in zip(names, sess.run(names, feed)):
                arrays["%d/%s" % (k, name)] = np.asarray(val)
        np.savez(job["outputs"], **arrays)
        res["outputs_file"] = os.path.basename(job["outputs"])
        res["output_names"] = names
    if job.get("coverage", True):
        try:
            res["ep_coverage"] = ep_coverage(ort, path, job, feeds[0])
        except JobError:
            raise
        except Exception as exc:  # profiling is a report, not the job: say why it is missing
            res["ep_coverage"] = {"source": "session", "providers": sess.get_providers(),
                                  "note": "profiling failed: %s" % str(exc)[:200]}
    return res


def run_interleaved(ort, job, feeds_all):
    """Models take turns (A B A B ..., order rotated each round) so a noisy machine hits them alike."""
    paths = job["models"]
    sessions = [make_session(ort, p, job) for p in paths]
    per_model = job.get("feeds_per_model")  # models with different input signatures get their own feeds
    if per_model:
        feed_sets = [load_feeds(f) for f in per_model]
    else:
        feeds = feeds_all or random_feeds(sessions[0], 1, job.get("seed", 0))
        feed_sets = [feeds for _ in sessions]
    warmup, block = int(job.get("warmup", 5)), max(1, int(job.get("block", 1)))
    for s, feeds in zip(sessions, feed_sets):
        for k in range(max(1, warmup)):
            s.run(None, feeds[k % len(feeds)])
    rounds = max(2, int(job.get("runs", 50)) // block)
    perf = time.perf_counter_ns
    per_round = [[] for _ in sessions]
    for r in range(rounds):
        order = list(range(len(sessions)))
        if r % 2:
            order.reverse()
        for i in order:
            run, feeds = sessions[i].run, feed_sets[i]
            lat = []
            for k in range(block):
                feed = feeds[(r * block + k) % len(feeds)]
                t0 = perf()
                run(None, feed)
                lat.append((perf() - t0) / 1e6)
            lat.sort()
            per_round[i].append(lat[len(lat) // 2])
    return {"rounds": rounds, "block": block, "round_latency_ms": per_round}


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: remote_runner.py JOB.json\n")
        return 2
    try:
        with open(argv[1]) as f:
            job = json.load(f)
        base = os.path.dirname(os.path.abspath(argv[1]))
        job["_workdir"] = base
        job["models"] = [os.path.join(base, m) for m in job["models"]]
        for key in ("feeds", "outputs"):
            if job.get(key):
                job[key] = os.path.join(base, job[key])
        if job.get("feeds_per_model"):
            job["feeds_per_model"] = [os.path.join(base, f) for f in job["feeds_per_model"]]
    except (OSError, ValueError, KeyError) as exc:
        emit({"ok": False, "error_kind": "bad_job", "message": "cannot read job: %s" % exc})
        return 3
    try:
        import numpy  # noqa: F401
        import onnxruntime as ort
    except ImportError as exc:
        emit({"ok": False, "error_kind": "no_onnxruntime",
              "message": "%s has no onnxruntime/numpy: %s" % (sys.executable, exc)})
        return 3
    info = {"ok": True, "runner_version": RUNNER_VERSION, "onnxruntime": ort.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "node": platform.node(),
            "available_providers": ort.get_available_providers(), "emulated": bool(job.get("emulated"))}
    requested = list(job.get("providers") or ["CPUExecutionProvider"])
    missing = [p for p in requested if p not in info["available_providers"]]
    info["requested_providers"] = requested
    info["missing_providers"] = missing
    try:
        for m in job["models"]:
            if not os.path.isfile(m):
                raise JobError("model_load", "model file not found: %s" % os.path.basename(m))
        if missing and job.get("strict"):
            raise JobError("ep_unavailable", "execution provider(s) %s not available in onnxruntime %s on %s "
                           "(available: %s)" % (", ".join(missing), ort.__version__, platform.machine(),
                                                ", ".join(info["available_providers"])))
        feeds = load_feeds(job["feeds"]) if job.get("feeds") else None
        if job.get("mode", "single") == "interleaved":
            info.update(run_interleaved(ort, job, feeds))
        else:
            info.update(run_single(ort, job, feeds))
    except JobError as exc:
        emit({"ok": False, "error_kind": exc.kind, "message": exc.message, **{
            k: info[k] for k in ("onnxruntime", "machine", "available_providers")}})
        return 3
    except MemoryError:
        emit({"ok": False, "error_kind": "runtime", "message": "out of memory"})
        return 3
    except Exception as exc:
        emit({"ok": False, "error_kind": "runtime", "message": "%s: %s" % (
            type(exc).__name__, " ".join(str(exc).split())[:400])})
        return 3
    emit(info)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
