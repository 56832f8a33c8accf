"""Render a report `Document` to one self-contained HTML file or an A4 PDF, and write it safely.

Both formats use Noto Sans SC (shipped by `pylopdf-fonts-zh-cn`, SIL OFL) so Chinese renders the
same everywhere without downloading fonts: the PDF embeds a subset of it, matplotlib figures can
use it via `figure_font()`, and the HTML prefers it (or a system CJK font) by name.
"""

from __future__ import annotations

import base64
import html
import os
import re
import uuid
from collections.abc import Callable, Sequence
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Literal

import jinja2
import pylopdf_fonts_zh_cn
from fpdf import FPDF, FontFace, XPos, YPos

from suitability.explain.document import (
    Bullets,
    Callout,
    Document,
    Figure,
    KeyValues,
    Paragraph,
    Section,
    Table,
)

ReportFormat = Literal["html", "pdf"]
_SUFFIX_FORMATS: dict[str, ReportFormat] = {".html": "html", ".htm": "html", ".pdf": "pdf"}

_HTML_LANG = {"zh": "zh-CN", "en": "en"}
_PAGE_LABEL = {"zh": "第 {page} / {total} 页", "en": "Page {page} of {total}"}


# --- fonts ---------------------------------------------------------------------------------------


def cjk_font_path() -> Path:
    """The Noto Sans SC Regular font file every report and figure uses."""
    return Path(pylopdf_fonts_zh_cn.sans_path())


@cache
def figure_font() -> str:
    """Register Noto Sans SC with matplotlib (once) and return its family name.

    Use it for any matplotlib text that may be Chinese, e.g.
    `fig.text(0.5, 0.9, "风险等级", fontfamily=figure_font())` or
    `with matplotlib.rc_context({"font.family": figure_font()}): ...`. The font also covers
    Latin, digits and the minus sign, so whole figures can use it.
    """
    # Imported here, not at module top: importing font_manager builds (and may write) matplotlib's
    # font cache, a side effect the HTML/PDF paths do not need.
    from matplotlib import font_manager

    path = str(cjk_font_path())
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


# --- HTML ----------------------------------------------------------------------------------------


def render_html(doc: Document) -> str:
    """One self-contained HTML page: inline CSS, images as data URIs, no scripts or links, and
    Noto Sans SC embedded (subset to the characters on the page), so Chinese renders on any
    machine, with or without CJK fonts."""
    template = _html_environment().get_template("report.html.j2")
    marker = "data:font/woff;base64,FONT"
    page = template.render(doc=doc, html_lang=_HTML_LANG[doc.lang], font_data_uri=marker)
    font = base64.b64encode(subset_font(_page_text(page))).decode("ascii")
    return page.replace(marker, f"data:font/woff;base64,{font}", 1)


def _page_text(page: str) -> str:
    """The characters a page shows: its text, without the data URIs of its images."""
    return re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", html.unescape(page))


def subset_font(text: str) -> bytes:
    """Noto Sans SC as WOFF, cut down to the glyphs `text` needs (and printable ASCII, so a
    digit or a letter typed into a copied table still renders alike)."""
    from fontTools import subset

    characters = set(text) | {chr(c) for c in range(0x20, 0x7F)}
    options = subset.Options()
    options.flavor = "woff"  # zlib: no extra dependency (WOFF2 needs brotli)
    options.layout_features = ["*"]
    options.name_IDs = ["*"]  # the licence and copyright records stay with the font
    options.notdef_outline = True
    font = subset.load_font(str(cjk_font_path()), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(ord(c) for c in characters if not 0xD800 <= ord(c) < 0xE000))
    subsetter.subset(font)
    buffer = BytesIO()
    subset.save_font(font, buffer, options)
    return buffer.getvalue()


@cache
def _html_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("suitability.explain", "templates"),
        # Report text comes from data (customer fields, feature descriptions): always escape it.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["png_data_uri"] = _png_data_uri
    env.tests.update(
        paragraph=lambda block: isinstance(block, Paragraph),
        key_values=lambda block: isinstance(block, KeyValues),
        table=lambda block: isinstance(block, Table),
        figure=lambda block: isinstance(block, Figure),
        callout=lambda block: isinstance(block, Callout),
        bullets=lambda block: isinstance(block, Bullets),
    )
    return env


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# --- PDF -----------------------------------------------------------------------------------------

_FONT = "NotoSansSC"
_BODY_PT = 10.0
_SMALL_PT = 8.5
_TABLE_PT = 9.0
_LINE_SPACING = 1.5  # line height as a multiple of the font size

_INK = (33, 37, 41)
_MUTED = (100, 108, 118)
_ACCENT = (24, 70, 120)
_RULE = (205, 211, 218)
_ZEBRA = (244, 246, 249)
_CALLOUT_COLOURS = {  # tone -> (background, bar)
    "info": ((232, 241, 251), (31, 111, 235)),
    "ok": ((229, 244, 233), (26, 127, 55)),
    "warning": ((255, 243, 212), (176, 124, 0)),
    "danger": ((252, 232, 232), (200, 35, 45)),
}
# fpdf2 swaps this placeholder for the page count when the document is closed.
_TOTAL_PAGES_ALIAS = "{nb}"
# Pre-wrapped lines are measured against a slightly narrower width than fpdf2 will use, so float
# rounding can never make fpdf2 break a line a second time.
_WRAP_SLACK_MM = 0.2
# A heading needs this much room below it, or it starts the next page instead of dangling.
_KEEP_WITH_HEADING_MM = 25.0


def render_pdf(doc: Document) -> bytes:
    """An A4 portrait PDF with Noto Sans SC embedded (subset) for all text."""
    pdf = _ReportPDF(doc)
    pdf.add_page()
    pdf.title_block()
    for section in doc.sections:
        pdf.section(section)
    return bytes(pdf.output())


class _ReportPDF(FPDF):
    """fpdf2 document with one embedded font and one method per block kind."""

    def __init__(self, doc: Document) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._doc = doc
        self.set_margins(left=18, top=16, right=18)
        self.set_auto_page_break(auto=True, margin=20)
        # Text is wrapped here (see wrap_text) against exact widths; fpdf2's default 1 mm cell
        # inset would shift it, so padding is always explicit instead.
        self.c_margin = 0
        # Only the Regular face exists: never ask for "B"/"I", or fpdf2 would raise (and a core
        # font fallback would draw boxes for Chinese). Emphasis is size and colour.
        self.add_font(_FONT, fname=str(cjk_font_path()))
        self.set_font(_FONT, size=_BODY_PT)
        self.alias_nb_pages(_TOTAL_PAGES_ALIAS)
        self.set_title(doc.title)
        if doc.subtitle:
            self.set_subject(doc.subtitle)
        self.set_lang(_HTML_LANG[doc.lang])
        self.set_creator("suitability")

    # fpdf2 calls footer() on every page, including the last when output() closes the document.
    def footer(self) -> None:
        self.set_draw_color(*_RULE)
        self.set_line_width(0.2)
        rule_y = self.h - 14
        self.line(self.l_margin, rule_y, self.w - self.r_margin, rule_y)
        self.set_xy(self.l_margin, rule_y + 2)
        self.set_font(_FONT, size=_SMALL_PT)
        self.set_text_color(*_MUTED)
        label = _PAGE_LABEL[self._doc.lang].format(page=self.page_no(), total=_TOTAL_PAGES_ALIAS)
        label_width = self.get_string_width(label) + 2
        if self._doc.footer:
            text = " ".join(self._doc.footer.split())
            self.cell(
                self.epw - label_width - 4, 4, _truncate(text, self.epw - label_width - 4, self)
            )
        self.set_x(self.w - self.r_margin - label_width)
        self.cell(label_width, 4, label, align="R")

    @property
    def _line_height(self) -> float:
        return self.font_size * _LINE_SPACING

    def _style(self, size: float, colour: tuple[int, int, int]) -> None:
        self.set_font(_FONT, size=size)
        self.set_text_color(*colour)

    def _write(self, text: str, align: str = "L") -> None:
        """Wrapped text across the full text width, starting at the left margin."""
        self.multi_cell(
            self.epw,
            self._line_height,
            wrap_text(text, self.epw - _WRAP_SLACK_MM, self.get_string_width),
            align=align,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )

    def title_block(self) -> None:
        doc = self._doc
        self._style(20, _ACCENT)
        self._write(doc.title)
        if doc.subtitle:
            self.ln(1)
            self._style(11.5, _MUTED)
            self._write(doc.subtitle)
        if doc.meta:
            self.ln(2)
            self._key_values(doc.meta, size=9.5)
        self.ln(2)
        self._rule()
        self.ln(3)

    def _rule(self) -> None:
        self.set_draw_color(*_RULE)
        self.set_line_width(0.3)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())

    def section(self, section: Section) -> None:
        self._style(14, _ACCENT)
        heading_height = self._line_height * _line_count(section.heading, self)
        if self.get_y() > self.t_margin + 1:
            self.ln(3)
        if self.will_page_break(heading_height + _KEEP_WITH_HEADING_MM):
            self.add_page()
        self._write(section.heading)
        self.ln(1.5)
        for block in section.blocks:
            match block:
                case Paragraph():
                    self._paragraph(block)
                case KeyValues():
                    self._key_values(block.rows, size=_BODY_PT)
                    self.ln(2.5)
                case Table():
                    self._table(block)
                case Figure():
                    self._figure(block)
                case Callout():
                    self._callout(block)
                case Bullets():
                    self._bullets(block)

    def _paragraph(self, block: Paragraph) -> None:
        self._style(_BODY_PT, _INK)
        self._write(block.text)
        self.ln(2.5)

    def _bullets(self, block: Bullets) -> None:
        self._style(_BODY_PT, _INK)
        indent = 5.0
        for item in block.items:
            # Keep the bullet on the same page as the first line of its text.
            if self.will_page_break(self._line_height):
                self.add_page()
            self.set_text_color(*_ACCENT)
            self.cell(indent, self._line_height, "•", new_x=XPos.RIGHT, new_y=YPos.TOP)
            self.set_text_color(*_INK)
            self.multi_cell(
                self.epw - indent,
                self._line_height,
                wrap_text(item, self.epw - indent - _WRAP_SLACK_MM, self.get_string_width),
                align="L",
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            self.ln(0.8)
        self.ln(1.7)

    def _callout(self, block: Callout) -> None:
        background, bar = _CALLOUT_COLOURS[block.tone]
        self._style(_BODY_PT, _INK)
        padding = (2.6, 4.0, 2.6, 5.5)  # top, right, bottom, left: room for the colour bar
        lines = wrap_text(
            block.text, self.epw - padding[1] - padding[3] - _WRAP_SLACK_MM, self.get_string_width
        )
        height = (lines.count("\n") + 1) * self._line_height + padding[0] + padding[2]
        # Start a new page rather than split a short box; a box taller than a page must split.
        if self.will_page_break(height) and height < self.eph:
            self.add_page()
        top, page = self.get_y(), self.page
        self.set_fill_color(*background)
        self.multi_cell(
            self.epw,
            self._line_height,
            lines,
            align="L",
            fill=True,
            padding=padding,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        if self.page == page:
            self.set_fill_color(*bar)
            self.rect(self.l_margin, top, 1.4, self.get_y() - top, style="F")
        self._reset_fill()
        self.ln(3)

    def _reset_fill(self) -> None:
        # fpdf2 tables paint unstyled cells with the current fill colour: keep it white.
        self.set_fill_color(255, 255, 255)

    def _key_values(self, rows: Sequence[tuple[str, str]], size: float) -> None:
        if not rows:
            return
        self._style(size, _INK)
        self._reset_fill()
        padding = (0.7, 3.0, 0.7, 0.0)
        key_natural = max(self.get_string_width(key) for key, _ in rows) + padding[1] + 1
        key_width = min(key_natural, 0.35 * self.epw)
        widths = (key_width, self.epw - key_width)
        key_style = FontFace(color=_MUTED)
        with self.table(
            width=self.epw,
            col_widths=widths,
            first_row_as_headings=False,
            borders_layout="NONE",
            line_height=self._line_height,
            padding=padding,
            text_align="LEFT",
            v_align="TOP",
        ) as table:
            for key, value in rows:
                row = table.row()
                row.cell(self._wrap_cell(key, widths[0], padding), style=key_style)
                row.cell(self._wrap_cell(value, widths[1], padding))

    def _wrap_cell(self, text: str, width: float, padding: tuple[float, ...]) -> str:
        return wrap_text(
            text, width - padding[1] - padding[3] - _WRAP_SLACK_MM, self.get_string_width
        )

    def _table(self, block: Table) -> None:
        self._style(_TABLE_PT, _INK)
        if block.caption:
            # Keep the caption with the header and a few rows.
            if self.will_page_break(self._line_height * 5):
                self.add_page()
            self._style(_SMALL_PT + 0.5, _MUTED)
            self._write(block.caption)
            self.ln(0.5)
            self._style(_TABLE_PT, _INK)
        padding = (1.3, 2.0, 1.3, 2.0)
        cells = [block.columns, *block.rows]
        natural = [
            max(self.get_string_width(line) for row in cells for line in row[i].split("\n"))
            + padding[1]
            + padding[3]
            + 0.5
            for i in range(len(block.columns))
        ]
        widths = _fit_columns(natural, self.epw)
        heading_style = FontFace(emphasis="", color=(255, 255, 255), fill_color=_ACCENT)
        self._reset_fill()
        self.set_draw_color(*_RULE)
        self.set_line_width(0.2)
        with self.table(
            width=self.epw,
            col_widths=widths,
            headings_style=heading_style,
            borders_layout="HORIZONTAL_LINES",
            cell_fill_mode="ROWS",
            cell_fill_color=_ZEBRA,
            line_height=self._line_height,
            padding=padding,
            text_align=tuple("RIGHT" if flag else "LEFT" for flag in block.is_numeric),
            v_align="MIDDLE",
            repeat_headings=1,
        ) as table:
            for cells_of_row in cells:
                row = table.row()
                for text, width in zip(cells_of_row, widths, strict=True):
                    row.cell(self._wrap_cell(text, width, padding))
        self.ln(3)

    def _figure(self, block: Figure) -> None:
        pixel_width, pixel_height = _png_size(block.png)
        width = block.width * self.epw
        height = width * pixel_height / pixel_width
        self._style(_SMALL_PT + 0.5, _MUTED)
        caption_height = (
            self._line_height * _line_count(block.caption, self) + 1.5 if block.caption else 0.0
        )
        # A figure taller than a page is shrunk to fit, keeping its aspect ratio.
        room = self.eph - caption_height - 2
        if height > room:
            width, height = width * room / height, room
        if self.will_page_break(height + caption_height):
            self.add_page()
        top = self.get_y()
        self.image(BytesIO(block.png), x=self.l_margin + (self.epw - width) / 2, y=top, w=width)
        self.set_y(top + height + 1.5)
        if block.caption:
            self._write(block.caption, align="C")
        self.ln(3)


def _line_count(text: str, pdf: FPDF) -> int:
    return wrap_text(text, pdf.epw - _WRAP_SLACK_MM, pdf.get_string_width).count("\n") + 1


def _truncate(text: str, width: float, pdf: FPDF) -> str:
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _png_size(png: bytes) -> tuple[int, int]:
    """Pixel width and height from the PNG header (the IHDR chunk always comes first)."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _fit_columns(natural: Sequence[float], total: float) -> list[float]:
    """Column widths summing to `total`: columns that fit keep their natural width and the
    wide ones share what is left in proportion to their natural width."""
    if sum(natural) <= total:
        spare = (total - sum(natural)) / len(natural)
        return [width + spare for width in natural]
    widths = list(natural)
    wide = set(range(len(natural)))
    budget = total
    while True:
        share = budget / len(wide)
        fitting = {i for i in wide if natural[i] <= share}
        if not fitting:
            break
        wide -= fitting
        budget -= sum(natural[i] for i in fitting)
    wide_total = sum(natural[i] for i in wide)
    for i in wide:
        widths[i] = budget * natural[i] / wide_total
    return widths


# --- line breaking -------------------------------------------------------------------------------
# fpdf2 breaks lines only at spaces (or, in CHAR mode, anywhere). Chinese has no spaces but often
# embeds Latin words and numbers with spaces around them, so neither mode reads well: WORD mode
# leaves a half-empty line before every space, CHAR mode splits English words. We break as
# Chinese typesetting does: between any two CJK characters, at spaces, never inside a Latin word
# unless it is wider than the line, and never before closing or after opening punctuation.

_CJK = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]"
)
_NO_BREAK_BEFORE = frozenset("，。、；：？！）》」』】〉〕”’…‥·%％,.;:?!)]}")
_NO_BREAK_AFTER = frozenset("（《「『【〈〔“‘([{")


def _break_allowed(before: str, after: str) -> bool:
    if after in _NO_BREAK_BEFORE or before in _NO_BREAK_AFTER:
        return False
    if before.isspace() != after.isspace():
        return True
    if before.isspace():
        return False
    return bool(_CJK.match(before) or _CJK.match(after))


def _pieces(line: str) -> list[str]:
    """Split one line into the runs a line break may not split."""
    pieces: list[str] = []
    for i, char in enumerate(line):
        if pieces and not _break_allowed(line[i - 1], char):
            pieces[-1] += char
        else:
            pieces.append(char)
    return pieces


def _wrap_line(line: str, width: float, measure: Callable[[str], float]) -> list[str]:
    lines: list[str] = []
    current = ""
    for piece in _pieces(line):
        if piece.isspace():
            # Spaces at a break vanish; spaces that start the text (indentation) stay.
            if current or not lines:
                current += piece
        elif measure((current + piece).rstrip()) <= width:
            current += piece
        else:
            if current.strip():
                lines.append(current.rstrip())
                current = ""
            # A piece wider than the whole line (a long number or identifier) breaks anywhere.
            for char in piece:
                if current and measure(current + char) > width:
                    lines.append(current)
                    current = ""
                current += char
    lines.append(current.rstrip())
    return lines


def wrap_text(text: str, width: float, measure: Callable[[str], float]) -> str:
    """`text` with newlines inserted so that every line fits in `width`."""
    return "\n".join(
        wrapped for line in text.split("\n") for wrapped in _wrap_line(line, width, measure)
    )


# --- writing -------------------------------------------------------------------------------------


def report_format(path: Path, fmt: str | None = None) -> ReportFormat:
    """The report format for `path`: `fmt` if given, else the suffix (.html, .htm or .pdf).

    Raises ValueError, naming the path and the accepted formats, for an unknown format or a
    suffix that contradicts `fmt`. Cheap, so callers can check before doing expensive work.
    """
    path = Path(path)
    from_suffix = _SUFFIX_FORMATS.get(path.suffix.lower())
    accepted = "html (.html, .htm) or pdf (.pdf)"
    if fmt is None:
        if from_suffix is None:
            raise ValueError(
                f"cannot tell the report format of {path}: name it .html, .htm or .pdf, or give "
                f"the format ({accepted})"
            )
        return from_suffix
    if fmt not in ("html", "pdf"):
        raise ValueError(f"unknown report format {fmt!r} for {path}; accepted: {accepted}")
    if from_suffix is not None and from_suffix != fmt:
        raise ValueError(
            f"{path} has the suffix {path.suffix} but the format asked for is {fmt}; accepted: "
            f"{accepted}. Change the suffix or the format."
        )
    return fmt  # type: ignore[return-value]


def write_report(doc: Document, path: Path, fmt: ReportFormat | None = None) -> Path:
    """Render `doc` and write it to `path` (parent folders created), replacing any old file
    only once the new one is complete. Returns the path written."""
    path = Path(path)
    chosen = report_format(path, fmt)
    data = render_pdf(doc) if chosen == "pdf" else render_html(doc).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, data)
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    # A temp file in the same folder, so os.replace is a rename on one file system: readers see
    # the old report or the new one, never half of one. os.open (not tempfile) keeps the usual
    # umask-based permissions instead of tempfile's owner-only 0600.
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
