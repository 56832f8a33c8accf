"""Global explanations of a model version: mean |SHAP| by feature and by source, and the planted-
driver check on synthetic data (`charts` draws them)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from suitability.explain.contributions import LEVEL_SCORE, Contributions, explain_frame
from suitability.explain.reasons import SOURCES
from suitability.models.estimators import BinaryLGBM, OrdinalLGBM
from suitability.models.linear import LinearModel
from suitability.specs import Specs

#: Rows sampled for global explanations: mean |SHAP| is stable to ~1 % well before this.
GLOBAL_ROWS = 2_000
#: A planted driver passes when one of its features ranks this high or better.
PLANTED_TOP_K = 20


@dataclass(frozen=True)
class GlobalExplanation:
    """What drives a model overall, on a sample of rows."""

    output: str  # the output explained: `level_score` (ordinal) or the binary output
    rows: int
    by_feature: pd.DataFrame  # feature, source, mean_abs_shap, share, rank (1 = most important)
    by_source: pd.DataFrame  # source, mean_abs_shap, share
    contributions: Contributions  # the sample's contributions, for plots
    frame: pd.DataFrame  # the sample's feature values

    def to_json(self) -> dict[str, object]:
        return {
            "output": self.output,
            "rows": self.rows,
            "by_feature": self.by_feature.to_dict(orient="records"),
            "by_source": self.by_source.to_dict(orient="records"),
        }


def primary_output(model: OrdinalLGBM | BinaryLGBM | LinearModel) -> str:
    """The single output a global explanation ranks features by."""
    return LEVEL_SCORE if model.task == "ordinal" else model.output


def global_explanation(
    model: OrdinalLGBM | BinaryLGBM | LinearModel,
    frame: pd.DataFrame,
    specs: Specs | None,
    *,
    max_rows: int = GLOBAL_ROWS,
    seed: int = 7,
) -> GlobalExplanation:
    """Mean |SHAP| of the primary output over (a seeded sample of at most `max_rows` of)
    `frame`, by feature and summed by source (`specs` None: features outside the catalogue, as
    a user's flat table has, are all of source "other")."""
    if len(frame) == 0:
        raise ValueError("no rows to explain")
    sample = frame.sample(n=max_rows, random_state=seed) if len(frame) > max_rows else frame
    contributions = explain_frame(model, sample)
    output = primary_output(model)
    values, _ = contributions.of(output)
    mean_abs = np.abs(values).mean(axis=0)
    total = float(mean_abs.sum()) or 1.0
    names = list(contributions.feature_names)
    info = specs.features_by_name if specs is not None else {}
    by_feature = pd.DataFrame(
        {
            "feature": names,
            "source": [info[n].source if n in info else "other" for n in names],
            "mean_abs_shap": mean_abs,
            "share": mean_abs / total,
        }
    ).sort_values("mean_abs_shap", ascending=False, kind="stable", ignore_index=True)
    by_feature["rank"] = np.arange(1, len(by_feature) + 1)
    grouped = by_feature.groupby("source", sort=False)["mean_abs_shap"].sum()
    order = [s for s in (*SOURCES, "other") if s in grouped.index]
    by_source = pd.DataFrame(
        {
            "source": order,
            "mean_abs_shap": [float(grouped[s]) for s in order],
            "share": [float(grouped[s]) / total for s in order],
        }
    )
    return GlobalExplanation(
        output=output,
        rows=len(sample),
        by_feature=by_feature,
        by_source=by_source,
        contributions=contributions,
        frame=sample,
    )


def planted_check(
    by_feature: pd.DataFrame,
    drivers: Mapping[str, Sequence[str]],
    top_k: int = PLANTED_TOP_K,
) -> pd.DataFrame:
    """For each planted driver (name -> feature-name patterns), its best-ranked feature and
    whether that rank is within `top_k`. A driver none of whose features the model uses fails."""
    rows = []
    for driver, patterns in drivers.items():
        matches = [any(fnmatch.fnmatch(n, p) for p in patterns) for n in by_feature["feature"]]
        hits = by_feature[np.asarray(matches, dtype=bool) & (by_feature["mean_abs_shap"] > 0)]
        if hits.empty:
            rows.append({"driver": driver, "best_feature": None, "rank": None, "passed": False})
            continue
        best = hits.iloc[0]
        rows.append(
            {
                "driver": driver,
                "best_feature": str(best["feature"]),
                "rank": int(best["rank"]),
                "passed": bool(best["rank"] <= top_k),
            }
        )
    return pd.DataFrame(rows, columns=["driver", "best_feature", "rank", "passed"])
