"""`edgecompress bench`: wiring only (flags -> BenchConfig -> bench() -> table / JSON / CSV / PNG)."""

from __future__ import annotations

import click

from .common import console, emit_json, handle_errors, json_option, metric_options, target_option


@click.command("bench")
@click.argument("models", nargs=-1, type=click.Path(dir_okay=False))
@target_option
@click.option("--threads", default=None, metavar="N[,N...]", help="Intra-op threads, e.g. 1,2 (default: target's).")
@click.option("--runs", default=50, show_default=True, type=int, help="Timed runs per model.")
@click.option("--warmup", default=5, show_default=True, type=int, help="Untimed runs first.")
@click.option("--duration", "duration_s", default=None, type=float, metavar="S", help="Time S seconds instead of --runs.")
@click.option("--data", default=None, metavar="DATA", help="Feed data (.npz, folder, module:fn); fidelity vs model 1.")
@click.option("--fidelity-samples", default=32, show_default=True, type=int, help="Samples of --data compared.")
@metric_options
@click.option("--max-drop", type=float, default=None, metavar="X",
              help="Fidelity budget: a model whose worst output drops more than X against model 1 makes the "
                   "command exit 1 (the report still comes with --json). Default: report only.")
@click.option("--strict", is_flag=True, help="Unavailable execution provider is an error (exit 2), not a CPU fallback.")
@click.option("--no-interleave", is_flag=True, help="Skip the interleaved A/B ratio runs.")
@click.option("--no-coverage", is_flag=True, help="Skip the EP coverage profile.")
@click.option("--remote", default=None, metavar="URL", help="ssh://[user@]host[:port] or adb://[serial].")
@click.option("--remote-python", default="python3", show_default=True, help="Python on the SSH device.")
@click.option("--identity", default=None, metavar="KEY", help="SSH private key (key auth only).")
@click.option("--known-hosts", default=None, metavar="FILE", help="known_hosts file for host key checking.")
@click.option("--accept-new-host-key", is_flag=True, help="Trust an unknown host key once (never a changed one).")
@click.option("--connect-timeout", "connect_timeout_s", default=10.0, show_default=True, type=float)
@click.option("--timeout", "timeout_s", default=900.0, show_default=True, type=float, help="Limit per runner call (s).")
@click.option("--perf-test", default=None, metavar="PATH", help="onnxruntime_perf_test for Android (adb://).")
@click.option("--emulate", default=None, type=click.Choice(["arm64"]), help="Also run under qemu: output parity.")
@click.option("--emulate-runs", default=3, show_default=True, type=int)
@click.option("--setup-emulation", is_flag=True, help="Prepare the arm64 emulation root once (root, network).")
@click.option("--force", is_flag=True, help="With --setup-emulation: rebuild the root.")
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write a CSV table.")
@click.option("--plot", "plot_path", default=None, metavar="FILE.png", help="Write a latency CDF/histogram PNG.")
@json_option
@handle_errors
def bench_cmd(models, target, threads, runs, warmup, duration_s, data, fidelity_samples, metric, detection, max_drop,
              strict, no_interleave,
              no_coverage, remote, remote_python, identity, known_hosts, accept_new_host_key, connect_timeout_s,
              timeout_s, perf_test, emulate, emulate_runs, setup_emulation, force, csv_path, plot_path, as_json):
    """Benchmark ONNX models under ONNX Runtime: latency percentiles, memory, EP coverage, A/B ratios.

    \b
    edgecompress bench fp32.onnx int8.onnx --data calibration_data/mnist_eval.npz --runs 200
    edgecompress bench int8.onnx --remote ssh://pi@raspberrypi.local --target rpi4-cortex-a72
    edgecompress bench --setup-emulation && edgecompress bench int8.onnx --emulate arm64
    """
    from ..bench import BenchConfig, bench, parse_threads
    from ..bench import setup_emulation as prepare_emulation
    from ..errors import ConfigError
    from ..fsutil import check_output_path

    con = console()
    if setup_emulation:
        with con.status("preparing the arm64 emulation root (debootstrap + aarch64 onnxruntime wheel)"):
            info = prepare_emulation(force=force, log=lambda s: con.log(s))
        con.print(f"arm64 root {'already prepared' if info.get('cached') else 'prepared'} at {info['root']}: "
                  f"python {info['python']}, onnxruntime {info['onnxruntime']}"
                  + ("" if info.get("cached") else f" in {info['setup_s']:.0f} s"))
        if not models:
            if as_json:
                emit_json({"ok": True, "emulation": info})
            return
    if not models:
        raise ConfigError("give at least one MODEL.onnx", hint="edgecompress bench model.onnx [model2.onnx ...]")
    for p in (csv_path, plot_path):
        if p:
            check_output_path(p)
    config = BenchConfig(runs=runs, warmup=warmup, duration_s=duration_s,
                         threads=parse_threads(threads) if threads else (), interleave=not no_interleave,
                         strict=strict, coverage=not no_coverage, fidelity_samples=fidelity_samples, metric=metric,
                         detection=detection, max_drop=max_drop, remote=remote,
                         remote_python=remote_python, known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
                         identity=identity, connect_timeout_s=connect_timeout_s, timeout_s=timeout_s, emulate=emulate,
                         emulate_runs=emulate_runs, perf_test=perf_test)
    from ..bench.output import render_table, write_csv, write_plot

    with con.status("benchmarking") as status:
        report = bench(list(models), config, data=data, target=target, log=lambda s: status.update(s))
    render_table(report, con)
    if csv_path:
        write_csv(report, csv_path)
    if plot_path:
        write_plot(report, plot_path)
    if as_json:
        emit_json(report.to_dict())
