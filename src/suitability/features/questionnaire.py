"""Score risk questionnaires: total score, C-level from the score bands, lowest-category flag.

`score_questionnaire` scores one submission (what a reviewer or the service does);
`score_submissions` scores a long table of many submissions at once with the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from suitability.specs import C_LEVELS, QuestionnaireDefinition


@dataclass(frozen=True)
class QuestionnaireScore:
    total: int
    level: str
    lowest_category: bool
    answer_scores: dict[str, int]

    @property
    def level_number(self) -> int:
        """C1 -> 1 … C5 -> 5."""
        return C_LEVELS.index(self.level) + 1


def _band_level(definition: QuestionnaireDefinition, total: int) -> str:
    for band in definition.bands:
        if band.min <= total <= band.max:
            return band.level
    # Unreachable for a validated definition: bands cover every possible total.
    raise ValueError(f"total score {total} is outside the bands of {definition.version}")


def _is_lowest(definition: QuestionnaireDefinition, answers: Mapping[str, str]) -> bool:
    return any(
        all(answers.get(qid) in allowed for qid, allowed in condition.items())
        for condition in definition.lowest_category
    )


def score_questionnaire(
    answers: Mapping[str, str], definition: QuestionnaireDefinition
) -> QuestionnaireScore:
    """Score one submission: every question of `definition` must be answered with one of its
    options. The lowest-category answers force C1 whatever the total (CSRC suitability rules)."""
    scores = definition.scores
    unknown = sorted(set(answers) - set(scores))
    if unknown:
        raise ValueError(f"questionnaire {definition.version}: unknown question ids {unknown}")
    missing = [qid for qid in definition.question_ids if qid not in answers]
    if missing:
        raise ValueError(f"questionnaire {definition.version}: unanswered questions {missing}")
    answer_scores: dict[str, int] = {}
    for qid in definition.question_ids:
        option = answers[qid]
        if option not in scores[qid]:
            raise ValueError(
                f"questionnaire {definition.version}: answer {option!r} is not an option of "
                f"question {qid!r} (options: {sorted(scores[qid])})"
            )
        answer_scores[qid] = scores[qid][option]
    total = sum(answer_scores.values())
    lowest = _is_lowest(definition, answers)
    level = "C1" if lowest else _band_level(definition, total)
    return QuestionnaireScore(
        total=total, level=level, lowest_category=lowest, answer_scores=answer_scores
    )


def score_submissions(
    responses: pd.DataFrame, definitions: Mapping[str, QuestionnaireDefinition]
) -> pd.DataFrame:
    """Score every submission in a long table (one row per answered question).

    A submission is (customer_id, questionnaire_version, submitted_at). Returns one row per
    submission with `total`, `level` (1–5), `lowest` (bool) and one `score_<question_id>` column
    per question id across `definitions` (NaN where a version lacks the question), sorted by
    customer_id then submitted_at. Rows must already satisfy the data contract.
    """
    keys = ["customer_id", "questionnaire_version", "submitted_at"]
    question_ids: list[str] = list(
        dict.fromkeys(q for d in definitions.values() for q in d.question_ids)
    )
    score_cols = [f"score_{q}" for q in question_ids]
    if responses.empty:
        empty = pd.DataFrame({k: responses[k] for k in keys}).iloc[:0]
        for col in ["total", "level", *score_cols]:
            empty[col] = pd.Series(dtype="float64")
        empty["lowest"] = pd.Series(dtype="bool")
        return empty

    lookup = pd.DataFrame(
        [
            (version, q.id, o.id, o.score)
            for version, d in definitions.items()
            for q in d.questions
            for o in q.options
        ],
        columns=["questionnaire_version", "question_id", "answer", "score"],
    )
    scored = responses[[*keys, "question_id", "answer"]].merge(
        lookup, on=["questionnaire_version", "question_id", "answer"], how="left", validate="m:1"
    )
    wide_scores = scored.pivot(index=keys, columns="question_id", values="score")
    wide_answers = scored.pivot(index=keys, columns="question_id", values="answer")
    out = pd.DataFrame(index=wide_scores.index)
    for q, col in zip(question_ids, score_cols, strict=True):
        out[col] = wide_scores[q].astype("float64") if q in wide_scores else np.nan
    out["total"] = wide_scores.sum(axis=1).astype("float64")

    versions = out.index.get_level_values("questionnaire_version")
    level = np.zeros(len(out), dtype="float64")
    lowest = np.zeros(len(out), dtype=bool)
    for version, d in definitions.items():
        rows = np.asarray(versions == version)
        if not rows.any():
            continue
        mins = np.array([b.min for b in d.bands])
        band_levels = np.array([C_LEVELS.index(b.level) + 1 for b in d.bands], dtype="float64")
        band = np.searchsorted(mins, out["total"].to_numpy()[rows], side="right") - 1
        is_lowest = np.zeros(rows.sum(), dtype=bool)
        for condition in d.lowest_category:
            match = np.ones(rows.sum(), dtype=bool)
            for qid, allowed in condition.items():
                match &= np.isin(wide_answers[qid].to_numpy(dtype=object)[rows], allowed)
            is_lowest |= match
        level[rows] = np.where(is_lowest, 1.0, band_levels[band])
        lowest[rows] = is_lowest
    out["level"] = level
    out["lowest"] = lowest
    return out.reset_index().sort_values(
        ["customer_id", "submitted_at"], kind="stable", ignore_index=True
    )
