"""Advisor worklists from score rows: who is listed, in which order, worded in zh and en, and
written as CSV, Excel or one self-contained HTML page; the worklist spec's own checks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from suitability.scoring.flags import CARE_FLAGS, TRIGGERS
from suitability.scoring.population import score_schema
from suitability.scoring.worklists import (
    MAX_HTML_ROWS,
    load_worklist_spec,
    reassess_list,
    retention_list,
    worklist_format,
    write_worklist,
)
from suitability.specs import SpecError, load_specs

ROOT = Path(__file__).resolve().parents[1]
AS_OF = pd.Timestamp("2026-10-01")


@pytest.fixture(scope="module")
def spec():
    return load_worklist_spec(ROOT / "models" / "worklists.yaml")


@pytest.fixture(scope="module")
def channels():
    return load_specs(ROOT / "features").behaviour.channels


def scores(*rows: dict) -> pd.DataFrame:
    """Score rows with every column of a score file; unspecified flags off."""
    defaults = {
        "as_of": AS_OF,
        "stated_level": "C3",
        "predicted_level": "C3",
        "mismatch": "none",
        "mismatch_confidence": 0.0,
        "mismatch_flagged": False,
        "levels_apart": 0,
        "p_churn": 0.1,
        "age_years": 40.0,
        "channel_preference": "app",
        "active": True,
        "amount_at_stake": 1000.0,
        "expected_loss": 100.0,
        "churn_reason_1_zh": "近90天投资次数为0，提高流失风险",
        "churn_reason_1_en": "Number of investment events in the last 90 days is 0, raising",
        "churn_reason_2_zh": None,
        "churn_reason_2_en": None,
        **{name: False for name in (*TRIGGERS, *CARE_FLAGS, "reassess")},
        **{f"{name}_since": pd.NaT for name in TRIGGERS},
    }
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    for field in score_schema():
        if field.name not in frame:
            frame[field.name] = None
    frame["reassess"] = frame[list(TRIGGERS)].any(axis=1)
    return frame


def test_the_reassess_list_puts_care_first_then_the_priority_score(spec, channels):
    frame = scores(
        {"customer_id": "A", "no_questionnaire": True,
         "no_questionnaire_since": pd.Timestamp("2026-01-01")},
        {"customer_id": "B", "overstated": True, "mismatch_flagged": True,
         "mismatch_confidence": 0.9, "overstated_since": AS_OF, "elderly": True},
        {"customer_id": "C", "stale_questionnaire": True,
         "stale_questionnaire_since": AS_OF - pd.Timedelta(days=365.25 * 2),
         "interview_more_cautious": True,
         "interview_more_cautious_since": pd.Timestamp("2026-09-01")},
        {"customer_id": "D"},  # nothing to re-assess
    )  # fmt: skip
    listed = reassess_list(frame, spec, channels, "en")
    assert list(listed["customer_id"]) == ["B", "C", "A"]  # elderly first, then by score
    assert list(listed["rank"]) == [1, 2, 3]
    weights = spec.reassess.triggers
    assert listed["score"].tolist() == pytest.approx(
        [
            round(weights["overstated"].weight * 0.9, 2),
            round(weights["stale_questionnaire"].weight
                  + weights["interview_more_cautious"].weight + 2.0, 2),
            weights["no_questionnaire"].weight,
        ]
    )  # fmt: skip
    c = listed.set_index("customer_id").loc["C"]
    assert c["since"] == AS_OF - pd.Timedelta(days=365.25 * 2)  # the earliest trigger
    assert c["days_open"] == 730
    assert c["triggers"] == (
        "questionnaire past its validity; interview more cautious than the questionnaire"
    )
    b = listed.set_index("customer_id").loc["B"]
    assert b["care"] == "elderly" and b["confidence"] == pytest.approx(0.9)
    assert np.isnan(listed.set_index("customer_id").loc["A", "confidence"])
    assert listed.set_index("customer_id").loc["A", "channel"] == "app"


def test_the_zh_lists_are_worded_in_chinese(spec, channels):
    frame = scores(
        {"customer_id": "A", "became_elderly": True, "elderly": True, "vulnerable": True,
         "became_elderly_since": pd.Timestamp("2026-05-01"), "channel_preference": "branch"},
    )  # fmt: skip
    listed = reassess_list(frame, spec, channels, "zh")
    row = listed.iloc[0]
    assert row["triggers"] == "完成问卷后已达到高龄客户年龄"
    assert row["care"] == "高龄客户；需特别关注" and row["channel"] == "线下门店"
    assert row["priority"] in ("高", "中", "低")
    kept = retention_list(frame, spec, channels, "zh").iloc[0]
    assert kept["reason_1"].startswith("近90天投资次数") and kept["channel"] == "线下门店"
    for text in map(str, (*listed.to_numpy().ravel(), *kept.to_numpy())):
        assert not re.search(r"[a-z]{3,}_[a-z]", text), text  # no code names


def test_the_retention_list_ranks_active_investors_by_expected_loss(spec, channels):
    frame = scores(
        {"customer_id": "A", "expected_loss": 50.0},
        {"customer_id": "B", "expected_loss": 5000.0, "p_churn": 0.5, "amount_at_stake": 1e4},
        {"customer_id": "C", "expected_loss": 0.0},
        {"customer_id": "D", "expected_loss": 9000.0, "active": False},
    )
    listed = retention_list(frame, spec, channels, "en")
    assert list(listed["customer_id"]) == ["B", "A"]
    assert listed.iloc[0]["reason_1"].startswith("Number of investment events")
    assert listed.iloc[0]["reason_2"] == ""


def test_lists_are_written_as_csv_excel_or_one_html_page(spec, channels, tmp_path):
    frame = reassess_list(
        scores({"customer_id": "A", "no_questionnaire": True,
                "no_questionnaire_since": pd.Timestamp("2026-01-01")}),
        spec, channels, "zh",
    )  # fmt: skip
    meta = [("基准时间", "2026-10-01"), ("模型", "risk-level v1, churn v1")]
    csv = write_worklist(frame, tmp_path / "list.csv", "reassess", "zh", meta)
    raw = csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel opens UTF-8 Chinese correctly
    back = pd.read_csv(csv, encoding="utf-8-sig")
    assert list(back.columns)[:4] == ["序号", "优先级", "优先分", "客户编号"]
    assert back.iloc[0]["客户编号"] == "A"

    xlsx = write_worklist(frame, tmp_path / "list.xlsx", "reassess", "zh", meta)
    sheets = pd.read_excel(xlsx, sheet_name=None)
    assert set(sheets) == {"reassess", "说明"}
    assert sheets["reassess"].iloc[0]["客户编号"] == "A"

    html = write_worklist(frame, tmp_path / "list.html", "reassess", "zh", meta, total=10)
    page = html.read_text(encoding="utf-8")
    assert "需重新评估的客户清单" in page and "共10名客户，列出前1名。" in page
    assert "尚未完成风险测评问卷" in page and "@font-face" in page
    assert not re.search(r"""(src|href)=["']https?://""", page)  # nothing from elsewhere
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_refusals_name_what_is_wrong(spec, channels, tmp_path):
    with pytest.raises(ValueError, match=r"\.csv, \.xlsx or \.html"):
        worklist_format(tmp_path / "list.pdf")
    many = pd.DataFrame({"rank": np.arange(MAX_HTML_ROWS + 1)})
    with pytest.raises(ValueError, match="give --limit"):
        write_worklist(many, tmp_path / "big.html", "reassess", "en", [])
    assert not (tmp_path / "big.html").exists()


def test_the_worklist_spec_is_checked_when_loaded(tmp_path):
    raw = yaml.safe_load((ROOT / "models" / "worklists.yaml").read_text(encoding="utf-8"))
    del raw["reassess"]["triggers"]["became_elderly"]
    broken = tmp_path / "worklists.yaml"
    broken.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SpecError, match="missing \\['became_elderly'\\]"):
        load_worklist_spec(broken)
    raw = yaml.safe_load((ROOT / "models" / "worklists.yaml").read_text(encoding="utf-8"))
    raw["reassess"]["bands"] = {"high": 2.0, "medium": 3.0}
    broken.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(SpecError, match=r"medium .* must be below high"):
        load_worklist_spec(broken)
