"""The fitted models and their baselines, all predicting from a feature DataFrame.

Every estimator here takes the same input (a DataFrame holding at least its feature columns;
categorical columns as pandas categoricals or plain strings) and returns probabilities, so the
trainer, the registry round trip and serving treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

Progress = Callable[[int, int], None]

#: Up to this many rows LightGBM predicts on one thread (see `predict_booster`).
SINGLE_THREAD_ROWS = 64


def predict_booster(booster: lgb.Booster, x: np.ndarray, **options: object) -> np.ndarray:
    """`booster.predict`, on one thread for a few rows (a request's): waking OpenMP's thread
    team costs far more than predicting one row (8 ms against 0.03 ms on a busy two-core
    machine). Each row is computed by one thread whatever their number, so the numbers are the
    same; larger batches keep every thread."""
    if len(x) <= SINGLE_THREAD_ROWS:
        options["num_threads"] = 1
    return booster.predict(x, **options)


#: Frames above this many rows become matrices a column at a time (bounded extra memory).
_BLOCK_ROWS = 100_000


@dataclass(frozen=True)
class FeatureLayout:
    """Which columns a model reads and how: numeric ones as float, categorical ones as codes
    over a fixed vocabulary (unknown or missing -> NaN, which LightGBM treats as missing)."""

    names: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def check(self, frame: pd.DataFrame) -> None:
        present = set(frame.columns.tolist())  # one pass, not a lookup in the index per name
        missing = [n for n in self.names if n not in present]
        if missing:
            shown = ", ".join(missing[:10]) + (
                f" … ({len(missing)} in all)" if len(missing) > 10 else ""
            )
            raise ValueError(f"feature table lacks columns the model needs: {shown}")

    def matrix(self, frame: pd.DataFrame, dtype: type = np.float64) -> np.ndarray:
        """A matrix in `names` order: float64 (what predictions read), or float32 for
        training LightGBM (half the memory; LightGBM bins the values either way)."""
        self.check(frame)
        out = np.empty((len(frame), len(self.names)), dtype=dtype)
        # This runs for every request, on one row, where each pandas call costs more than the
        # data: dtypes are looked up in a plain dict, each distinct dtype is classified once,
        # numeric columns convert as one block (one copy), and categoricals are coded through
        # their few categories rather than row by row.
        labels = frame.columns.tolist()
        dtypes = frame.dtypes.tolist()
        # Classified by the dtype object: a categorical dtype's hash walks its categories.
        kinds: dict[int, bool] = {}
        for dtype in dtypes:
            if id(dtype) not in kinds:
                kinds[id(dtype)] = _plain_number(dtype)
        plain = {label: kinds[id(dtype)] for label, dtype in zip(labels, dtypes, strict=True)}
        # The numeric block is taken by position when labels are unique (`take` is the cheapest
        # way to a sub-frame); with repeated labels, by label as pandas resolves it.
        position = {label: i for i, label in enumerate(labels)}
        by_position = len(position) == len(labels)
        block = [
            j for j, name in enumerate(self.names) if name not in self.categories and plain[name]
        ]
        if block and len(frame) > _BLOCK_ROWS:
            # Large frames column by column: converting the block at once makes a second
            # full-size copy before it lands in `out`.
            for j in block:
                column = (
                    frame.iloc[:, position[self.names[j]]] if by_position else frame[self.names[j]]
                )
                out[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        elif block:
            names = [self.names[j] for j in block]
            values = (
                frame.take([position[n] for n in names], axis=1) if by_position else frame[names]
            )
            out[:, block] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        done = set(block)
        for j, name in enumerate(self.names):
            if j in done:
                continue
            column = frame[name]
            if name in self.categories:
                out[:, j] = self._codes(name, column)
            else:
                out[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        return out

    def _codes(self, name: str, column: pd.Series) -> np.ndarray:
        """Positions of a column's values in the vocabulary of `name` (NaN: missing or
        unknown), compared as text."""
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = self._category_lookup(name, column.dtype)[column.array.codes]
        else:
            text = column.astype("string").to_numpy(dtype=object, na_value=None)
            codes = self._vocabulary(name).get_indexer(text)
        return np.where(codes < 0, np.nan, codes)

    def _category_lookup(self, name: str, dtype: pd.CategoricalDtype) -> np.ndarray:
        """Vocabulary position of each category of `dtype` (the same text conversion as for
        plain columns), then -1 for code -1 (missing). Kept per dtype: a feature frame's
        categories are the same spec vocabulary on every request."""
        cache = self.__dict__.setdefault("_category_lookups", {})  # frozen: not a field
        # Keyed by the dtype object (frames of one source share it) and checked to be that
        # very object: hashing a categorical dtype hashes all its categories.
        key = (name, id(dtype))
        hit = cache.get(key)
        if hit is not None and hit[0] is dtype:
            return hit[1]
        if len(cache) >= 64:  # frames with ever-new categories must not grow it forever
            cache.clear()
        text = pd.Series(dtype.categories).astype("string")
        lookup = self._vocabulary(name).get_indexer(text.to_numpy(dtype=object, na_value=None))
        lookup = np.append(lookup, -1)
        cache[key] = (dtype, lookup)  # the dtype is kept, so its id is not reused meanwhile
        return lookup

    def _vocabulary(self, name: str) -> pd.Index:
        """The categories of `name` as an index (its hash table built once per layout)."""
        cache = self.__dict__.setdefault("_vocabularies", {})  # frozen: not a field
        if name not in cache:
            cache[name] = pd.Index(list(self.categories[name]), dtype=object)
        return cache[name]

    def frame_of_matrix(self, x: np.ndarray) -> pd.DataFrame:
        """The frame a `matrix` came from, as `frame` gives it: categorical codes back to their
        values (NaN: missing or unknown, None), numbers as float."""
        out = {}
        for j, name in enumerate(self.names):
            if name in self.categories:
                vocabulary = np.asarray(self.categories[name], dtype=object)
                codes = x[:, j]
                known = ~np.isnan(codes)
                values = np.full(len(x), None, dtype=object)
                values[known] = vocabulary[codes[known].astype(np.int64)]
                out[name] = pd.Series(values, dtype=object)  # (not inferred as text: None stays)
            else:
                out[name] = x[:, j].astype(np.float64)
        return pd.DataFrame(out)

    @property
    def categorical_indices(self) -> list[int]:
        return [j for j, n in enumerate(self.names) if n in self.categories]

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature columns with categoricals as strings (missing as None) and numbers as
        float: the shape scikit-learn pipelines and logged examples want."""
        self.check(frame)
        out = {}
        for name in self.names:
            column = frame[name]
            if name in self.categories:
                text = column.astype(object)
                out[name] = text.where(column.notna(), None).astype(object)
            else:
                out[name] = pd.to_numeric(column, errors="coerce").astype("float64")
        return pd.DataFrame(out, index=frame.index)


def _plain_number(dtype: object) -> bool:
    """Numbers and booleans (numpy or nullable) that convert to float without parsing."""
    return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def layout_for(frame: pd.DataFrame, names: Sequence[str]) -> FeatureLayout:
    """The layout of `names` in `frame`: categorical dtype columns keep their categories,
    text columns get theirs from the data (sorted)."""
    categories: dict[str, tuple[str, ...]] = {}
    for name in names:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            categories[name] = tuple(str(c) for c in column.cat.categories)
        elif not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            categories[name] = tuple(sorted(column.dropna().astype(str).unique()))
    return FeatureLayout(tuple(names), categories)


def _lgb_params(params: Mapping[str, object], seed: int) -> dict[str, object]:
    return {
        "objective": "binary",
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": 0,
        **params,
    }


def _booster_params(
    params: Mapping[str, object], monotone: Mapping[str, int], layout: FeatureLayout, seed: int
) -> dict[str, object]:
    """Everything LightGBM is given for one binary booster."""
    full = _lgb_params(params, seed)
    if monotone:
        full["monotone_constraints"] = [int(monotone.get(n, 0)) for n in layout.names]
        # "advanced" broke the constraints on our data (the direction tests caught boosters
        # whose output fell as a constrained feature rose); "intermediate" holds them.
        full.setdefault("monotone_constraints_method", "intermediate")
    return {**full, "metric": "binary_logloss"}


def _datasets(
    x_train: pd.DataFrame,
    x_valid: pd.DataFrame,
    layout: FeatureLayout,
    params: Mapping[str, object],
) -> tuple[lgb.Dataset, lgb.Dataset]:
    """The training and validation sets as float32 matrices, binned once with the boosters'
    parameters (as `lgb.train` would bin them) whatever the labels: the ordinal model's cuts
    share them and only change the labels. The matrices are freed once binned."""
    described = {
        "feature_name": list(layout.names),
        "categorical_feature": layout.categorical_indices,
        "free_raw_data": True,
    }
    train = lgb.Dataset(
        layout.matrix(x_train, np.float32),
        label=np.zeros(len(x_train), dtype=np.int8),
        params=dict(params),
        **described,
    ).construct()
    # The same description as the training set, so `lgb.train`'s re-check of the reference
    # finds nothing to change.
    valid = lgb.Dataset(
        layout.matrix(x_valid, np.float32),
        label=np.zeros(len(x_valid), dtype=np.int8),
        reference=train,
        params=dict(params),
        **described,
    ).construct()
    return train, valid


def _fit_booster(
    train: lgb.Dataset,
    y_train: np.ndarray,
    valid: lgb.Dataset,
    y_valid: np.ndarray,
    params: Mapping[str, object],
    max_rounds: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    """One binary LightGBM on binned sets (`_datasets`), early-stopped on the validation log
    loss."""
    train.set_label(y_train)
    valid.set_label(y_valid)
    return lgb.train(
        dict(params),
        train,
        num_boost_round=max_rounds,
        valid_sets=[valid],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )


def _booster_fitter(
    x_train: pd.DataFrame,
    x_valid: pd.DataFrame,
    layout: FeatureLayout,
    params: Mapping[str, object],
    max_rounds: int,
    early_stopping_rounds: int,
    cluster: object | None = None,
) -> Callable[[np.ndarray, np.ndarray, Mapping[str, object]], lgb.Booster]:
    """`fit(y_train, y_valid, params)` -> one early-stopped binary booster on these rows, for
    any number of label sets (the ordinal model's cuts): here on sets binned once with `params`
    (`_datasets`), or on a `cluster` on row blocks placed on its workers once
    (`lightgbm.dask`)."""
    if cluster is not None:
        from suitability.models.distributed import ClusterRows, fit_booster_on_cluster

        rows = ClusterRows(cluster, layout.matrix(x_train, np.float32))
        x_valid32 = layout.matrix(x_valid, np.float32)

        def on_cluster(y_t: np.ndarray, y_v: np.ndarray, p: Mapping[str, object]) -> lgb.Booster:
            return fit_booster_on_cluster(
                rows,
                y_t,
                x_valid32,
                y_v,
                p,
                max_rounds,
                early_stopping_rounds,
                layout.names,
                layout.categorical_indices,
            )

        return on_cluster
    train, valid = _datasets(x_train, x_valid, layout, params)

    def here(y_t: np.ndarray, y_v: np.ndarray, p: Mapping[str, object]) -> lgb.Booster:
        return _fit_booster(train, y_t, valid, y_v, p, max_rounds, early_stopping_rounds)

    return here


def _final_fitter(
    frames: Sequence[pd.DataFrame],
    layout: FeatureLayout,
    params: Mapping[str, object],
    cluster: object | None = None,
) -> Callable[[np.ndarray, Mapping[str, object], int], lgb.Booster]:
    """`fit(y, params, rounds)` -> one binary booster of exactly `rounds` trees on the rows of
    `frames` together (no early stopping: the rounds were chosen on the validation split), for
    any number of label sets; binned once here, or spread once over a `cluster`'s workers."""
    x = np.concatenate([layout.matrix(frame, np.float32) for frame in frames])
    if cluster is not None:
        from suitability.models.distributed import ClusterRows, fit_booster_on_cluster

        rows = ClusterRows(cluster, x)
        del x

        def on_cluster(y: np.ndarray, p: Mapping[str, object], rounds: int) -> lgb.Booster:
            return fit_booster_on_cluster(
                rows, y, None, None, p, rounds, 0, layout.names, layout.categorical_indices
            )

        return on_cluster
    train = lgb.Dataset(
        x,
        label=np.zeros(len(x), dtype=np.int8),
        params=dict(params),
        feature_name=list(layout.names),
        categorical_feature=layout.categorical_indices,
        free_raw_data=True,
    ).construct()
    del x

    def here(y: np.ndarray, p: Mapping[str, object], rounds: int) -> lgb.Booster:
        train.set_label(y)
        booster = lgb.train(dict(p), train, num_boost_round=rounds)
        booster.best_iteration = rounds  # (what predictions and the portable form read)
        return booster

    return here


def _combined(ys: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(y) for y in ys])


class OrdinalLGBM:
    """Ordered categories C1 < … < CK as K-1 cumulative binary LightGBMs, P(level > k), each
    with the same monotone constraints, so a feature constrained upwards can only shift the
    whole distribution upwards. The predicted level is the distribution's median, which (unlike
    the most probable level) keeps that guarantee.

    `calibration="cumulative_logit"`: a second, small model of the cuts on the validation
    split, P(level > k) = σ(a_k · score_k + w · scores + θ_k) with a, w ≥ 0 (fitted for minimum
    log loss, starting from a = 1, w = 0, θ = 0: the uncalibrated model, so it is never worse
    on validation). It corrects what the cuts, trained apart and on earlier rows, get wrong
    together (their levels' frequencies in the period the model scores, their confidence);
    a, w ≥ 0 keep the ordering: a feature that raises the cut scores raises the calibrated
    distribution. Where that distribution's median would differ from the model's own, its
    cumulative curve is clamped at one half around the model's median (`with_median_of`, which
    is monotone too): the predicted levels, the QWK and every decision stay exactly those of the
    uncalibrated model; only the probabilities change.
    """

    task: Literal["ordinal"] = "ordinal"

    def __init__(
        self,
        layout: FeatureLayout,
        classes: Sequence[str],
        params: Mapping[str, object],
        monotone: Mapping[str, int],
        max_rounds: int,
        early_stopping_rounds: int,
        seed: int = 7,
        calibration: Literal["none", "cumulative_logit"] = "none",
    ) -> None:
        if calibration not in ("none", "cumulative_logit"):
            raise ValueError(
                f"calibration must be 'none' or 'cumulative_logit', not {calibration!r}"
            )
        self.layout = layout
        self.classes = tuple(classes)
        self.params = dict(params)
        self.monotone = dict(monotone)
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.calibration = calibration
        self.boosters: list[lgb.Booster] = []
        # The calibration's own-score slopes a, shared weights w and thresholds θ (per cut).
        self.calibrator: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def feature_names(self) -> list[str]:
        return list(self.layout.names)

    @property
    def best_iterations(self) -> list[int]:
        return [b.best_iteration for b in self.boosters]

    def fit(
        self,
        x_train: pd.DataFrame,
        y_train: np.ndarray,
        x_valid: pd.DataFrame,
        y_valid: np.ndarray,
        progress: Progress | None = None,
        cluster: object | None = None,
    ) -> OrdinalLGBM:
        """Fit one booster per cut; y are level codes 0..K-1. The cuts share one binned
        training set (the float32 matrices are freed once binned); on a `cluster`, one set of
        row blocks on the workers (`lightgbm.dask`)."""
        cuts = len(self.classes) - 1
        first = _booster_params(self.params, self.monotone, self.layout, self.seed)
        fit = _booster_fitter(
            x_train,
            x_valid,
            self.layout,
            first,
            self.max_rounds,
            self.early_stopping_rounds,
            cluster,
        )
        self.boosters = []
        for k in range(cuts):
            params = _booster_params(self.params, self.monotone, self.layout, self.seed + k)
            self.boosters.append(
                fit((y_train > k).astype(np.int8), (y_valid > k).astype(np.int8), params)
            )
            if progress:
                progress(k + 1, cuts)
        self.calibrator = None
        if self.calibration == "cumulative_logit":
            scores = self._scores(self.layout.matrix(x_valid))
            self.calibrator = fit_cumulative_logit(scores, np.asarray(y_valid))
        return self

    def refit(
        self,
        frames: Sequence[pd.DataFrame],
        ys: Sequence[np.ndarray],
        progress: Progress | None = None,
        cluster: object | None = None,
    ) -> OrdinalLGBM:
        """Finalise: train each cut again on all of `frames` (training and validation rows)
        with the rounds its early stopping chose. The calibrator, fitted on the validation
        scores of the early-stopped cuts (rows they had not seen), is kept."""
        rounds = [max(1, i) for i in self.best_iterations]
        first = _booster_params(self.params, self.monotone, self.layout, self.seed)
        fit = _final_fitter(frames, self.layout, first, cluster)
        y = _combined(ys)
        boosters = []
        for k, n in enumerate(rounds):
            params = _booster_params(self.params, self.monotone, self.layout, self.seed + k)
            boosters.append(fit((y > k).astype(np.int8), params, n))
            if progress:
                progress(k + 1, len(rounds))
        self.boosters = boosters
        return self

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """Each cut's raw score (log-odds of P(level > k)), one column per cut."""
        return np.column_stack(
            [
                predict_booster(b, x, raw_score=True, num_iteration=b.best_iteration)
                for b in self.boosters
            ]
        )

    def predict_proba(self, frame: pd.DataFrame, *, calibrated: bool = True) -> np.ndarray:
        return self.proba_of_matrix(self.layout.matrix(frame), calibrated=calibrated)

    def proba_of_matrix(self, x: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """`predict_proba` of a matrix from `layout.matrix` (built once, used twice when a
        prediction is also explained). `calibrated=False`: the boosters' own distribution."""
        calibrator = getattr(self, "calibrator", None)  # (models pickled before it)
        if calibrator is None or not calibrated:
            above = np.column_stack(
                [predict_booster(b, x, num_iteration=b.best_iteration) for b in self.boosters]
            )
            return cumulative_to_proba(above)
        scores = self._scores(x)
        own = cumulative_to_proba(expit(scores))
        return with_median_of(
            cumulative_to_proba(expit(calibrated_scores(scores, *calibrator))), own
        )

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return ordinal_frame(self.predict_proba(frame), self.classes, frame.index)

    def levels(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ordinal_levels(proba, self.classes)


def ordinal_levels(proba: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The predicted level (the median) and the expected level (1..K) of each row. Summed row
    by row, not by a matrix product: BLAS picks its kernel by the number of rows, so a product
    could give a row other bits in a batch than alone."""
    level = np.asarray(classes, dtype=object)[median_level(proba)]
    return level, (proba * np.arange(1, len(classes) + 1)).sum(axis=1)


def ordinal_frame(proba: np.ndarray, classes: Sequence[str], index: pd.Index) -> pd.DataFrame:
    """An ordinal model's answer: `p_<class>` per level, `level` and `expected_level`."""
    out = pd.DataFrame(proba, columns=[f"p_{c}" for c in classes], index=index)
    out["level"], out["expected_level"] = ordinal_levels(proba, classes)
    return out


def cumulative_to_proba(above: np.ndarray) -> np.ndarray:
    """Level probabilities from P(level > k), k = 0..K-2; the cumulative curve is made
    non-increasing first (a running minimum), so the probabilities are never negative."""
    above = np.minimum.accumulate(np.clip(above, 0.0, 1.0), axis=1)
    n = len(above)
    upper = np.column_stack([np.ones(n), above])
    lower = np.column_stack([above, np.zeros(n)])
    return upper - lower


def calibrated_scores(
    scores: np.ndarray, slopes: np.ndarray, weights: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """a_k · score_k + w · scores + θ_k for each cut k (one column per cut). w · scores is
    summed column by column, not by a matrix product: BLAS picks its kernel by the number of
    rows, so a row could get other bits in a batch than alone."""
    shared = np.zeros(len(scores))
    for k, weight in enumerate(weights):
        shared += scores[:, k] * weight
    return scores * slopes[None, :] + shared[:, None] + thresholds[None, :]


def fit_cumulative_logit(
    scores: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slopes a ≥ 0, weights w ≥ 0 and thresholds θ of P(level > k) = σ(a_k · score_k +
    w · scores + θ_k) with the least log loss on (`scores`: one column per cut, level codes
    `y`), searched from the identity (a = 1, w = 0, θ = 0), which is kept unless beaten."""
    cuts = scores.shape[1]
    rows = np.arange(len(y))

    def unpack(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return v[:cuts], v[cuts : 2 * cuts], v[2 * cuts :]

    def log_loss(v: np.ndarray) -> float:
        proba = cumulative_to_proba(expit(calibrated_scores(scores, *unpack(v))))
        return float(-np.mean(np.log(np.clip(proba[rows, y], 1e-15, 1.0))))

    start = np.concatenate([np.ones(cuts), np.zeros(cuts), np.zeros(cuts)])
    bounds = [(0.0, None)] * (2 * cuts) + [(None, None)] * cuts
    found = minimize(log_loss, start, method="L-BFGS-B", bounds=bounds)
    return unpack(found.x if found.fun < log_loss(start) else start)


def with_median_of(fitted: np.ndarray, own: np.ndarray) -> np.ndarray:
    """`fitted` level distributions given the median level of `own`: where the two medians
    differ, the cumulative curve of `fitted` is clamped at one half around `own`'s median (the
    cuts below it lowered to just under one half, the cut at it and above raised to at least
    one half), the nearest curve with that median (no cut moves further than it must); rows
    whose medians agree are returned as they are. It is monotone: when `fitted` and `own` both
    move up (each cumulative curve no higher than before), so does the result, so a monotone
    constraint still holds for the whole distribution and the expected level."""
    level = median_level(own)
    cumulative = np.cumsum(fitted, axis=1)[:, :-1]
    below = np.arange(cumulative.shape[1])[None, :] < level[:, None]
    clamped = np.where(below, np.minimum(cumulative, _BELOW_HALF), np.maximum(cumulative, 0.5))
    out = np.array(fitted, dtype=np.float64, copy=True)
    moved = (clamped != cumulative).any(axis=1)
    n = int(moved.sum())
    out[moved] = np.column_stack([clamped[moved], np.ones(n)]) - np.column_stack(
        [np.zeros(n), clamped[moved]]
    )
    return out


#: `median_level` counts a cumulative probability within this of one half as reaching it.
_MEDIAN_SLACK = 1e-12
#: Where `with_median_of` puts a cut that must stay under one half.
_BELOW_HALF = 0.5 - 2 * _MEDIAN_SLACK


def median_level(proba: np.ndarray) -> np.ndarray:
    """The smallest level whose cumulative probability reaches one half."""
    cumulative = np.cumsum(proba, axis=1)
    return np.minimum((cumulative < 0.5 - _MEDIAN_SLACK).sum(axis=1), proba.shape[1] - 1)


class BinaryLGBM:
    """Binary LightGBM early-stopped on the validation split, then calibrated on it
    (sigmoid keeps the ranking; isotonic may tie scores)."""

    task: Literal["binary"] = "binary"

    def __init__(
        self,
        layout: FeatureLayout,
        params: Mapping[str, object],
        monotone: Mapping[str, int],
        max_rounds: int,
        early_stopping_rounds: int,
        calibration: Literal["none", "sigmoid", "isotonic"] = "sigmoid",
        output: str = "p_churn",
        seed: int = 7,
    ) -> None:
        self.layout = layout
        self.params = dict(params)
        self.monotone = dict(monotone)
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.calibration = calibration
        self.output = output
        self.seed = seed
        self.booster: lgb.Booster | None = None
        self.calibrator: LogisticRegression | IsotonicRegression | None = None

    @property
    def feature_names(self) -> list[str]:
        return list(self.layout.names)

    @property
    def best_iterations(self) -> list[int]:
        return [self.booster.best_iteration] if self.booster else []

    def fit(
        self,
        x_train: pd.DataFrame,
        y_train: np.ndarray,
        x_valid: pd.DataFrame,
        y_valid: np.ndarray,
        progress: Progress | None = None,
        cluster: object | None = None,
    ) -> BinaryLGBM:
        """Fit, early-stopped on the validation split, then calibrate on it; on a `cluster`,
        the booster trains on its workers (`lightgbm.dask`) and calibrates here."""
        params = _booster_params(self.params, self.monotone, self.layout, self.seed)
        fit = _booster_fitter(
            x_train,
            x_valid,
            self.layout,
            params,
            self.max_rounds,
            self.early_stopping_rounds,
            cluster,
        )
        self.booster = fit(y_train, y_valid, params)
        del fit  # (frees the binned sets)
        # Calibrated on what predictions read (float64), as served.
        raw = self._raw(self.layout.matrix(x_valid))
        if self.calibration == "sigmoid":
            self.calibrator = LogisticRegression(C=1e6).fit(raw[:, None], y_valid)
        elif self.calibration == "isotonic":
            self.calibrator = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
                raw, y_valid
            )
        if progress:
            progress(1, 1)
        return self

    def refit(
        self,
        frames: Sequence[pd.DataFrame],
        ys: Sequence[np.ndarray],
        progress: Progress | None = None,
        cluster: object | None = None,
    ) -> BinaryLGBM:
        """Finalise: train again on all of `frames` (training and validation rows) with the
        rounds early stopping chose. The calibrator, fitted on the validation scores of the
        early-stopped booster (rows it had not seen), is kept."""
        assert self.booster is not None, "fit first"
        rounds = max(1, self.booster.best_iteration)
        params = _booster_params(self.params, self.monotone, self.layout, self.seed)
        fit = _final_fitter(frames, self.layout, params, cluster)
        self.booster = fit(_combined(ys).astype(np.int8), params, rounds)
        if progress:
            progress(1, 1)
        return self

    def _raw(self, x: np.ndarray) -> np.ndarray:
        assert self.booster is not None, "fit first"
        return predict_booster(
            self.booster, x, raw_score=True, num_iteration=self.booster.best_iteration
        )

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.proba_of_matrix(self.layout.matrix(frame))

    def proba_of_matrix(self, x: np.ndarray) -> np.ndarray:
        """`predict_proba` of a matrix from `layout.matrix`."""
        raw = self._raw(x)
        if isinstance(self.calibrator, LogisticRegression):
            return self.calibrator.predict_proba(raw[:, None])[:, 1]
        if isinstance(self.calibrator, IsotonicRegression):
            return self.calibrator.predict(raw)
        return 1.0 / (1.0 + np.exp(-raw))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({self.output: self.predict_proba(frame)}, index=frame.index)


# --- baselines ----------------------------------------------------------------------------------


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|), in one output array (the imputer's fresh copy is not kept)."""
    out = np.abs(x)
    np.log1p(out, out=out)
    np.copysign(out, x, out=out)
    return out


def linear_columns(layout: FeatureLayout) -> ColumnTransformer:
    """What a linear model reads of a feature frame (`FeatureLayout.frame`): numbers
    median-imputed with missing indicators, signed log1p (for skewed amounts) and scaled;
    categories one-hot (missing as its own category, unknown ones as none). Dense output."""
    numeric = [n for n in layout.names if n not in layout.categories]
    categorical = [n for n in layout.names if n in layout.categories]
    return ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    FunctionTransformer(_signed_log1p),
                    StandardScaler(copy=False),
                ),
                numeric,
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            ),
        ],
        sparse_threshold=0.0,
    )


class LogisticBaseline:
    """(Multinomial) logistic regression on every model feature, read as `linear_columns`."""

    def __init__(self, layout: FeatureLayout, n_classes: int, seed: int = 7) -> None:
        self.layout = layout
        self.n_classes = n_classes
        self.pipeline = Pipeline(
            [
                ("columns", linear_columns(layout)),
                ("model", LogisticRegression(C=0.5, max_iter=2000, random_state=seed)),
            ]
        )

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> LogisticBaseline:
        self.pipeline.fit(self.layout.frame(frame), y)
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        proba = self.pipeline.predict_proba(self.layout.frame(frame))
        if self.n_classes == 2:
            return proba[:, 1]
        # Classes missing from training get probability 0 in their column.
        out = np.zeros((len(frame), self.n_classes))
        out[:, self.pipeline.classes_.astype(int)] = proba
        return out


class QuestionnaireBandBaseline:
    """The status quo: the category is the questionnaire's score band (`q_level`, 1..K).
    Probabilities are how often reviewers confirmed each level given that band in training
    (add-one smoothed); customers without a questionnaire get the no-band distribution."""

    def __init__(self, n_classes: int, column: str = "q_level") -> None:
        self.n_classes = n_classes
        self.column = column
        self.table = np.full((n_classes + 1, n_classes), 1.0 / n_classes)

    def _band(self, frame: pd.DataFrame) -> np.ndarray:
        band = pd.to_numeric(frame[self.column], errors="coerce").to_numpy(np.float64)
        codes = np.where(np.isnan(band), self.n_classes, np.clip(band - 1, 0, self.n_classes - 1))
        return codes.astype(int)

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> QuestionnaireBandBaseline:
        counts = np.ones((self.n_classes + 1, self.n_classes))
        np.add.at(counts, (self._band(frame), y), 1)
        self.table = counts / counts.sum(axis=1, keepdims=True)
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.table[self._band(frame)]

    def predict_level(self, frame: pd.DataFrame) -> np.ndarray:
        band = self._band(frame)
        return np.where(band < self.n_classes, band, median_level(self.table[band]))


class RecencyBaseline:
    """The rule of thumb: the longer since the last investment, the likelier churn. A logistic
    fit on log days-since-invest (never invested -> its own indicator) turns it into a
    probability."""

    def __init__(self, column: str = "days_since_invest") -> None:
        self.column = column
        self.model = LogisticRegression()

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        days = pd.to_numeric(frame[self.column], errors="coerce").to_numpy(np.float64)
        never = np.isnan(days)
        return np.column_stack([np.log1p(np.where(never, 0.0, np.maximum(days, 0))), never])

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> RecencyBaseline:
        self.model.fit(self._x(frame), y)
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self._x(frame))[:, 1]
