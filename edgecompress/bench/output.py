"""Human output of a BenchReport: a rich table (stderr), CSV, and a latency CDF + histogram PNG."""

from __future__ import annotations

from pathlib import Path

from ..fsutil import atomic_path, atomic_write_text
from .report import BenchReport


def render_table(report: BenchReport, console) -> None:
    from rich.table import Table

    t = Table(title=f"latency on {report.where} (target {report.target}), ms", title_justify="left")
    for col in ("model", "thr", "p50", "p90", "p99", "mean", "std", "runs/s", "vs base [p10-p90]"):
        t.add_column(col, justify="left" if col == "model" else "right")
    res = Table(title="session and memory", title_justify="left")
    for col in ("model", "thr", "create ms", "first ms", "peak RSS MB", "size MB", "EPs"):
        res.add_column(col, justify="left" if col in ("model", "EPs") else "right")
    for m in report.models:
        lat = m.latency_ms
        r = next((x for x in report.ratios if x.model == m.path and x.threads == m.threads), None)
        ratio = (f"{r.ratio_p50:.3f}x [{r.spread['p10']:.2f}-{r.spread['p90']:.2f}]" if r else "base")
        eps = ",".join(p.replace("ExecutionProvider", "") for p in m.providers)
        if m.missing_providers:
            eps += " [bold red](FALLBACK)[/bold red]"
        name = Path(m.path).name
        t.add_row(name, str(m.threads), _f(lat.get("p50")), _f(lat.get("p90")), _f(lat.get("p99")),
                  _f(lat.get("mean")), _f(lat.get("std")), _f(m.throughput_per_s, 1), ratio)
        res.add_row(name, str(m.threads), _f(m.session_create_ms, 1), _f(m.first_run_ms, 2), _f(m.peak_rss_mb, 1),
                    _f(m.size_mb, 3), eps)
    console.print(t)
    console.print(res)
    for m in report.models:
        if m.fidelity and m.fidelity.get("outputs"):
            budget = ""
            if "within_budget" in m.fidelity:
                budget = " [green]within budget[/green]" if m.fidelity["within_budget"] else \
                    f" [bold red]OUTSIDE max_drop {m.fidelity['max_drop']}[/bold red]"
            console.print(f"fidelity {Path(m.path).name} vs baseline: {m.fidelity['summary']}{budget}")
        if m.accuracy is not None:
            console.print(f"accuracy {Path(m.path).name}: {m.accuracy:.4f} on {m.fidelity.get('samples', '')} "
                          "samples of --data" if m.fidelity else "")
        if m.emulation:
            e = m.emulation
            console.print(f"[yellow]EMULATED arm64[/yellow] {Path(m.path).name}: parity "
                          f"{'OK' if e['parity_ok'] else 'FAILED'} ({e['parity_summary']}); emulated p50 "
                          f"{e['latency_ms']['p50']:.2f} ms = {e['slowdown_vs_host']:.0f}x host: NOT device speed")
        cov = m.ep_coverage
        if cov.get("source") == "profile":
            parts = ", ".join(f"{p.replace('ExecutionProvider', '')}: {n} nodes in {cov['partitions'].get(p, 0)} "
                              f"partition(s)" for p, n in cov["nodes"].items())
            console.print(f"EP coverage {Path(m.path).name}: {parts}")
    for w in report.warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {w}")


def _f(v: float | None, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def write_csv(report: BenchReport, path: str | Path) -> None:
    atomic_write_text(Path(path), report.to_csv())


def write_plot(report: BenchReport, path: str | Path) -> None:
    """Latency CDF (left) and histogram (right) of every (model, threads) run, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_cdf, ax_hist) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m in report.models:
        if not m.latencies_ms:
            continue
        a = np.sort(np.asarray(m.latencies_ms))
        label = f"{Path(m.path).name} ({m.threads} thr)" + (" EMULATED" if m.emulated else "")
        ax_cdf.plot(a, np.arange(1, a.size + 1) / a.size, label=label)
        hi = np.percentile(a, 99) if a.size > 10 else a.max()
        ax_hist.hist(a[a <= hi], bins=40, alpha=0.55, label=label)
    ax_cdf.set_xlabel("latency (ms)")
    ax_cdf.set_ylabel("fraction of runs")
    ax_cdf.set_title("latency CDF")
    ax_cdf.grid(alpha=0.3)
    ax_hist.set_xlabel("latency (ms), up to p99")
    ax_hist.set_ylabel("runs")
    ax_hist.set_title("latency histogram")
    ax_cdf.legend(fontsize=8)
    fig.suptitle(f"edgecompress bench on {report.where} (target {report.target})", fontsize=10)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
