"""Report rendering: self-contained HTML, PDFs whose Chinese renders as real glyphs (embedded
Noto Sans SC, text layer maps back to the same characters), and atomic writes."""

from __future__ import annotations

import base64
import logging
import re
import warnings
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from fontTools.ttLib import TTFont
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from suitability.explain import render
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
from suitability.explain.render import (
    cjk_font_path,
    figure_font,
    render_html,
    render_pdf,
    report_format,
    write_report,
)

SENTENCE = "近90天投资中R4及以上产品的金额占比62%，高于问卷所示风险偏好"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MM = 72 / 25.4  # PDF points per millimetre


def _chart_png() -> bytes:
    figure = MplFigure(figsize=(5, 2.5), layout="constrained")
    FigureCanvasAgg(figure)
    with rc_context({"font.family": figure_font()}):
        axes = figure.add_subplot()
        axes.barh(["近90天R4占比", "问卷得分", "持仓集中度"], [0.4, -0.2, 0.1])
        axes.set_xlabel("SHAP 贡献值")
        axes.set_title("各特征对风险等级的贡献")
        buffer = BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _sample_document(lang: str, png: bytes) -> Document:
    zh = lang == "zh"
    long_text = (
        "客户在过去一年内频繁交易 ETF 与 QDII 基金，单笔金额较大，并多次申购 R5 等级的私募产品，"
        * 6
        if zh
        else "The customer traded ETFs and QDII funds often over the past year. " * 8
    )
    rows = [
        [
            str(i),
            f"feature_{i}",
            "近90天投资中高风险产品的金额占比，按月滚动计算，含 R4 与 R5 等级产品"
            if i % 3 == 0
            else "问卷得分",
            f"{i * 1.5:.2f}",
            f"{-0.1 * i:+.3f}",
        ]
        for i in range(60)
    ]
    return Document(
        title="客户适当性评估报告" if zh else "Suitability report",
        lang=lang,  # type: ignore[arg-type]
        subtitle="客户 A 的风险等级与理由" if zh else "Risk category and reasons for customer A",
        meta=[
            ("客户编号" if zh else "Customer", "C000123"),
            ("日期" if zh else "Date", "2025-06-30"),
        ],
        sections=[
            Section(
                "结论" if zh else "Conclusion",
                [
                    Paragraph(SENTENCE + "。" if zh else "Mostly in R4+ products."),
                    Callout("评估结果：C4 积极型" if zh else "Result: C4 aggressive", "warning"),
                    Paragraph(long_text),
                    Bullets(["问卷得分 62 分", "English bullet in a Chinese report"]),
                    Callout("无需复核" if zh else "No review needed", "ok"),
                ],
            ),
            Section(
                "主要原因" if zh else "Main reasons",
                [
                    Figure(png, caption="图 1：SHAP 贡献" if zh else "Figure 1: SHAP", width=0.8),
                    KeyValues([("风险等级", "C4"), ("流失风险", "低 (0.08)")]),
                    Callout("提示 info", "info"),
                    Callout("高风险 danger", "danger"),
                ],
            ),
            Section(
                "明细" if zh else "Details",
                [
                    Table(
                        ["序号", "特征", "说明", "取值", "贡献"],
                        rows,
                        caption="表 1：全部特征贡献",
                        numeric=[True, False, False, True, True],
                    )
                ],
            ),
        ],
        footer="仅供内部使用 · suitability" if zh else "Internal use only · suitability",
    )


@pytest.fixture(scope="module")
def chart_png() -> bytes:
    return _chart_png()


@pytest.fixture(scope="module")
def zh_doc(chart_png: bytes) -> Document:
    return _sample_document("zh", chart_png)


@pytest.fixture(scope="module")
def zh_pdf(zh_doc: Document) -> bytes:
    return render_pdf(zh_doc)


def _page_text(pdf: pdfium.PdfDocument, index: int) -> str:
    return pdf[index].get_textpage().get_text_range()


def _unwrapped(text: str) -> str:
    """Page text with line breaks removed, so a sentence wrapped over two lines matches."""
    return re.sub(r"\r?\n", "", text)


def _save_and_check_not_blank(pdf_bytes: bytes, path: Path) -> None:
    page = pdfium.PdfDocument(pdf_bytes)[0]
    image = page.render(scale=2).to_pil()
    image.save(path)
    dark = sum(image.convert("L").histogram()[:100])
    assert dark > 2000, f"page 1 looks blank ({dark} dark pixels); see {path}"


# --- document model -------------------------------------------------------------------------------


def test_document_text_covers_every_block(zh_doc: Document) -> None:
    text = list(zh_doc.text())
    for expected in (zh_doc.title, SENTENCE + "。", "表 1：全部特征贡献", "feature_59", "流失风险"):
        assert expected in text
    assert "图 1：SHAP 贡献" in text
    assert "问卷得分 62 分" in text


def test_document_rejects_malformed_blocks() -> None:
    with pytest.raises(ValueError, match="do not have 2 cells"):
        Table(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="one per column"):
        Table(["a", "b"], [["1", "2"]], numeric=[True])
    with pytest.raises(ValueError, match="width"):
        Figure(PNG_MAGIC, width=0)
    with pytest.raises(ValueError, match="PNG"):
        Figure(b"GIF89a")
    with pytest.raises(ValueError, match="tone"):
        Callout("x", "loud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lang"):
        Document("t", "fr")  # type: ignore[arg-type]


# --- fonts ----------------------------------------------------------------------------------------


def test_figure_font_renders_chinese_without_missing_glyphs() -> None:
    family = figure_font()
    assert "Noto Sans SC" in family

    def draw(**text_style: str) -> bytes:
        figure = MplFigure(figsize=(3, 2))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.plot([-1, 1], [-2, 2])
        axes.set_title("风险等级分布", **text_style)
        figure.text(0.5, 0.02, "近90天 R4 占比 −5%", **text_style)
        buffer = BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()

    # Control: matplotlib's default font has no Chinese, which is why figure_font exists.
    with pytest.warns(UserWarning, match="missing from font"):
        draw()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert draw(fontfamily=family).startswith(PNG_MAGIC)
        with rc_context({"font.family": family}):  # whole figure, negative ticks included
            assert draw().startswith(PNG_MAGIC)


# --- HTML -----------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector


def test_html_is_one_self_contained_page(zh_doc: Document) -> None:
    html = render_html(zh_doc)
    tags = _parse(html).tags

    assert ("html", {"lang": "zh-CN"}) in tags
    assert ("meta", {"charset": "utf-8"}) in tags
    assert SENTENCE in html
    assert "Noto Sans SC" in html and "Microsoft YaHei" in html
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()
    assert not [attrs for _, attrs in tags if "href" in attrs]
    sources = [attrs["src"] for _, attrs in tags if "src" in attrs]
    assert len(sources) == 1  # (the font is a data URI in the style sheet, checked below)
    for source in sources:
        assert source is not None and source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_MAGIC)
    # Numeric columns are right-aligned; the table keeps every row.
    assert html.count('<td class="num">') == 60 * 3
    assert "feature_59" in html


def test_html_escapes_text_and_sets_the_language() -> None:
    doc = Document(
        title="<b>报告</b>",
        lang="en",
        sections=[
            Section(
                "s",
                [
                    Paragraph('<script>alert("x")</script> & 风险'),
                    Table(["<th>"], [["<img src=x>"]]),
                    Bullets(["<li>"]),
                ],
            )
        ],
    )
    html = render_html(doc)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; 风险" in html
    assert "&lt;img src=x&gt;" in html and "<img" not in html
    assert "<title>&lt;b&gt;报告&lt;/b&gt;</title>" in html
    assert ("html", {"lang": "en"}) in _parse(html).tags


# --- PDF ------------------------------------------------------------------------------------------


def test_pdf_text_layer_maps_back_to_the_chinese(zh_pdf: bytes, zh_doc: Document) -> None:
    assert zh_pdf.startswith(b"%PDF")
    pdf = pdfium.PdfDocument(zh_pdf)
    pages = len(pdf)
    assert pages >= 2
    first = _page_text(pdf, 0)
    assert SENTENCE in _unwrapped(first)
    assert zh_doc.title in first
    assert f"第 1 / {pages} 页" in first
    assert "仅供内部使用" in first
    metadata = pdf.get_metadata_dict()
    assert metadata["Title"] == zh_doc.title
    assert metadata["Creator"] == "suitability"
    assert b"/Lang (zh-CN)" in zh_pdf


def test_pdf_embeds_only_noto_sans_sc(zh_pdf: bytes) -> None:
    fonts = set(re.findall(rb"/BaseFont\s*/([^\s/>\]]+)", zh_pdf))
    assert fonts, "no font in the PDF"
    # A core-font fallback (Helvetica, ...) would draw boxes for Chinese.
    assert all(b"NotoSansSC" in name for name in fonts), fonts
    assert b"/FontFile3" in zh_pdf or b"/FontFile2" in zh_pdf  # embedded, not referenced


def test_every_character_shown_is_in_the_font(zh_doc: Document) -> None:
    cmap = TTFont(cjk_font_path(), lazy=True).getBestCmap()
    page_labels = "第 / 页 Page of 0123456789"
    shown = "".join(zh_doc.text()) + page_labels
    missing = sorted({char for char in shown if not char.isspace() and ord(char) not in cmap})
    assert not missing


def test_pdf_logs_no_missing_glyphs(zh_doc: Document, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fpdf"):
        render_pdf(zh_doc)
    assert not [record for record in caplog.records if "missing" in record.getMessage()]


def test_pdf_wraps_long_chinese_within_the_margins(zh_pdf: bytes) -> None:
    pdf = pdfium.PdfDocument(zh_pdf)
    for index in range(len(pdf)):
        page = pdf[index]
        width = page.get_width()
        textpage = page.get_textpage()
        rights = [textpage.get_charbox(i)[2] for i in range(textpage.count_chars())]
        assert max(rights) <= width - 18 * MM + 0.5, f"text past the right margin on page {index}"
    # The long paragraph has no space to break at for long stretches, yet spans several lines.
    lines = _page_text(pdf, 0).splitlines()
    assert sum("客户在过去一年内" in line or "私募产品" in line for line in lines) >= 3


def test_pdf_table_breaks_pages_and_repeats_its_header(zh_pdf: bytes) -> None:
    pdf = pdfium.PdfDocument(zh_pdf)
    texts = [_page_text(pdf, i) for i in range(len(pdf))]
    with_rows = [text for text in texts if "feature_" in text]
    assert len(with_rows) >= 2
    assert all("序号" in text and "说明" in text for text in with_rows)
    assert "feature_59" in texts[-1]


def test_pdf_pages_render_as_glyphs(zh_pdf: bytes, chart_png: bytes) -> None:
    """Writes /tmp/render_check_{zh,en}.png for a human look: Chinese must be glyphs, not boxes."""
    _save_and_check_not_blank(zh_pdf, Path("/tmp/render_check_zh.png"))
    en_pdf = render_pdf(_sample_document("en", chart_png))
    en_text = _page_text(pdfium.PdfDocument(en_pdf), 0)
    assert "Page 1 of " in en_text
    assert "Suitability report" in en_text
    _save_and_check_not_blank(en_pdf, Path("/tmp/render_check_en.png"))


def test_wrap_breaks_between_chinese_characters_not_inside_words() -> None:
    def measure(text: str) -> float:
        return float(len(text))

    wrapped = render.wrap_text("风险偏好较高，交易 SHAP 与 QDII 基金", 8, measure).split("\n")
    assert all(len(line) <= 8 for line in wrapped)
    assert not any(line.startswith(("，", " ")) for line in wrapped)
    assert any("SHAP" in line for line in wrapped) and any("QDII" in line for line in wrapped)
    # A single run wider than the line still breaks rather than overflowing.
    assert render.wrap_text("x" * 20, 8, measure).split("\n") == ["x" * 8, "x" * 8, "x" * 4]
    assert render.wrap_text("a\n\nb", 8, measure) == "a\n\nb"


# --- writing --------------------------------------------------------------------------------------


def _tiny_doc() -> Document:
    return Document("小报告", "zh", sections=[Section("结论", [Paragraph(SENTENCE)])])


def test_write_report_infers_the_format_and_creates_folders(tmp_path: Path) -> None:
    html_path = write_report(_tiny_doc(), tmp_path / "a" / "b" / "report.html")
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    pdf_path = write_report(_tiny_doc(), tmp_path / "report.PDF")
    assert pdf_path.read_bytes().startswith(b"%PDF")
    assert write_report(_tiny_doc(), tmp_path / "r.htm").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "r.htm", "report.PDF"]


def test_write_report_uses_an_explicit_format(tmp_path: Path) -> None:
    path = write_report(_tiny_doc(), tmp_path / "report", fmt="pdf")
    assert path.read_bytes().startswith(b"%PDF")
    assert report_format(Path("x.txt"), "html") == "html"


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("report.docx", None, "cannot tell the report format"),
        ("report", None, "cannot tell the report format"),
        ("report.pdf", "html", "has the suffix .pdf"),
        ("report.html", "docx", "unknown report format 'docx'"),
    ],
)
def test_report_format_errors_name_the_path_and_formats(
    tmp_path: Path, name: str, fmt: str | None, message: str
) -> None:
    path = tmp_path / name
    with pytest.raises(ValueError, match=message) as error:
        write_report(_tiny_doc(), path, fmt=fmt)  # type: ignore[arg-type]
    text = str(error.value)
    assert str(path) in text and "html" in text and "pdf" in text
    assert not path.exists()


def test_a_failed_render_leaves_no_file_and_the_old_one_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(doc: Document) -> str:
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(render, "render_html", fail)
    monkeypatch.setattr(render, "render_pdf", fail)
    with pytest.raises(RuntimeError):
        write_report(_tiny_doc(), tmp_path / "new" / "report.html")
    assert not (tmp_path / "new").exists()

    old = tmp_path / "report.pdf"
    old.write_bytes(b"old report")
    with pytest.raises(RuntimeError):
        write_report(_tiny_doc(), old)
    assert old.read_bytes() == b"old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]


def test_a_failed_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "report.html"
    old.write_text("old report", encoding="utf-8")

    def fail(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(render.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(_tiny_doc(), old)
    assert old.read_text(encoding="utf-8") == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_text_parts_are_joined_as_sentences(lang):
    """A flagged mismatch and its action read as two sentences, not "…flagged) Re-assess…"."""
    from types import SimpleNamespace

    from suitability.explain.reports import _mismatch_text, sentences
    from suitability.models.rules import Mismatch

    mismatch = Mismatch(
        direction="overstated",
        stated="C3",
        predicted="C2",
        confidence=0.88,
        flagged=True,
        levels_apart=1,
    )
    text = _mismatch_text(SimpleNamespace(mismatch=mismatch), lang)
    if lang == "en":
        assert "flagged). Re-assess before" in text and text.endswith(".")
    else:
        assert "已标记）。在匹配" in text and text.endswith("。")
    assert sentences(["One", "Two.", " ", "Three?"], "en") == "One. Two. Three?"
    assert sentences(["一", "二。"], "zh") == "一。二。"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_chart_labels_keep_long_descriptions_apart(lang):
    """Two descriptions that differ only at their end (the 1095-day and the 365-day window)
    keep whole, numbered labels as the reason table numbers them, not one cut label."""
    from suitability.explain.charts import bar_labels, text_width

    if lang == "en":
        texts = [
            "Number of investments in the last 1095 days (all products, any channel)",
            "Number of investments in the last 365 days (all products, any channel)",
        ]
    else:
        texts = [
            "过去1095天内的投资次数（全部产品、全部渠道）",
            "过去365天内的投资次数（全部产品、全部渠道）",
        ]
    labels = bar_labels(texts, lang)
    assert len(set(labels)) == 2
    for i, (label, text) in enumerate(zip(labels, texts, strict=True), 1):
        flat = label.replace("\n", "" if lang == "zh" else " ")
        assert flat == f"{i}. {text}" and "…" not in label
        # 16 Chinese characters (two Latin ones wide each), or 34 Latin ones
        assert max(text_width(line) for line in label.splitlines()) <= (32 if lang == "zh" else 34)


def test_html_embeds_a_font_with_every_character_it_shows(zh_doc: Document) -> None:
    """The page carries Noto Sans SC as a WOFF data URI in its style sheet, subset to its own
    characters: every character of the page's text has a glyph in it, so Chinese renders on a
    machine without CJK fonts; and the subset is small against the 8 MB font."""
    from fontTools.ttLib import TTFont

    from suitability.explain.render import _page_text

    html = render_html(zh_doc)
    found = re.search(r'url\("data:font/woff;base64,([A-Za-z0-9+/=]+)"\) format\("woff"\)', html)
    assert found, "no embedded font"
    data = base64.b64decode(found.group(1))
    assert data[:4] == b"wOFF" and len(data) < 400_000
    font = TTFont(BytesIO(data))
    covered = set(font.getBestCmap())
    shown = {c for c in _page_text(html) if not c.isspace() and ord(c) >= 0x20}
    missing = sorted(c for c in shown if ord(c) not in covered)
    assert not missing, missing[:20]
    assert any(ord(c) > 0x2E80 for c in shown)  # there is Chinese to cover
    assert 'font-family: "Suitability Noto Sans SC"' in html
