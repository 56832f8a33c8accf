"""A small, format-neutral report document: what a report says, not how it looks.

Reports are built as a `Document` of sections and blocks; `suitability.explain.render` turns the
same document into HTML or PDF, so both formats always carry the same content.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Tone = Literal["info", "ok", "warning", "danger"]
_TONES: tuple[str, ...] = ("info", "ok", "warning", "danger")


@dataclass(frozen=True)
class Paragraph:
    """Running text; a newline in `text` starts a new line."""

    text: str


@dataclass(frozen=True)
class KeyValues:
    """Label/value pairs, e.g. a customer's profile at a glance."""

    rows: list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells; `numeric[i]` right-aligns column i."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: list[bool] | None = None

    def __post_init__(self) -> None:
        width = len(self.columns)
        if width == 0:
            raise ValueError("a Table needs at least one column")
        ragged = [i for i, row in enumerate(self.rows) if len(row) != width]
        if ragged:
            raise ValueError(
                f"Table rows {ragged[:5]} do not have {width} cells (one per column "
                f"{self.columns!r})"
            )
        if self.numeric is not None and len(self.numeric) != width:
            raise ValueError(
                f"Table numeric has {len(self.numeric)} flags for {width} columns; give one "
                "per column"
            )

    @property
    def is_numeric(self) -> list[bool]:
        """One flag per column, all False when `numeric` was not given."""
        return list(self.numeric) if self.numeric is not None else [False] * len(self.columns)


@dataclass(frozen=True)
class Figure:
    """A PNG image; `width` is its share of the text width, in (0, 1]."""

    png: bytes
    caption: str = ""
    width: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.width <= 1.0:
            raise ValueError(
                f"Figure width is a share of the text width in (0, 1], got {self.width}"
            )
        if not self.png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError(
                "Figure png must be PNG bytes (e.g. from fig.savefig(buf, format='png'))"
            )


@dataclass(frozen=True)
class Callout:
    """A highlighted note; `tone` sets its colour (info, ok, warning, danger)."""

    text: str
    tone: Tone = "info"

    def __post_init__(self) -> None:
        if self.tone not in _TONES:
            raise ValueError(f"Callout tone must be one of {', '.join(_TONES)}, got {self.tone!r}")


@dataclass(frozen=True)
class Bullets:
    """An unordered list."""

    items: list[str]


Block = Paragraph | KeyValues | Table | Figure | Callout | Bullets


@dataclass(frozen=True)
class Section:
    """A headed run of blocks."""

    heading: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    """A whole report. `lang` picks the HTML language tag and the PDF page-number wording."""

    title: str
    lang: Literal["zh", "en"]
    subtitle: str = ""
    meta: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    footer: str = ""

    def __post_init__(self) -> None:
        if self.lang not in ("zh", "en"):
            raise ValueError(f"Document lang must be 'zh' or 'en', got {self.lang!r}")

    def text(self) -> Iterator[str]:
        """Every piece of text a reader sees, in reading order (for tests and glyph checks)."""
        yield self.title
        yield self.subtitle
        for key, value in self.meta:
            yield key
            yield value
        for section in self.sections:
            yield section.heading
            for block in section.blocks:
                yield from _block_text(block)
        yield self.footer


def _block_text(block: Block) -> Iterator[str]:
    match block:
        case Paragraph(text=text) | Callout(text=text):
            yield text
        case KeyValues(rows=rows):
            for key, value in rows:
                yield key
                yield value
        case Table():
            yield block.caption
            yield from block.columns
            for row in block.rows:
                yield from row
        case Figure(caption=caption):
            yield caption
        case Bullets(items=items):
            yield from items
