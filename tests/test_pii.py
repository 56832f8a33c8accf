"""PII masking: the documented formats, compound surnames, +86 phones, free-text notes, keyed
pseudonyms for ID numbers; masking is idempotent, keeps nulls null and never passes an
odd-looking value through."""

from __future__ import annotations

import hashlib
import hmac
import re

import pandas as pd
import pytest

from suitability.data.pii import (
    id_pseudonym,
    mask_id_number,
    mask_name,
    mask_note,
    mask_phone,
    mask_pii,
    mask_pii_arrays,
    pseudonym_key,
)
from suitability.data.schema import CUSTOMERS, INTERVIEW_TAGS
from suitability.settings import get_settings


def _masked(masker, values: list[object]) -> list[object]:
    out = masker(pd.Series(values, dtype="str"))
    return [None if pd.isna(v) else v for v in out]


def test_id_numbers_become_keyed_pseudonyms_that_reveal_no_digit(monkeypatch):
    raw = ["110101199001011234", "11010119900101123x", "110101 1990-0101 123X", "12345", ""]
    masked = _masked(mask_id_number, raw)
    assert all(re.fullmatch(r"idh_[0-9a-f]{24}", m) for m in masked[:4]), masked
    assert masked[1] == masked[2]  # one ID however written: still joinable
    assert masked[0] != masked[1] and masked[4] == ""
    # Without the key, knowing everything beside it (region, birth date, sex) does not help:
    # the pseudonym is not the hash of the ID alone, and another key gives other pseudonyms.
    assert masked[0] not in {
        "idh_" + hashlib.sha256(raw[0].encode()).hexdigest()[:24],
        "idh_" + hmac.digest(b"", raw[0].encode(), "sha256").hex()[:24],
    }
    assert id_pseudonym(raw[0], b"k" * 32) != id_pseudonym(raw[0], b"j" * 32)


def test_the_pseudonym_key_comes_from_the_setting_or_a_private_file(monkeypatch, tmp_path):
    monkeypatch.delenv("SUITABILITY_PII_KEY", raising=False)
    monkeypatch.setenv("SUITABILITY_PII_KEY_FILE", str(tmp_path / "k" / "pii.key"))
    get_settings.cache_clear()
    pseudonym_key.cache_clear()
    try:
        first = pseudonym_key()
        path = tmp_path / "k" / "pii.key"
        assert path.stat().st_mode & 0o777 == 0o600 and len(first) == 64
        pseudonym_key.cache_clear()
        assert pseudonym_key() == first  # made once, then read
        monkeypatch.setenv("SUITABILITY_PII_KEY", "short")
        get_settings.cache_clear()
        pseudonym_key.cache_clear()
        with pytest.raises(ValueError, match="at least 32"):
            pseudonym_key()
        monkeypatch.setenv("SUITABILITY_PII_KEY", "x" * 40)
        get_settings.cache_clear()
        pseudonym_key.cache_clear()
        assert pseudonym_key() == b"x" * 40
    finally:
        get_settings.cache_clear()
        pseudonym_key.cache_clear()


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("13812345678", "138****5678"),
        ("138-1234-5678", "138****5678"),
        ("+86 138 1234 5678", "138****5678"),
        ("+86-13812345678", "138****5678"),
        ("008613812345678", "138****5678"),
        ("8613812345678", "138****5678"),
        ("(010) 8765-4321", "010****4321"),
        ("87654321", "****4321"),  # a local number keeps only its last four
        ("12345", "*****"),
        ("call me", "******"),  # separators go first,
    ],
)
def test_phone_keeps_first_three_and_last_four(raw, masked):
    assert _masked(mask_phone, [raw]) == [masked]


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("张三", "张*"),
        ("王小明", "王*"),
        ("欧阳娜娜", "欧阳*"),
        ("司马懿", "司马*"),
        ("诸葛亮", "诸葛*"),
        ("上官婉儿", "上官*"),
        ("歐陽修", "歐陽*"),
        ("欧小明", "欧*"),  # 欧 alone is an ordinary surname
        ("Li Lei", "L*"),
        ("  Alice Smith ", "A*"),
        ("张", "张*"),
    ],
)
def test_name_keeps_the_surname_and_one_star(raw, masked):
    assert _masked(mask_name, [raw]) == [masked]


def test_note_masks_phones_ids_and_emails_inside_text():
    notes = [
        "客户手机13812345678，身份证110101199001011234，邮箱 zhang.san@example.com。",
        "Call +86 139-1234-5678 or office 010-87654321; old ID 110101900101123.",
        "QQ mail 13812345678@qq.com",
        "no personal data: bought 100000 of P001 on 2024-01-01",
    ]
    assert _masked(mask_note, notes) == [
        "客户手机138****5678，身份证******************，邮箱 z***@example.com。",
        "Call 139****5678 or office 010-****4321; old ID ***************.",
        "QQ mail 1***@qq.com",
        "no personal data: bought 100000 of P001 on 2024-01-01",
    ]


@pytest.mark.parametrize(
    ("masker", "values"),
    [
        (mask_id_number, ["110101199001011234", "110101900101123", "12345", "", "abc-def"]),
        (mask_phone, ["13812345678", "+86 138 1234 5678", "87654321", "123", "+86138****5678"]),
        (mask_name, ["张三", "欧阳娜娜", "Li Lei", "欧*", "", " 王 "]),
        (
            mask_note,
            ["tel 13812345678 id 11010119900101123X mail a.b@c.org", "010-87654321", ""],
        ),
    ],
)
def test_masking_is_idempotent_and_keeps_nulls(masker, values):
    once = masker(pd.Series([*values, None], dtype="str"))
    twice = masker(once)
    pd.testing.assert_series_equal(once, twice)
    assert once.isna().tolist() == [False] * len(values) + [True]
    assert str(once.dtype) == "str"


def test_masking_keeps_index_and_name_and_accepts_object_series():
    values = pd.Series(["13812345678", None, float("nan")], index=[7, 8, 9], name="phone")
    out = mask_phone(values)
    assert out.index.tolist() == [7, 8, 9] and out.name == "phone"
    assert out.iloc[0] == "138****5678" and out.iloc[1:].isna().all()


def test_mask_pii_masks_only_the_pii_columns_of_a_table():
    customers = pd.DataFrame(
        {
            "customer_id": ["13812345678"],  # not PII by the schema: untouched
            "name": ["欧阳娜娜"],
            "phone": ["13812345678"],
        }
    )
    out = mask_pii(customers, CUSTOMERS)
    assert out.to_dict("records") == [
        {"customer_id": "13812345678", "name": "欧阳*", "phone": "138****5678"}
    ]
    assert customers["name"].iloc[0] == "欧阳娜娜"  # the input is not modified
    tags = pd.DataFrame({"tag": ["calm"], "note": ["phone 13812345678"]})
    assert mask_pii(tags, INTERVIEW_TAGS)["note"].iloc[0] == "phone 138****5678"


def test_masking_arrow_columns_gives_what_masking_the_frame_gives():
    """Ingest masks the arrow arrays before the frame exists; the result must be the frame
    masker's, column for column (nulls, odd values and untouched columns included)."""
    import pyarrow as pa

    customers = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4"],
            "name": ["欧阳娜娜", "Li Lei", None, "  张三 "],
            "id_number": ["110101199001011234", "12345", None, "110101-1990-0101-123x"],
            "phone": ["+86 138 1234 5678", "8765432", None, "12"],
        },
        dtype="str",
    )
    tags = pd.DataFrame(
        {"tag": ["calm", "calm"], "note": ["call 13812345678 or a@b.cn", None]}, dtype="str"
    )
    for frame, table in ((customers, CUSTOMERS), (tags, INTERVIEW_TAGS)):
        arrays = {c: pa.array(frame[c], type=pa.large_string()) for c in frame.columns}
        masked = mask_pii_arrays(arrays, table)
        expected = mask_pii(frame, table)
        for column in frame.columns:
            assert masked[column].type == pa.large_string()
            got = pd.Series(masked[column].to_pylist(), dtype="str")
            pd.testing.assert_series_equal(got, expected[column], check_names=False)


def test_masking_a_million_values_is_vectorised():
    """A million phone numbers mask in well under a second or two (no Python per row)."""
    import time

    phones = pd.Series([f"138{i:08d}" for i in range(1_000_000)], dtype="str")
    start = time.perf_counter()
    out = mask_phone(phones)
    assert time.perf_counter() - start < 5
    assert out.iloc[123456] == "138****3456"


def test_note_masks_digits_however_they_are_separated():
    notes = [
        "请打 138.1234.5678 或 (138) 1234 5678",
        "身份证 110101 19900101 1234",
        "到期日 2024-01-01",
    ]
    masked = _masked(mask_note, notes)
    for digits in ("1234", "5678", "19900101"):
        assert not any(digits in m for m in masked[:2])
    assert masked[2] == "到期日 2024-01-01"


def test_headerless_csv_warning_does_not_list_personal_data(tmp_path, specs):
    import warnings

    from suitability.data.io import load_table

    (tmp_path / "customers.csv").write_text(
        "C1,1980-01-01,M,T1,I1,2020-01-01 00:00:00,app,张三,110101198001011234,13812345678\n",
        encoding="utf-8",
    )
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError) as info:
        warnings.simplefilter("always")
        load_table(tmp_path, "customers", specs)
    text = str(info.value) + " ".join(str(w.message) for w in caught)
    for value in ("张三", "110101198001011234", "13812345678"):
        assert value not in text
