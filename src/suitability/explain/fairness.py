"""Metrics per slice (age band including the elderly group, gender, channel, segment) and the
gaps between slices, for the model dossier's fairness section."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from suitability.models.estimators import median_level
from suitability.models.train import evaluate_predictions, label_codes

#: Groups smaller than this get their metrics shown but stay out of the gaps (too noisy).
MIN_GROUP = 30


def age_bands(ages: pd.Series, elderly_age: int) -> pd.Series:
    """Age bands <30, 30–44, 45–59, 60–(elderly-1), elderly+; missing ages are "unknown"."""
    edges = [-np.inf, 30, 45, 60, elderly_age, np.inf]
    labels = ["<30", "30–44", "45–59", f"60–{elderly_age - 1}", f"{elderly_age}+"]
    values = pd.to_numeric(ages, errors="coerce")
    bands = pd.cut(values, bins=edges, labels=labels, right=False).astype(object)
    return bands.where(values.notna(), "unknown")


@dataclass(frozen=True)
class SliceReport:
    """Per-group metrics for each slice dimension, and the gap (max − min over groups of at
    least `MIN_GROUP` rows) of each metric within a dimension."""

    groups: pd.DataFrame  # dimension, group, n, <metrics>
    gaps: pd.DataFrame  # dimension, metric, gap, lowest_/highest_ group and value


def slice_metrics(
    test: pd.DataFrame,
    predictions: pd.DataFrame,
    label: str,
    task: str,
    classes: Sequence[str],
    elderly_age: int,
    dimensions: Sequence[str] = ("age_years", "gender", "channel_preference", "segment"),
) -> SliceReport:
    """Metrics of `predictions` (the model's `predict_frame` output, aligned with `test`)
    within each group of each slice dimension present in `test`."""
    y = label_codes(test[label], list(classes), label)
    rows = []
    for dimension in dimensions:
        if dimension not in test.columns:
            continue
        if dimension == "age_years":
            groups, name = age_bands(test[dimension], elderly_age), "age_band"
        else:
            groups, name = (
                test[dimension].astype(object).where(test[dimension].notna(), "unknown"),
                dimension,
            )
        for group in sorted(groups.unique(), key=str):
            mask = (groups == group).to_numpy()
            rows.append(
                {
                    "dimension": name,
                    "group": str(group),
                    "n": int(mask.sum()),
                    **_group_metrics(predictions[mask], y[mask], task, classes),
                }
            )
    # (a user's table may have none of the dimensions: no groups, no gaps)
    table = pd.DataFrame(rows, columns=None if rows else ["dimension", "group", "n"])
    return SliceReport(groups=table, gaps=_gaps(table))


def _group_metrics(
    predictions: pd.DataFrame, y: np.ndarray, task: str, classes: Sequence[str]
) -> dict[str, float]:
    if task == "ordinal":
        proba = predictions[[f"p_{c}" for c in classes]].to_numpy(np.float64)
        levels = median_level(proba)
        scores = evaluate_predictions(proba, y, task, list(classes))
        return {
            "accuracy": scores["accuracy"],
            "qwk": scores["qwk"],
            "mean_predicted_level": float(levels.mean() + 1),
            "mean_confirmed_level": float(y.mean() + 1),
            # Positive: the model places this group higher than reviewers did.
            "level_bias": float(levels.mean() - y.mean()),
            "share_predicted_c4_plus": float((levels >= 3).mean()),
        }
    p = predictions.iloc[:, 0].to_numpy(np.float64)
    scores = evaluate_predictions(p, y, task, list(classes))
    return {
        "roc_auc": scores["roc_auc"],
        "observed_rate": float(y.mean()),
        "mean_predicted": float(p.mean()),
        # Positive: the model over-predicts churn for this group.
        "calibration_gap": float(p.mean() - y.mean()),
    }


def _gaps(table: pd.DataFrame) -> pd.DataFrame:
    metrics = [c for c in table.columns if c not in {"dimension", "group", "n"}]
    rows = []
    for dimension, part in table[table["n"] >= MIN_GROUP].groupby("dimension", sort=False):
        for metric in metrics:
            values = part[["group", metric]].dropna()
            if len(values) < 2:
                continue
            low = values.loc[values[metric].idxmin()]
            high = values.loc[values[metric].idxmax()]
            rows.append(
                {
                    "dimension": dimension,
                    "metric": metric,
                    "gap": float(high[metric] - low[metric]),
                    "lowest_group": low["group"],
                    "lowest_value": float(low[metric]),
                    "highest_group": high["group"],
                    "highest_value": float(high[metric]),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "dimension",
            "metric",
            "gap",
            "lowest_group",
            "lowest_value",
            "highest_group",
            "highest_value",
        ],
    )
