"""Advisor worklists from a score file: who must be re-assessed (their triggers, since when, in
priority order) and whom to call to keep them (active investors by expected loss, with the
reasons an advisor can read and their preferred channel). Worded in zh or en by
`models/worklists.yaml`; written as CSV, Excel or one self-contained HTML page. Customers are
named by their pseudonymous id only, as in the score file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from suitability.explain.reasons import Lang
from suitability.scoring.flags import CARE_FLAGS, TRIGGERS
from suitability.specs import Label, load_spec_file

Kind = Literal["reassess", "retention"]
KINDS: tuple[Kind, ...] = ("reassess", "retention")
Band = Literal["high", "medium", "low"]
#: An HTML list is for reading: beyond this many rows, write CSV or Excel (or give a limit).
MAX_HTML_ROWS = 5_000
#: Excel's sheet limit, less the heading row.
MAX_XLSX_ROWS = 1_048_575
_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".html": "html", ".htm": "html"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TriggerWording(_Spec):
    weight: float = Field(gt=0)
    zh: Annotated[str, Field(min_length=1)]
    en: Annotated[str, Field(min_length=1)]


class Bands(_Spec):
    high: float = Field(gt=0)
    medium: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.medium >= self.high:
            raise ValueError(f"medium ({self.medium}) must be below high ({self.high})")
        return self


class ReassessSpec(_Spec):
    triggers: dict[str, TriggerWording]
    care_first: list[Literal["elderly", "vulnerable", "lowest_category"]]
    bands: Bands

    @model_validator(mode="after")
    def _every_trigger(self) -> ReassessSpec:
        missing = [t for t in TRIGGERS if t not in self.triggers]
        unknown = sorted(set(self.triggers) - set(TRIGGERS))
        if missing or unknown:
            raise ValueError(
                f"triggers must word exactly {list(TRIGGERS)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {unknown}" if unknown else "")
            )
        return self


class RetentionSpec(_Spec):
    min_expected_loss: float = Field(ge=0)


class WorklistSpec(_Spec):
    """`models/worklists.yaml`: how the lists word and order what the rules decided."""

    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    reassess: ReassessSpec
    retention: RetentionSpec
    care: dict[Literal["elderly", "vulnerable", "lowest_category"], Label]
    levels: dict[Band, Label]

    @model_validator(mode="after")
    def _complete(self) -> WorklistSpec:
        missing = [c for c in CARE_FLAGS if c not in self.care]
        if missing:
            raise ValueError(f"care must word every care flag; missing {missing}")
        bands = [b for b in ("high", "medium", "low") if b not in self.levels]
        if bands:
            raise ValueError(f"levels must word high, medium and low; missing {bands}")
        return self


def load_worklist_spec(path: Path | str | None = None) -> WorklistSpec:
    """Load and validate the worklist spec (default: `<models>/worklists.yaml`)."""
    if path is None:
        from suitability.settings import get_settings

        path = get_settings().models_path / "worklists.yaml"
    return load_spec_file(WorklistSpec, path)


def worklist_format(path: Path) -> str:
    """csv, xlsx or html by the suffix of `path`; a clear error otherwise (cheap, so callers
    check before reading anything)."""
    fmt = _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: a worklist is written as .csv, .xlsx or .html")
    return fmt


# --- the lists ----------------------------------------------------------------------------------

#: Column headings in each language (the frames' own columns are these keys).
HEADINGS: dict[str, Label] = {
    "rank": Label(zh="序号", en="rank"),
    "priority": Label(zh="优先级", en="priority"),
    "score": Label(zh="优先分", en="score"),
    "customer_id": Label(zh="客户编号", en="customer"),
    "stated_level": Label(zh="问卷等级", en="stated"),
    "predicted_level": Label(zh="模型等级", en="predicted"),
    "confidence": Label(zh="模型置信度", en="model confidence"),
    "triggers": Label(zh="重新评估原因", en="why re-assess"),
    "since": Label(zh="起始时间", en="since"),
    "days_open": Label(zh="已持续天数", en="days open"),
    "care": Label(zh="关怀标记", en="care"),
    "age_years": Label(zh="年龄", en="age"),
    "channel": Label(zh="偏好渠道", en="preferred channel"),
    "p_churn": Label(zh="流失概率", en="churn probability"),
    "amount_at_stake": Label(zh="涉及金额（元）", en="amount at stake (CNY)"),
    "expected_loss": Label(zh="预期损失（元）", en="expected loss (CNY)"),
    "reason_1": Label(zh="主要原因一", en="first reason"),
    "reason_2": Label(zh="主要原因二", en="second reason"),
}
_JOIN = {"zh": "；", "en": "; "}


def _join(words: Sequence[str], on: Sequence[bool], lang: Lang) -> str:
    return _JOIN[lang].join(w for w, flag in zip(words, on, strict=True) if flag)


def _care_text(scores: pd.DataFrame, spec: WorklistSpec, lang: Lang) -> list[str]:
    flags = scores[list(CARE_FLAGS)].to_numpy(dtype=bool)
    words = [getattr(spec.care[c], lang) for c in CARE_FLAGS]
    return [_join(words, row, lang) for row in flags]


def _channel_text(scores: pd.DataFrame, channels: Mapping[str, Label], lang: Lang) -> list[str]:
    return [
        getattr(channels[c], lang) if isinstance(c, str) and c in channels else ""
        for c in scores["channel_preference"]
    ]


def priority_scores(scores: pd.DataFrame, spec: WorklistSpec) -> np.ndarray:
    """Σ trigger weights (a model mismatch: weight × the model's confidence) + the years the
    questionnaire is past its validity, per row."""
    weights = spec.reassess.triggers
    confidence = scores["mismatch_confidence"].to_numpy(dtype=np.float64)
    total = np.zeros(len(scores), dtype=np.float64)
    for code in TRIGGERS:
        on = scores[code].to_numpy(dtype=bool)
        factor = confidence if code in ("overstated", "understated") else 1.0
        total += np.where(on, weights[code].weight * factor, 0.0)
    as_of = pd.to_datetime(scores["as_of"])
    stale = pd.to_datetime(scores["stale_questionnaire_since"])
    years = ((as_of - stale).dt.total_seconds() / (365.25 * 86_400)).fillna(0.0)
    return total + np.clip(years.to_numpy(dtype=np.float64), 0.0, None)


def reassess_list(
    scores: pd.DataFrame, spec: WorklistSpec, channels: Mapping[str, Label], lang: Lang
) -> pd.DataFrame:
    """Every customer the rules say must be re-assessed: their triggers worded, the earliest
    date since which one holds, a priority (care flags of `care_first` first, then by score),
    and what an advisor needs to reach them."""
    chosen = scores[scores["reassess"].to_numpy(dtype=bool)].reset_index(drop=True)
    score = priority_scores(chosen, spec)
    care_first = (
        chosen[list(spec.reassess.care_first)].to_numpy(dtype=bool).any(axis=1)
        if spec.reassess.care_first
        else np.zeros(len(chosen), dtype=bool)
    )
    since_columns = [f"{t}_since" for t in TRIGGERS]
    since = chosen[since_columns].apply(pd.to_datetime).min(axis=1)
    as_of = pd.to_datetime(chosen["as_of"])
    words = [getattr(spec.reassess.triggers[t], lang) for t in TRIGGERS]
    on = chosen[list(TRIGGERS)].to_numpy(dtype=bool)
    mismatch = chosen["mismatch_flagged"].to_numpy(dtype=bool)
    bands = spec.reassess.bands
    band = np.where(score >= bands.high, "high", np.where(score >= bands.medium, "medium", "low"))
    frame = pd.DataFrame(
        {
            "priority": [getattr(spec.levels[b], lang) for b in band],  # type: ignore[index]
            "score": np.round(score, 2),
            "customer_id": chosen["customer_id"].astype(str),
            "stated_level": chosen["stated_level"].fillna(""),
            "predicted_level": chosen["predicted_level"],
            "confidence": np.where(mismatch, chosen["mismatch_confidence"], np.nan),
            "triggers": [_join(words, row, lang) for row in on],
            "since": since.dt.floor("s"),
            "days_open": (as_of - since).dt.days,
            "care": _care_text(chosen, spec, lang),
            "age_years": chosen["age_years"],
            "channel": _channel_text(chosen, channels, lang),
        }
    )
    order = np.lexsort((frame["customer_id"].to_numpy(), -score, ~care_first))
    frame = frame.iloc[order].reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def retention_list(
    scores: pd.DataFrame, spec: WorklistSpec, channels: Mapping[str, Label], lang: Lang
) -> pd.DataFrame:
    """Active investors ranked by expected loss (p_churn × amount at stake), with the churn
    model's two reasons in `lang` and their preferred channel."""
    active = scores["active"].to_numpy(dtype=bool)
    loss = scores["expected_loss"].to_numpy(dtype=np.float64)
    chosen = scores[active & (loss >= spec.retention.min_expected_loss) & (loss > 0)]
    chosen = chosen.reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "customer_id": chosen["customer_id"].astype(str),
            "p_churn": chosen["p_churn"],
            "amount_at_stake": chosen["amount_at_stake"],
            "expected_loss": chosen["expected_loss"],
            "reason_1": chosen[f"churn_reason_1_{lang}"].fillna(""),
            "reason_2": chosen[f"churn_reason_2_{lang}"].fillna(""),
            "channel": _channel_text(chosen, channels, lang),
            "care": _care_text(chosen, spec, lang),
        }
    )
    order = np.lexsort((frame["customer_id"].to_numpy(), -frame["expected_loss"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


# --- writing ------------------------------------------------------------------------------------

_TITLES: dict[Kind, Label] = {
    "reassess": Label(zh="需重新评估的客户清单", en="Customers to re-assess"),
    "retention": Label(zh="客户挽留清单", en="Retention worklist"),
}
_INTROS: dict[Kind, Label] = {
    "reassess": Label(
        zh="以下客户按适当性规则需要重新进行风险评估。高龄或需特别关注的客户排在最前，"
        "其余按优先分从高到低排列（优先分＝各项原因的权重之和，模型判断类原因乘以模型置信度，"
        "再加上问卷超过有效期的年数）。",
        en="These customers must be re-assessed under the suitability rules. Elderly and "
        "vulnerable customers come first, then the rest by priority score (the weights of "
        "their reasons, a model finding weighted by the model's confidence, plus the years "
        "their questionnaire is past its validity).",
    ),
    "retention": Label(
        zh="以下为活跃投资者，按预期损失（流失概率×涉及金额）从高到低排列，附模型给出的两个"
        "主要原因和客户偏好的联系渠道。",
        en="Active investors ranked by expected loss (churn probability × amount at stake), "
        "with the model's two main reasons and the customer's preferred channel.",
    ),
}


def _cell(column: str, value: Any, lang: Lang) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if column in ("p_churn", "confidence"):
        return f"{value:.0%}"
    if column in ("amount_at_stake", "expected_loss"):
        return f"{value:,.0f}"
    if column == "since":
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    if column == "age_years":
        return f"{value:.0f}"
    if column == "score":
        return f"{value:.2f}"
    return str(value)


def write_worklist(
    frame: pd.DataFrame,
    path: Path,
    kind: Kind,
    lang: Lang,
    meta: Sequence[tuple[str, str]],
    *,
    total: int | None = None,
) -> Path:
    """Write a list as CSV (UTF-8 with a byte-order mark, so Excel shows Chinese), Excel or one
    self-contained HTML page, with headings in `lang`, whole or not at all. `meta` (label,
    value pairs: as-of time, models, rules) heads the HTML page and the Excel sheet's second
    tab; `total`: how many rows the list had before a limit."""
    from suitability.explain.render import _write_atomically, write_report

    fmt = worklist_format(path)
    headings = {c: getattr(HEADINGS[c], lang) for c in frame.columns}
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        if len(frame) > MAX_HTML_ROWS:
            raise ValueError(
                f"an HTML worklist holds at most {MAX_HTML_ROWS:,} rows, this one has "
                f"{len(frame):,}: give --limit, or write .csv or .xlsx"
            )
        return write_report(_document(frame, kind, lang, meta, headings, total), path, "html")
    if fmt == "xlsx":
        if len(frame) > MAX_XLSX_ROWS:
            raise ValueError(
                f"an Excel sheet holds at most {MAX_XLSX_ROWS:,} rows, this list has "
                f"{len(frame):,}: give --limit, or write .csv"
            )
        return _write_xlsx(frame.rename(columns=headings), path, kind, lang, meta)
    data = frame.rename(columns=headings).to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S")
    _write_atomically(path, data.encode("utf-8-sig"))
    return path


def _document(
    frame: pd.DataFrame,
    kind: Kind,
    lang: Lang,
    meta: Sequence[tuple[str, str]],
    headings: Mapping[str, str],
    total: int | None,
) -> Any:
    from suitability.explain.document import Callout, Document, Paragraph, Section, Table

    numeric = {"rank", "score", "confidence", "days_open", "age_years", "p_churn"}
    numeric |= {"amount_at_stake", "expected_loss"}
    rows = [
        [_cell(c, v, lang) for c, v in zip(frame.columns, row, strict=True)]
        for row in frame.itertuples(index=False, name=None)
    ]
    shown = len(frame)
    if total is not None and total > shown:
        count = (
            f"共{total:,}名客户，列出前{shown:,}名。"
            if lang == "zh"
            else f"{total:,} customers; the first {shown:,} are listed."
        )
    else:
        count = f"共{shown:,}名客户。" if lang == "zh" else f"{shown:,} customers."
    table = Table(
        columns=[headings[c] for c in frame.columns],
        rows=rows,
        numeric=[c in numeric for c in frame.columns],
    )
    about = Section(
        "说明" if lang == "zh" else "About this list",
        [Paragraph(getattr(_INTROS[kind], lang)), Callout(count)],
    )
    listed = Section("客户" if lang == "zh" else "Customers", [table])
    title = getattr(_TITLES[kind], lang)
    return Document(title=title, lang=lang, meta=list(meta), sections=[about, listed])


def _write_xlsx(
    frame: pd.DataFrame, path: Path, kind: Kind, lang: Lang, meta: Sequence[tuple[str, str]]
) -> Path:
    import os
    import uuid

    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp.xlsx")
    try:
        with pd.ExcelWriter(temp, engine="openpyxl") as writer:
            frame.to_excel(writer, sheet_name=kind, index=False)
            about = pd.DataFrame(list(meta), columns=["", ""])
            about.to_excel(writer, sheet_name="about" if lang == "en" else "说明", index=False)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path
