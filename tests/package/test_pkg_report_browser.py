"""report.html is self-contained and renders with its plots in a real browser (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_is_self_contained(built_release):
    html = (built_release / "release" / "report.html").read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", html)
    assert html.count("<svg") >= 4  # size/latency vs accuracy, latency CDF, sensitivity, op census
    for caption in ("Size vs accuracy", "p90 latency vs accuracy", "Latency CDF", "Per-layer quantization sensitivity",
                    "Operator census", "Lineage", "Budgets", "Files"):
        assert caption in html
    assert "<circle" in html and "<polyline" in html and "<rect" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(built_release, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    report = built_release / "release" / "report.html"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           report.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    small = img.resize((128, 200))
    colors = small.getcolors(maxcolors=1 << 16)
    assert colors is not None and len(colors) > 50, "screenshot looks blank"
    # the plots draw in blue (#2563eb) and the release point in red (#dc2626): both must be on screen
    px = list(img.getdata())
    blue = sum(1 for r, g, b in px if abs(r - 0x25) < 30 and abs(g - 0x63) < 30 and abs(b - 0xEB) < 30)
    red = sum(1 for r, g, b in px if abs(r - 0xDC) < 30 and abs(g - 0x26) < 30 and abs(b - 0x26) < 30)
    assert blue > 2000 and red > 50, (blue, red)
    # the dark header band is at the top, the page below is light
    top = img.crop((0, 0, 1280, 60)).convert("L")
    assert sum(top.getdata()) / (1280 * 60) < 80
