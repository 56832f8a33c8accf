"""Score risk questionnaires: total score, C-level from the score bands, lowest-category flag.

`score_questionnaire` scores one submission (what a reviewer or the service does);
`score_submissions` scores a long table of many submissions at once with the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from suitability.features.encoding import encode, microseconds
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
    customer_id then submitted_at. Rows must already satisfy the data contract. Pure numpy over
    small lookup tables, so one customer's handful of rows costs well under a millisecond.
    """
    return pd.DataFrame(score_columns(responses, definitions))


def score_columns(
    responses: pd.DataFrame, definitions: Mapping[str, QuestionnaireDefinition]
) -> dict[str, np.ndarray | pd.api.extensions.ExtensionArray]:
    """The columns of `score_submissions` before they become a frame (the feature kernel
    reads them straight away; a frame would only add its construction to every request)."""
    versions = list(definitions)
    question_ids = list(dict.fromkeys(q for d in definitions.values() for q in d.question_ids))
    option_ids = list(
        dict.fromkeys(o.id for d in definitions.values() for q in d.questions for o in q.options)
    )
    # score[version, question, option]; NaN where the option does not exist.
    score = np.full((len(versions), len(question_ids), len(option_ids)), np.nan)
    for v, d in enumerate(definitions.values()):
        for q in d.questions:
            for o in q.options:
                score[v, question_ids.index(q.id), option_ids.index(o.id)] = o.score

    customer = pa.array(responses["customer_id"], type=pa.string(), from_pandas=True)
    if isinstance(customer, pa.ChunkedArray):
        customer = customer.combine_chunks()
    customer_codes = pc.dictionary_encode(customer)
    cust = customer_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = customer_codes.dictionary.to_numpy(zero_copy_only=False)
    version = encode(responses["questionnaire_version"], versions)
    question = encode(responses["question_id"], question_ids)
    option = encode(responses["answer"], option_ids)
    when = microseconds(responses["submitted_at"])
    if (version < 0).any() or (question < 0).any() or (option < 0).any():
        raise ValueError("questionnaire responses name an unknown version, question or answer")

    # Order rows by customer name, time, version; a new submission starts where any changes.
    name_rank = (
        np.argsort(np.argsort(names, kind="stable"), kind="stable")[cust] if len(cust) else cust
    )
    order = np.lexsort((version, when, name_rank))
    key = np.stack([name_rank[order], when[order], version[order]], axis=1)
    new = np.ones(len(order), dtype=bool)
    new[1:] = (key[1:] != key[:-1]).any(axis=1)
    submission = np.cumsum(new) - 1
    first = order[new]
    n_sub = len(first)

    scores = np.full((n_sub, len(question_ids)), np.nan)
    answers = np.full((n_sub, len(question_ids)), -1, dtype=np.int64)
    scores[submission, question[order]] = score[version[order], question[order], option[order]]
    answers[submission, question[order]] = option[order]
    total = np.nansum(scores, axis=1)
    sub_version = version[first]
    level = np.zeros(n_sub, dtype=np.float64)
    lowest = np.zeros(n_sub, dtype=bool)
    for v, d in enumerate(definitions.values()):
        rows = sub_version == v
        if not rows.any():
            continue
        mins = np.array([b.min for b in d.bands])
        band_levels = np.array([C_LEVELS.index(b.level) + 1 for b in d.bands], dtype=np.float64)
        band = np.searchsorted(mins, total[rows], side="right") - 1
        is_lowest = np.zeros(int(rows.sum()), dtype=bool)
        for condition in d.lowest_category:
            match = np.ones(int(rows.sum()), dtype=bool)
            for qid, allowed in condition.items():
                codes = [option_ids.index(a) for a in allowed]
                match &= np.isin(answers[rows, question_ids.index(qid)], codes)
            is_lowest |= match
        level[rows] = np.where(is_lowest, 1.0, band_levels[band])
        lowest[rows] = is_lowest

    out: dict[str, np.ndarray | pd.api.extensions.ExtensionArray] = {
        "customer_id": pd.array(names[cust[first]] if n_sub else [], dtype="str"),
        "questionnaire_version": pd.array(
            np.array(versions, dtype=object)[sub_version] if n_sub else [], dtype="str"
        ),
        "submitted_at": when[first].view("datetime64[us]"),
    }
    out.update({f"score_{q}": scores[:, i] for i, q in enumerate(question_ids)})
    out.update({"total": total, "level": level, "lowest": lowest})
    return out
