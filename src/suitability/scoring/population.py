"""Score the whole population at one as-of time with both registered models: the stated and
predicted category with its probabilities, the mismatch and its confidence, the churn
probability, each model's two principal reasons in zh and en, and the re-assessment triggers
and care flags of DESIGN §2 (`scoring.flags`). One row per customer registered by then.

Every number is the one `suitability explain` gives for that customer: the same models, the
same explanation and reason code, on the same features (the batch builder's, which tests prove
equal to the per-request path's).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from suitability.data import io
from suitability.explain.assessment import Explainer
from suitability.explain.contributions import LEVEL_SCORE, explain_matrix
from suitability.explain.reasons import LANGS, reason_codes
from suitability.models.rules import RuleTable
from suitability.scoring.flags import (
    CARE_FLAGS,
    TRIGGERS,
    mismatches,
    population_flags,
    stated_ranks,
)
from suitability.specs import C_LEVELS, Specs

#: Principal reasons kept per model (the worklists show two; `explain` shows up to four).
REASONS_KEPT = 2
#: Key of the score file's parquet metadata (models, rule version, as-of, what made it).
METADATA_KEY = "suitability.scores"
#: What the customers table adds to each row (personal data masked on load).
_CUSTOMER_COLUMNS = ("customer_id", "registered_at", "birth_date", "channel_preference")


@dataclass(frozen=True)
class Scorers:
    """What scoring needs, loaded once: both explainers, the rule table and the specs; and how
    the retention list measures what is at stake (`amount_feature`) and who is active."""

    risk: Explainer
    churn: Explainer
    rules: RuleTable
    specs: Specs

    @property
    def active_days(self) -> int:
        labels = self.churn.spec.labels
        if labels is None:
            raise ValueError("the churn model's spec has no `labels.active_days`")
        return labels.active_days

    @property
    def amount_feature(self) -> str:
        retention = self.churn.spec.retention
        return retention.amount_at_stake if retention is not None else "net_holdings"

    def provenance(self, as_of: pd.Timestamp) -> dict[str, Any]:
        """What made a score file: the models by name, version and run, the rules, the time."""
        return {
            "as_of": pd.Timestamp(as_of).isoformat(),
            "models": {
                "risk-level": self.risk.ref.to_json(),
                "churn": self.churn.ref.to_json(),
            },
            "rule_version": self.rules.version,
            "suitability": importlib.metadata.version("suitability"),
        }


@dataclass(frozen=True)
class ScoreSummary:
    out: Path
    rows: int
    reassess: int
    provenance: dict[str, Any]


class _Row(Mapping[str, Any]):
    """One row of a batch's columns, read by name without building a dict per row."""

    __slots__ = ("_columns", "_i")

    def __init__(self, columns: Mapping[str, np.ndarray], i: int) -> None:
        self._columns = columns
        self._i = i

    def __getitem__(self, name: str) -> Any:
        return self._columns[name][self._i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def _reasons(
    values: np.ndarray,
    names: tuple[str, ...],
    columns: Mapping[str, np.ndarray],
    specs: Specs,
    wording: Mapping[str, Any],
    prefix: str,
) -> dict[str, list[Any]]:
    """The first `REASONS_KEPT` reasons of each row: feature code and zh and en sentence."""
    out: dict[str, list[Any]] = {
        f"{prefix}_{k}{suffix}": []
        for k in range(1, REASONS_KEPT + 1)
        for suffix in ("", *(f"_{lang}" for lang in LANGS))
    }
    for i in range(len(values)):
        found = reason_codes(values[i], names, _Row(columns, i), specs, wording, limit=REASONS_KEPT)
        for k in range(1, REASONS_KEPT + 1):
            reason = found[k - 1] if k <= len(found) else None
            out[f"{prefix}_{k}"].append(reason.feature if reason else None)
            for lang in LANGS:
                out[f"{prefix}_{k}_{lang}"].append(reason.text[lang] if reason else None)
    return out


def score_frame(
    features: pd.DataFrame,
    scorers: Scorers,
    customers: pd.DataFrame | None = None,
    earlier: pd.DataFrame | None = None,
) -> pa.Table:
    """The scores of a batch of feature rows (one as-of time each, in `as_of`), with the
    customers' registration and birth dates and preferred channel from `customers` (indexed by
    customer id) when given. `earlier` (from `earlier_since`): a trigger that held then and
    still holds keeps the earlier of the two dates since which it holds. An arrow table whose
    schema does not depend on the batch."""
    risk, churn, specs, rules = scorers.risk, scorers.churn, scorers.specs, scorers.rules
    as_of = pd.to_datetime(features["as_of"])
    if as_of.nunique() > 1:
        raise ValueError("a score batch holds one as-of time")
    when = as_of.iloc[0]
    x_risk = risk.model.layout.matrix(features)
    same = churn.model.layout == risk.model.layout
    x_churn = x_risk if same else churn.model.layout.matrix(features)
    columns = {c: features[c].to_numpy() for c in features.columns}

    explained = explain_matrix(risk.model, x_risk)
    proba = risk.model.proba_of_matrix(x_risk)
    levels, expected = risk.model.levels(proba)
    score_values, _ = explained.of(LEVEL_SCORE)
    classes = list(risk.model.classes)
    predicted = np.array([classes.index(level) for level in levels], dtype=np.int64)

    churn_explained = explain_matrix(churn.model, x_churn)
    p_churn = churn.model.proba_of_matrix(x_churn)
    churn_values, _ = churn_explained.of(churn.model.output)

    info = None
    if customers is not None:
        info = customers.reindex(features["customer_id"].astype(str).to_numpy())
    stated = stated_ranks(features["q_level"])
    mismatch = mismatches(stated, predicted, proba, rules)
    flags = population_flags(
        features,
        mismatch,
        rules,
        when,
        registered_at=None if info is None else info["registered_at"].reset_index(drop=True),
        birth_date=None if info is None else info["birth_date"].reset_index(drop=True),
    )
    risk_wording = {"up": risk.spec.reasons.up, "down": risk.spec.reasons.down}
    churn_wording = {"up": churn.spec.reasons.up, "down": churn.spec.reasons.down}
    names_risk = tuple(explained.feature_names)
    names_churn = tuple(churn_explained.feature_names)

    out: dict[str, Any] = {
        "customer_id": features["customer_id"].astype(str).to_numpy(),
        "as_of": as_of.to_numpy(dtype="datetime64[us]"),
        "stated_level": [C_LEVELS[s] if s >= 0 else None for s in stated],
        "predicted_level": np.asarray(levels, dtype=object),
        **{f"p_{c}": proba[:, k] for k, c in enumerate(classes)},
        "expected_level": expected,
        "mismatch": mismatch.direction,
        "mismatch_confidence": mismatch.confidence,
        "mismatch_flagged": mismatch.flagged,
        "levels_apart": mismatch.levels_apart,
        "p_churn": p_churn,
        **_reasons(score_values, names_risk, columns, specs, risk_wording, "risk_reason"),
        **_reasons(churn_values, names_churn, columns, specs, churn_wording, "churn_reason"),
    }
    for name in (*TRIGGERS, *CARE_FLAGS, "reassess"):
        out[name] = flags[name].to_numpy(dtype=bool)
    out["triggers"] = flags["triggers"].to_numpy(dtype=object)
    for name in TRIGGERS:
        out[f"{name}_since"] = flags[f"{name}_since"].astype("datetime64[us]")
    if earlier is not None:
        _carry_since(out, earlier)
    age = features["age_years"] if "age_years" in features else pd.Series(np.nan)
    out["age_years"] = pd.to_numeric(age, errors="coerce").to_numpy(dtype=np.float64)
    out["channel_preference"] = (
        info["channel_preference"].astype(object).to_numpy()
        if info is not None
        else features.get("channel_preference", pd.Series([None] * len(features))).astype(object)
    )
    since_invest = _numbers(features, "days_since_invest")
    out["active"] = np.nan_to_num(since_invest, nan=np.inf) <= scorers.active_days
    holdings = np.clip(np.nan_to_num(_numbers(features, scorers.amount_feature), nan=0.0), 0, None)
    out["amount_at_stake"] = holdings
    out["expected_loss"] = np.where(out["active"], p_churn * holdings, 0.0)
    out["risk_model"] = f"{risk.ref.name} v{risk.ref.version}"
    out["churn_model"] = f"{churn.ref.name} v{churn.ref.version}"
    out["rule_version"] = rules.version
    n = len(features)
    schema = score_schema(tuple(classes))
    arrays = {k: (np.full(n, v, dtype=object) if isinstance(v, str) else v) for k, v in out.items()}
    return pa.Table.from_pydict(
        {k: pa.array(v, type=schema.field(k).type) for k, v in arrays.items()},
        schema=schema,
    )


@dataclass(frozen=True)
class EarlierScores:
    """From an earlier score file: the dates since which each customer's triggers held, indexed
    by customer id (NaT where a trigger did not hold; only customers with a trigger)."""

    since: pd.DataFrame
    as_of: pd.Timestamp | None


def earlier_since(path: Path | str, as_of: pd.Timestamp) -> EarlierScores:
    """The trigger dates of an earlier score file (e.g. yesterday's), which must be as of a
    time before `as_of`."""
    since = [f"{name}_since" for name in TRIGGERS]
    frame = read_scores(path, columns=["customer_id", "as_of", *since])
    times = pd.to_datetime(frame["as_of"]).unique()
    if len(times) > 1:
        raise ValueError(f"{path}: an earlier score file holds one as-of time, not {len(times)}")
    if len(times) and pd.Timestamp(times[0]) >= as_of:
        raise ValueError(
            f"{path} is as of {pd.Timestamp(times[0]).isoformat(sep=' ')}, not before "
            f"{pd.Timestamp(as_of).isoformat(sep=' ')}: give the scores of an earlier run"
        )
    held = frame[since].notna().any(axis=1).to_numpy()
    return EarlierScores(
        since=frame.loc[held, ["customer_id", *since]].set_index("customer_id"),
        as_of=pd.Timestamp(times[0]) if len(times) else None,
    )


def _carry_since(out: dict[str, Any], earlier: pd.DataFrame) -> None:
    """Where a trigger holds now and held in `earlier`, its date is the earlier of the two."""
    before = earlier.reindex(out["customer_id"])
    for name in TRIGGERS:
        column = f"{name}_since"
        now = pd.Series(out[column]).reset_index(drop=True)
        then = before[column].reset_index(drop=True).astype("datetime64[us]")
        carried = now.notna() & then.notna() & (then < now)
        out[column] = now.where(~carried, then).astype("datetime64[us]")


def _numbers(features: pd.DataFrame, name: str) -> np.ndarray:
    if name not in features.columns:
        raise ValueError(f"the feature table lacks {name!r}: build it with `suitability features`")
    return pd.to_numeric(features[name], errors="coerce").to_numpy(dtype=np.float64)


@functools.lru_cache(maxsize=4)
def score_schema(classes: tuple[str, ...] = C_LEVELS) -> pa.Schema:
    """The columns of a score file, in order."""
    text, flag, number, when = pa.string(), pa.bool_(), pa.float64(), pa.timestamp("us")
    fields = [
        ("customer_id", text),
        ("as_of", when),
        ("stated_level", text),
        ("predicted_level", text),
        *[(f"p_{c}", number) for c in classes],
        ("expected_level", number),
        ("mismatch", text),
        ("mismatch_confidence", number),
        ("mismatch_flagged", flag),
        ("levels_apart", pa.int64()),
        ("p_churn", number),
        *[
            (f"{model}_reason_{k}{suffix}", text)
            for model in ("risk", "churn")
            for k in range(1, REASONS_KEPT + 1)
            for suffix in ("", *(f"_{lang}" for lang in LANGS))
        ],
        *[(name, flag) for name in (*TRIGGERS, *CARE_FLAGS, "reassess")],
        ("triggers", text),
        *[(f"{name}_since", when) for name in TRIGGERS],
        ("age_years", number),
        ("channel_preference", text),
        ("active", flag),
        ("amount_at_stake", number),
        ("expected_loss", number),
        ("risk_model", text),
        ("churn_model", text),
        ("rule_version", text),
    ]
    return pa.schema(fields)


def score_population(
    data_dir: io.DataDir,
    as_of: pd.Timestamp,
    scorers: Scorers,
    out: Path,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    cluster: object | None = None,
    earlier: EarlierScores | None = None,
) -> ScoreSummary:
    """Score every customer registered at `as_of` in `data_dir` into `out` (parquet, or CSV by
    its suffix; written whole or not at all). Features are built first (on `cluster`, a
    `distributed.Client`, when given, as are the scores), then scored in batches of bounded
    memory. The parquet file's metadata (`METADATA_KEY`) names the models, rules and time;
    every row names the models and rules too (a CSV file has no other place for them).
    `earlier`: an earlier run's trigger dates, which carry over (see `earlier_since`)."""
    from suitability.data.table_map import map_table
    from suitability.features.builder import build_features

    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"{out}: the scores are written as .parquet or .csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    customers = io.load_table(data_dir, "customers", scorers.specs)
    customers = customers[list(_CUSTOMER_COLUMNS)].set_index("customer_id")
    provenance = scorers.provenance(as_of)
    if earlier is not None and earlier.as_of is not None:
        provenance["since_carried_from"] = earlier.as_of.isoformat()
    with tempfile.TemporaryDirectory(prefix=".scores-", dir=out.parent) as tmp:
        features = Path(tmp) / "features.parquet"
        build_features(
            data_dir,
            [pd.Timestamp(as_of)],
            features,
            scorers.specs,
            progress=_stage(progress, "features"),
            cluster=cluster,
        )
        rows = map_table(
            functools.partial(
                score_frame,
                scorers=scorers,
                customers=customers,
                earlier=None if earlier is None else earlier.since,
            ),
            features,
            out,
            progress=_stage(progress, "scoring"),
            cluster=cluster,
            metadata={METADATA_KEY: json.dumps(provenance)},
        )
    reassess = _count_reassess(out)
    return ScoreSummary(out=out, rows=rows, reassess=reassess, provenance=provenance)


def _stage(
    progress: Callable[[str, int, int], None] | None, name: str
) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _count_reassess(path: Path) -> int:
    frame = read_scores(path, columns=["reassess"])
    return int(frame["reassess"].sum())


def read_scores(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    """A score file (parquet or CSV) as written by `score_population`, with its types."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such score file")
    if path.suffix.lower() == ".csv":
        schema = score_schema()
        types = {f.name: f.type for f in schema}
        options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
        table = pacsv.read_csv(path, convert_options=options)
        frame = table.to_pandas()
        return frame if columns is None else frame[columns]
    return pq.read_table(path, columns=columns).to_pandas()


def score_provenance(path: Path | str) -> dict[str, Any] | None:
    """The models, rules and as-of time a parquet score file records (None for CSV)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() != ".parquet":
        return None
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(METADATA_KEY.encode())
    return json.loads(raw) if raw else None
