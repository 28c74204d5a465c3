"""Tiny inline-SVG charts for the release report: scatter, step line (CDF), horizontal bars.

No dependencies, no scripts, no fonts to fetch; numbers are formatted with fixed precision so the same data
gives the same bytes.
"""

from __future__ import annotations

import math
from html import escape

W, H = 560, 320
PAD_L, PAD_R, PAD_T, PAD_B = 64, 24, 28, 52
PALETTE = ("#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04", "#db2777")
HIGHLIGHT = "#dc2626"


def _f(x: float) -> str:
    return f"{x:.1f}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = [round(math.floor(lo / step) * step, 10)]
    while ticks[-1] < hi - step * 1e-9 and len(ticks) < 20:  # the last tick reaches hi: no point off the axis
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


class _Axes:
    def __init__(self, xs: list[float], ys: list[float], *, x0: float | None = None, y_range=None) -> None:
        xlo, xhi = (min(xs), max(xs)) if xs else (0.0, 1.0)
        ylo, yhi = y_range if y_range else ((min(ys), max(ys)) if ys else (0.0, 1.0))
        if x0 is not None:
            xlo = min(xlo, x0)
        self.xt = _nice_ticks(xlo, xhi)
        self.yt = _nice_ticks(ylo, yhi)
        self.xlo, self.xhi = (self.xt[0], self.xt[-1]) if len(self.xt) > 1 else (xlo, xhi + 1)
        self.ylo, self.yhi = (self.yt[0], self.yt[-1]) if len(self.yt) > 1 else (ylo, yhi + 1)

    def x(self, v: float) -> float:
        return PAD_L + (v - self.xlo) / ((self.xhi - self.xlo) or 1) * (W - PAD_L - PAD_R)

    def y(self, v: float) -> float:
        return H - PAD_B - (v - self.ylo) / ((self.yhi - self.ylo) or 1) * (H - PAD_T - PAD_B)

    def frame(self, xlabel: str, ylabel: str) -> list[str]:
        out = [f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" '
               'fill="#fbfcfe" stroke="#cbd5e1"/>']
        for t in self.yt:
            yy = _f(self.y(t))
            out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{yy}" y2="{yy}" stroke="#e2e8f0"/>')
            out.append(f'<text x="{PAD_L - 6}" y="{yy}" text-anchor="end" dominant-baseline="middle" '
                       f'class="tick">{_fmt_tick(t)}</text>')
        for t in self.xt:
            xx = _f(self.x(t))
            out.append(f'<line x1="{xx}" x2="{xx}" y1="{PAD_T}" y2="{H - PAD_B}" stroke="#e2e8f0"/>')
            out.append(f'<text x="{xx}" y="{H - PAD_B + 16}" text-anchor="middle" class="tick">{_fmt_tick(t)}</text>')
        out.append(f'<text x="{(PAD_L + W - PAD_R) / 2:.1f}" y="{H - 10}" text-anchor="middle" class="axis">'
                   f'{escape(xlabel)}</text>')
        out.append(f'<text transform="translate(16 {(PAD_T + H - PAD_B) / 2:.1f}) rotate(-90)" text-anchor="middle" '
                   f'class="axis">{escape(ylabel)}</text>')
        return out


def _svg(title: str, body: list[str], height: int = H) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            '<style>.tick{font:11px sans-serif;fill:#475569}.axis{font:12px sans-serif;fill:#1e293b}'
            '.lbl{font:11px sans-serif;fill:#0f172a}.hl{font:bold 11px sans-serif;fill:#0f172a}</style>'
            + "".join(body) + "</svg>")


def pareto_front(points: list[tuple[float, float, str, bool]]) -> list[tuple[float, float, str, bool]]:
    """The points no other point beats on both axes (smaller-or-equal x with higher y, or smaller x with equal
    y): the best accuracy to be had at each size / latency. Sorted by x."""
    front: list[tuple[float, float, str, bool]] = []
    for p in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or p[1] > front[-1][1]:
            front.append(p)
    return front


def scatter(points: list[tuple[float, float, str, bool]], *, title: str, xlabel: str, ylabel: str,
            front: bool = False) -> str:
    """points: (x, y, label, highlight). Points are joined in order (the lineage path); with `front`, the Pareto
    front (lower x, higher y is better) is drawn as a solid green step line."""
    if not points:
        return placeholder(title, "no data")
    ys = [p[1] for p in points]
    pad = max((max(ys) - min(ys)) * 0.15, 0.01)
    ax = _Axes([p[0] for p in points], ys, x0=0.0, y_range=(min(ys) - pad, max(ys) + pad))
    body = ax.frame(xlabel, ylabel)
    if len(points) > 1:
        path = " ".join(f"{_f(ax.x(x))},{_f(ax.y(y))}" for x, y, _, _ in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="#94a3b8" stroke-dasharray="4 3"/>')
    if front and len(points) > 1:
        pf = pareto_front(points)
        steps = [f"{_f(ax.x(pf[0][0]))},{_f(ax.y(pf[0][1]))}"]
        for (_, y0, _, _), (x, y, _, _) in zip(pf, pf[1:], strict=False):  # a step: across at the old accuracy, then up
            steps += [f"{_f(ax.x(x))},{_f(ax.y(y0))}", f"{_f(ax.x(x))},{_f(ax.y(y))}"]
        body.append(f'<polyline points="{" ".join(steps)}" fill="none" stroke="#16a34a" stroke-width="2" '
                    f'opacity="0.7"><title>Pareto front</title></polyline>')
    merged: list[list] = []  # points drawn within a few pixels share one marker and one label
    for x, y, label, hl in points:
        near = next((m for m in merged if abs(ax.x(m[0]) - ax.x(x)) < 8 and abs(ax.y(m[1]) - ax.y(y)) < 8), None)
        if near is not None:
            near[2].append(label)
            near[3] = near[3] or hl
        else:
            merged.append([x, y, [label], hl])
    placed: list[tuple[float, float, float]] = []  # label boxes drawn so far (x0, x1, baseline y)
    for i, (x, y, labels, hl) in enumerate(merged):
        color = HIGHLIGHT if hl else PALETTE[i % len(PALETTE)]
        r = 7 if hl else 5
        cx, cy = ax.x(x), ax.y(y)
        body.append(f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="{r}" fill="{color}" stroke="#fff" stroke-width="1.5"/>')
        anchor = "end" if cx > W * 0.7 else "start"
        dx = -10 if anchor == "end" else 10
        text = " = ".join(labels)
        width = 6.2 * len(text)
        x0 = cx + dx - (width if anchor == "end" else 0)
        ty = cy - 8
        for cand in (cy - 8, cy + 16, cy - 22, cy + 30, cy - 36, cy + 44):  # first spot free of earlier labels
            if not any(abs(cand - py) < 13 and x0 < px1 and px0 < x0 + width for px0, px1, py in placed):
                ty = cand
                break
        placed.append((x0, x0 + width, ty))
        body.append(f'<text x="{_f(cx + dx)}" y="{_f(ty)}" text-anchor="{anchor}" '
                    f'class="{"hl" if hl else "lbl"}">{escape(text)}</text>')
    return _svg(title, body)


def cdf(samples: list[float], *, title: str, xlabel: str, marks: dict[str, float] | None = None) -> str:
    """Empirical CDF of latency samples (a step line), with percentile marks."""
    if not samples:
        return placeholder(title, "no latency samples")
    xs = sorted(samples)
    n = len(xs)
    # a heavy tail (scheduler hiccups on a shared machine) would squash the body of the curve into one pixel
    # column: the axis then stops at 1.5 x p95 and the runs beyond it are counted in a note
    p90, p95 = xs[int(0.9 * (n - 1))], xs[int(0.95 * (n - 1))]
    hi = xs[-1] if xs[-1] <= 3 * p90 else p95 * 1.5
    shown = [x for x in xs if x <= hi]
    ax = _Axes(shown, [0.0, 1.0], y_range=(0.0, 1.0))
    body = ax.frame(xlabel, "fraction of runs")
    pts = []
    for i, x in enumerate(xs):
        xx = ax.x(min(x, ax.xhi))
        pts.append(f"{_f(xx)},{_f(ax.y(i / n))}")
        pts.append(f"{_f(xx)},{_f(ax.y((i + 1) / n))}")
    body.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#2563eb" stroke-width="2"/>')
    row = 0
    for name, v in (marks or {}).items():
        if v > ax.xhi:
            continue
        mx = _f(ax.x(v))
        body.append(f'<line x1="{mx}" x2="{mx}" y1="{PAD_T}" y2="{H - PAD_B}" stroke="#dc2626" '
                    'stroke-dasharray="3 3"/>')
        anchor, dx = ("end", -3) if ax.x(v) > W * 0.75 else ("start", 3)
        body.append(f'<text x="{mx}" y="{H - PAD_B - 40 - 14 * row}" text-anchor="{anchor}" dx="{dx}" class="lbl">'
                    f'{escape(name)} {v:.3f}</text>')
        row += 1
    beyond = n - len([x for x in xs if x <= ax.xhi])
    if beyond:
        body.append(f'<text x="{W - PAD_R - 4}" y="{PAD_T + 14}" text-anchor="end" class="lbl">'
                    f'{beyond} run(s) beyond the axis, max {xs[-1]:.3f}</text>')
    return _svg(title, body)


def cdf_from_percentiles(lat: dict[str, float], *, title: str, xlabel: str) -> str:
    """Approximate CDF through the known percentiles (min, p50, p90, p95, p99, max) when no raw samples exist."""
    known = [("min", 0.0), ("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)]
    pts = [(float(lat[k]), q, k) for k, q in known if isinstance(lat.get(k), (int, float))]
    pts.sort()
    if len(pts) < 2:
        return placeholder(title, "no latency data")
    ax = _Axes([p[0] for p in pts], [0.0, 1.0], y_range=(0.0, 1.0))
    body = ax.frame(xlabel, "fraction of runs")
    line = " ".join(f"{_f(ax.x(x))},{_f(ax.y(q))}" for x, q, _ in pts)
    body.append(f'<polyline points="{line}" fill="none" stroke="#2563eb" stroke-width="2"/>')
    for x, q, k in pts:
        body.append(f'<circle cx="{_f(ax.x(x))}" cy="{_f(ax.y(q))}" r="4" fill="#2563eb" stroke="#fff"/>')
        if k not in ("min", "p50", "p90"):
            continue  # the upper tail's points crowd together; their values are in the caption
        anchor = "end" if ax.x(x) > W * 0.7 else "start"
        body.append(f'<text x="{_f(ax.x(x) + (-8 if anchor == "end" else 8))}" y="{_f(ax.y(q) + 4)}" '
                    f'text-anchor="{anchor}" class="lbl">{k} {x:.3f}</text>')
    return _svg(title, body)


def hbars(items: list[tuple[str, float]], *, title: str, xlabel: str, max_items: int = 16) -> str:
    """Horizontal bars (largest first), labels on the left."""
    items = items[:max_items]
    if not items:
        return placeholder(title, "no data")
    row = 20
    height = PAD_T + row * len(items) + PAD_B
    left = 190
    right = 56  # room for the value labels
    vmax = max(v for _, v in items) or 1.0
    vmin = min(0.0, min(v for _, v in items))
    span = (vmax - vmin) or 1.0
    body = []
    for t in _nice_ticks(vmin, vmax, 4):
        if t > vmax * 1.0001 and t != 0:
            continue
        xx = left + (t - vmin) / span * (W - left - right)
        body.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{PAD_T - 4}" y2="{height - PAD_B + 4}" stroke="#e2e8f0"/>')
        body.append(f'<text x="{xx:.1f}" y="{height - PAD_B + 18}" text-anchor="middle" class="tick">'
                    f'{_fmt_tick(t)}</text>')
    for i, (name, v) in enumerate(items):
        y = PAD_T + i * row
        x0 = left + (0 - vmin) / span * (W - left - right)
        x1 = left + (v - vmin) / span * (W - left - right)
        label = name if len(name) <= 28 else "…" + name[-27:]
        body.append(f'<text x="{left - 6}" y="{y + row / 2:.1f}" text-anchor="end" dominant-baseline="middle" '
                    f'class="lbl">{escape(label)}</text>')
        body.append(f'<rect x="{min(x0, x1):.1f}" y="{y + 3}" width="{max(abs(x1 - x0), 1):.1f}" height="{row - 6}" '
                    f'fill="{PALETTE[0]}" rx="2"/>')
        body.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + row / 2:.1f}" dominant-baseline="middle" '
                    f'class="tick">{v:.4g}</text>')
    body.append(f'<text x="{(left + W - right) / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis">'
                f'{escape(xlabel)}</text>')
    return _svg(title, body, height)


def placeholder(title: str, text: str) -> str:
    body = [f'<rect x="1" y="1" width="{W - 2}" height="{118}" fill="#f8fafc" stroke="#cbd5e1" '
            'stroke-dasharray="5 4"/>',
            f'<text x="{W / 2:.0f}" y="64" text-anchor="middle" class="axis">{escape(text)}</text>']
    return _svg(title, body, 120)
