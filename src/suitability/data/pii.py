"""Mask personal data on ingest, so that nothing downstream (features, MLflow, logs, reports,
error messages) ever sees an unmasked name, ID number, phone number or free-text note.

Every masker keeps nulls null and is idempotent: masking an already-masked value returns it
unchanged, so data can be re-ingested safely. A value that does not look valid is still masked,
never passed through. Names, phones and notes are masked by pyarrow compute on whole columns.

An ID number is not partially masked: its hidden middle is the holder's birth date, which the
same record carries, and the rest (region, sequence, check digit) can then be rebuilt. It
becomes a keyed pseudonym instead, `idh_` + 24 hex digits of HMAC-SHA256 under the platform's
key (`SUITABILITY_PII_KEY`, or the key file): the same ID gives the same pseudonym wherever the
key is the same, so records stay joinable, and without the key it cannot be reversed, not even
by trying every birth date.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from suitability.data.schema import TableSchema

#: Two-character Chinese compound surnames (复姓), simplified and traditional forms, so that
#: 欧阳娜娜 masks to 欧阳* rather than 欧*.
COMPOUND_SURNAMES: frozenset[str] = frozenset(
    """
    欧阳 司马 诸葛 上官 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 独孤 南宫 西门
    申屠 端木 澹台 公冶 宗政 濮阳 太叔 仲孙 钟离 闻人 万俟 赫连 呼延 百里 东郭 左丘 拓跋 司空
    第五 梁丘 闾丘 乐正 单于 亓官 司寇 谷梁 公良 公西 漆雕 壤驷 公羊 羊舌 微生 巫马 子车 颛孙
    段干 鲜于 东门 公户 公玉 公仪 南门 呼衍 淳于 叱干 宰父 夹谷 拓拔 乐于
    歐陽 司馬 諸葛 東方 尉遲 長孫 軒轅 令狐 獨孤 南宮 西門 端木 澹臺 鍾離 聞人 赫連 東郭 閭丘
    樂正 單於 穀梁 顓孫 鮮於 東門 公孫 皇甫 夏侯 慕容 宇文
    """.split()  # noqa: SIM905 (a block of names reads better than 100 quoted strings)
)

_SEPARATORS = r"[\s\-().]"

# Free-text patterns (RE2 syntax: pyarrow's regex engine has no look-around, so the patterns are
# ordered instead: emails first (a phone number can be an email's local part), then 18- and
# 15-character ID numbers (they contain 11-digit runs that look like phone numbers), then mobile
# and landline numbers. Each replacement leaves stars where digits were, so no pattern matches
# its own output and masking twice changes nothing. Over-masking a long number that is neither
# (an order number, a bank card) is the safe direction.
_NOTE_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        r"([A-Za-z0-9])[A-Za-z0-9._%+\-]*@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})",
        r"\1***@\2",
    ),
    # ID numbers in free text are starred whole: six and four kept would rebuild them.
    (r"\d{17}[\dXx]", "******************"),
    (r"\d{15}", "***************"),
    (r"(?:(?:\+|00)86[\s\-]?)?(1[3-9]\d)[\s\-]?\d{4}[\s\-]?(\d{4})", r"\1****\2"),
    (r"(0\d{2,3})[\s\-]?\d{3,4}(\d{4})", r"\1-****\2"),
    # Whatever still shows seven or more digits, however separated ("138.1234.5678",
    # "(138) 1234 5678", a spaced ID number), is starred whole.
    (r"(?:\d[\s.()]*){6,}\d", "***"),
)


def mask_id_number(values: pd.Series) -> pd.Series:
    """Resident ID numbers as keyed pseudonyms (`110101199001011234` -> `idh_` + 24 hex).
    Spaces and hyphens are dropped and `x` upper-cased first, so the forms of one ID give one
    pseudonym; an empty value stays empty."""
    return _on_arrow(values, _mask_id_number)


_PSEUDONYM = re.compile(r"idh_[0-9a-f]{24}")
logger = logging.getLogger("suitability")


def id_pseudonym(value: str, key: bytes | None = None) -> str:
    """The pseudonym of one ID number (idempotent: a pseudonym is returned as it is)."""
    if _PSEUDONYM.fullmatch(value) or value == "":
        return value
    clean = re.sub(r"[\s\-]", "", value).upper()
    digest = hmac.digest(key or pseudonym_key(), clean.encode("utf-8"), hashlib.sha256)
    return "idh_" + digest.hex()[:24]


@lru_cache(maxsize=1)
def pseudonym_key() -> bytes:
    """The key of the ID pseudonyms: SUITABILITY_PII_KEY (at least 32 characters), else the
    key file (SUITABILITY_PII_KEY_FILE, default `~/.config/suitability/pii.key`), made with
    32 random bytes the first time. Every machine that must give the same pseudonyms (the batch
    jobs and the service) needs the same key; keep it out of the data and the repository."""
    from suitability.settings import get_settings

    settings = get_settings()
    if settings.pii_key is not None:
        secret = settings.pii_key.get_secret_value()
        if len(secret) < 32:
            raise ValueError("SUITABILITY_PII_KEY must be at least 32 characters long")
        return secret.encode("utf-8")
    path = settings.pii_key_path
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return _read_key(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    logger.warning(
        "made a new key for ID-number pseudonyms at %s; give the batch jobs and the service "
        "the same key (copy the file, or set SUITABILITY_PII_KEY)",
        path,
    )
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < 32:
        raise ValueError(f"the pseudonym key file {path} holds fewer than 32 characters")
    return secret.encode("utf-8")


def mask_phone(values: pd.Series) -> pd.Series:
    """Phone numbers: first 3 + `****` + last 4 (`13812345678` -> `138****5678`). Separators and
    a `+86` / `0086` / `86` country code are dropped first; 7-10 characters keep only the last
    4; shorter values are starred completely."""
    return _on_arrow(values, _mask_phone)


def mask_name(values: pd.Series) -> pd.Series:
    """Personal names: surname + one star (`张三` -> `张*`, `欧阳娜娜` -> `欧阳*`, `Li Lei` -> `L*`).
    Compound surnames are kept whole; for any other name the first character is the surname."""
    return _on_arrow(values, _mask_name)


def mask_note(values: pd.Series) -> pd.Series:
    """Free text: star the middle of any email address, ID number (15/18 characters) and phone
    number found in the text; the rest of the text is kept."""
    return _on_arrow(values, _mask_note)


#: The masker for each PII column name in the schemas.
MASKERS: dict[str, Callable[[pd.Series], pd.Series]] = {
    "name": mask_name,
    "id_number": mask_id_number,
    "phone": mask_phone,
    "note": mask_note,
}


def mask_pii(frame: pd.DataFrame, table: TableSchema) -> pd.DataFrame:
    """A copy of `frame` with every PII column of `table` that is present masked. A PII column
    without a dedicated masker is starred completely rather than passed through."""
    present = [c.name for c in table.columns if c.pii and c.name in frame.columns]
    if not present:
        return frame
    out = frame.copy(deep=False)
    for name in present:
        out[name] = MASKERS.get(name, _mask_fully)(frame[name])
    return out


def mask_pii_arrays(arrays: Mapping[str, pa.Array], table: TableSchema) -> dict[str, pa.Array]:
    """`mask_pii` on arrow columns (large_string text in, large_string out): the same masks,
    for callers that hold the columns in arrow before they become a frame."""
    out = dict(arrays)
    for column in table.columns:
        if column.pii and column.name in out:
            kernel = _ARROW_MASKERS.get(column.name, _stars_of)
            text = pc.cast(out[column.name], pa.large_string())
            out[column.name] = pc.cast(kernel(text), pa.large_string())
    return out


# --- arrow kernels --------------------------------------------------------------------------------


def _on_arrow(values: pd.Series, kernel: Callable[[pa.Array], pa.Array]) -> pd.Series:
    """Run an arrow kernel on a column of text and hand back a pandas `str` Series with the
    same index and name."""
    array = pa.array(values, type=pa.large_string(), from_pandas=True)
    masked = kernel(array)
    return pd.Series(masked.to_pandas().array, index=values.index, name=values.name, dtype="str")


def _stars(counts: pa.Array) -> pa.Array:
    return pc.binary_repeat(
        pa.scalar("*", pa.large_string()), pc.max_element_wise(counts, 0, skip_nulls=False)
    )


def _join(*parts: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(*parts, pa.scalar("", pa.large_string()))


def _stars_of(values: pa.Array) -> pa.Array:
    return _stars(pc.utf8_length(values))


def _mask_fully(values: pd.Series) -> pd.Series:
    return _on_arrow(values, _stars_of)


def _mask_id_number(values: pa.Array) -> pa.Array:
    """`id_pseudonym` of every value. HMAC has no arrow kernel, so each value costs one C
    call; the rest is vectorised: the usual value (digits and X only) is upper-cased in arrow,
    and only values with separators go through `id_pseudonym`'s own clean-up."""
    key = pseudonym_key()
    plain = pc.fill_null(pc.match_substring_regex(values, r"^[0-9Xx]+$"), False)
    upper = pc.utf8_upper(values).to_pylist()
    digest, sha256 = hmac.digest, hashlib.sha256
    masked = [
        None
        if v is None
        else "idh_" + digest(key, u.encode(), sha256).hex()[:24]
        if p
        else id_pseudonym(v, key)
        for v, u, p in zip(values.to_pylist(), upper, plain.to_pylist(), strict=True)
    ]
    return pa.array(masked, type=pa.large_string())


def _mask_phone(values: pa.Array) -> pa.Array:
    clean = pc.replace_substring_regex(values, _SEPARATORS, "")
    # An explicit international prefix always goes; a bare 86 only in front of a mobile number.
    clean = pc.replace_substring_regex(clean, r"^(?:\+|00)86", "")
    clean = pc.replace_substring_regex(clean, r"^86(1[\d*]{10})$", r"\1")
    length = pc.utf8_length(clean)
    last4 = pc.utf8_slice_codeunits(clean, -4)
    long_form = _join(pc.utf8_slice_codeunits(clean, 0, 3), _stars(pc.subtract(length, 7)), last4)
    short_form = _join(_stars(pc.subtract(length, 4)), last4)
    return pc.case_when(
        pc.make_struct(pc.greater_equal(length, 11), pc.greater_equal(length, 7)),
        long_form,
        short_form,
        _stars(length),
    )


def _mask_name(values: pa.Array) -> pa.Array:
    clean = pc.utf8_trim_whitespace(values)
    first_two = pc.utf8_slice_codeunits(clean, 0, 2)
    compound = pc.is_in(first_two, value_set=pa.array(sorted(COMPOUND_SURNAMES), pa.large_string()))
    surname = pc.if_else(compound, first_two, pc.utf8_slice_codeunits(clean, 0, 1))
    masked = _join(surname, pa.scalar("*", pa.large_string()))
    return pc.if_else(pc.equal(clean, ""), clean, masked)


def _mask_note(values: pa.Array) -> pa.Array:
    for pattern, replacement in _NOTE_PATTERNS:
        values = pc.replace_substring_regex(values, pattern=pattern, replacement=replacement)
    return values


#: The arrow kernel behind each masker of `MASKERS`.
_ARROW_MASKERS: dict[str, Callable[[pa.Array], pa.Array]] = {
    "name": _mask_name,
    "id_number": _mask_id_number,
    "phone": _mask_phone,
    "note": _mask_note,
}
