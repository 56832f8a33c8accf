"""LightGBM boosters trained on a Dask cluster (`lightgbm.dask`, data-parallel), stopped early
exactly as one process stops them.

`lightgbm.dask` gives each worker only its own rows of an evaluation set, so LightGBM's early
stopping would stop the workers at different rounds (and hang the network). Here every worker
holds the whole validation set, added to its booster by a callback and scored by LightGBM as
trees are added, the same on every worker (the trees are the same on every worker in
data-parallel training), so they all stop at the same round: the round after which the
validation log loss has not improved for `early_stopping_rounds` rounds, and the booster keeps
the best one, as `lgb.early_stopping` does.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

import lightgbm as lgb
import numpy as np


class AddValidation:
    """A LightGBM callback, before the first round: the whole validation set joins the booster,
    binned with the training set's (shared) bins, so LightGBM keeps its scores as trees are
    added and evaluates it every round, as it does the validation set of one process."""

    order = 0
    before_iteration = True

    def __init__(self, x_valid: np.ndarray, y_valid: np.ndarray) -> None:
        self.x_valid: np.ndarray | None = x_valid
        self.y_valid = np.asarray(y_valid, dtype=np.int8)

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        if self.x_valid is None:
            return
        booster = env.model
        train = booster.train_set
        booster.add_valid(
            lgb.Dataset(
                self.x_valid, label=self.y_valid, reference=train, params=train.get_params()
            ),
            _VALID,
        )
        self.x_valid = None  # binned now


class SameStopOnEveryWorker:
    """A LightGBM callback: early stopping on the validation log loss that `AddValidation`'s
    set gives (`patience` rounds without improvement; the best round is kept), the rule of
    `lgb.early_stopping`."""

    order = 30  # where lgb.early_stopping runs
    before_iteration = False

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = np.inf
        self.best_iteration = -1

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        # (entries are tuples or EvalResult records: dataset, metric, value, …)
        loss = next(float(r[2]) for r in env.model.eval_valid() if r[0] == _VALID)
        i = env.iteration
        if loss < self.best_loss:
            self.best_loss, self.best_iteration = loss, i
        last = i == env.end_iteration - 1
        if i - self.best_iteration >= self.patience or last:
            score = [(_VALID, "binary_logloss", self.best_loss, False)]
            raise lgb.callback.EarlyStopException(self.best_iteration, score)


def stop_on_validation(x_valid: np.ndarray, y_valid: np.ndarray, patience: int) -> list[object]:
    """The callbacks that stop every worker at the same round (see the module's docstring)."""
    return [AddValidation(x_valid, y_valid), SameStopOnEveryWorker(patience)]


_VALID = "validation"


class ClusterRows:
    """A training matrix spread over the workers as a Dask array of row blocks, scattered once
    and shared by every booster fitted on it (the ordinal model's cuts change only labels)."""

    def __init__(self, client: object, x: np.ndarray, blocks_per_worker: int = 1) -> None:
        import dask.array as da

        workers = list(client.scheduler_info()["workers"])  # type: ignore[attr-defined]
        n_blocks = max(1, min(len(x), len(workers) * blocks_per_worker))
        self.bounds = np.linspace(0, len(x), n_blocks + 1).astype(int)
        self.client = client
        # One block per worker, placed explicitly (lightgbm.dask trains where the blocks are).
        self.blocks = [
            client.scatter(  # type: ignore[attr-defined]
                x[a:b], workers=[workers[i % len(workers)]], hash=False
            )
            for i, (a, b) in enumerate(zip(self.bounds[:-1], self.bounds[1:], strict=True))
        ]
        self.workers = workers
        self.x = da.concatenate(
            [
                da.from_delayed(block, shape=(b - a, x.shape[1]), dtype=x.dtype)
                for block, a, b in zip(self.blocks, self.bounds[:-1], self.bounds[1:], strict=True)
            ]
        )

    def labels(self, y: np.ndarray) -> object:
        """`y` as a Dask array of the same row blocks, on the same workers."""
        import dask.array as da

        parts = []
        for i, (a, b) in enumerate(zip(self.bounds[:-1], self.bounds[1:], strict=True)):
            block = self.client.scatter(  # type: ignore[attr-defined]
                np.ascontiguousarray(y[a:b]),
                workers=[self.workers[i % len(self.workers)]],
                hash=False,
            )
            parts.append(da.from_delayed(block, shape=(b - a,), dtype=y.dtype))
        return da.concatenate(parts)


def fit_booster_on_cluster(
    rows: ClusterRows,
    y_train: np.ndarray,
    x_valid: np.ndarray | None,
    y_valid: np.ndarray | None,
    params: Mapping[str, object],
    max_rounds: int,
    early_stopping_rounds: int,
    feature_names: Sequence[str],
    categorical: Sequence[int],
) -> lgb.Booster:
    """One binary LightGBM trained data-parallel on the workers holding `rows`, early-stopped
    on the validation log loss (`SameStopOnEveryWorker`); a plain booster, as `lgb.train`
    returns it. Without a validation set: exactly `max_rounds` trees (a finalised model)."""
    from lightgbm.dask import DaskLGBMClassifier

    # Native parameters (the log loss is the metric the callbacks read); lightgbm.dask sets
    # each worker's threads to its Dask threads.
    native = {k: v for k, v in params.items() if k not in ("metric", "num_threads")}
    model = DaskLGBMClassifier(
        client=rows.client, n_estimators=max_rounds, **native, metric="binary_logloss"
    )
    rows.client.run(_quiet_lightgbm)  # type: ignore[attr-defined]
    _quiet_lightgbm()
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    from suitability.cluster import ClusterError

    with warnings.catch_warnings():
        # The validation set travels in the callbacks, once to each worker, on purpose: Dask
        # warns of the large task it makes.
        warnings.filterwarnings("ignore", message="Sending large graph")
        try:
            model.fit(
                rows.x,
                rows.labels(np.asarray(y_train, dtype=np.int8)),
                feature_name=list(feature_names),
                categorical_feature=list(categorical),
                callbacks=(
                    stop_on_validation(x_valid, y_valid, early_stopping_rounds)
                    if x_valid is not None and y_valid is not None
                    else None
                ),
            )
        except (KilledWorker, FutureCancelledError) as exc:
            # LightGBM's network training needs every worker it started with: no retry.
            raise ClusterError(
                f"a worker was lost while LightGBM trained on the cluster ({type(exc).__name__}); "
                "nothing was logged or registered. Run the command again"
            ) from None
    booster = model.booster_
    if booster.best_iteration <= 0:  # (no validation set, or kept safe: every tree)
        booster.best_iteration = booster.current_iteration()
    return booster


class _WarningsOnly(logging.Logger):
    """LightGBM's log (its C++ side included) at WARNING: the network set-up's "Listening…",
    "Connected to rank…" lines are not for the user's terminal."""

    def __init__(self) -> None:
        super().__init__("lightgbm", logging.WARNING)
        self.addHandler(logging.StreamHandler())
        # lightgbm.dask sets each worker's threads to its Dask threads, as intended.
        self.addFilter(lambda record: "Parameter n_jobs will be ignored" not in record.getMessage())


def _quiet_lightgbm() -> None:
    lgb.register_logger(_WarningsOnly())
