"""The portable model form: LightGBM text and JSON that rebuild an estimator predicting and
explaining bit for bit like the original, refused whole when any file differs from what was
recorded, and read without ever unpickling; and its round trip through the MLflow registry."""

from __future__ import annotations

import ast
import copy
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import joblib
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from suitability import tracking
from suitability.explain.contributions import explain_frame
from suitability.models import portable
from suitability.models.estimators import BinaryLGBM, FeatureLayout, OrdinalLGBM
from suitability.models.flat import prepare_flat_table
from suitability.models.portable import (
    MANIFEST,
    MODEL_JSON,
    PortableModelError,
    load_portable,
    manifest_sha256,
    save_portable,
)
from suitability.models.spec import load_model_spec
from suitability.models.train import TrainingResult, train_on_flat_table
from suitability.specs import Specs

pytestmark = [
    # LightGBM's own notice when a validation set shares the training set's bins.
    pytest.mark.filterwarnings("ignore:Overriding the parameters from Reference Dataset"),
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

LAYOUT = FeatureLayout(("a", "b", "city"), {"city": ("east", "north", "south")})
PARAMS = {"num_threads": 1, "learning_rate": 0.3, "num_leaves": 15, "min_data_in_leaf": 5}
LEVELS = ["C1", "C2", "C3", "C4"]


def _frame(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Features (a city column with missing and unseen values) and ordinal level codes."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["north", "south", "east", None], n)
    latent = 1.2 * a - b + 0.5 * (city == "north") + rng.logistic(size=n)
    frame = pd.DataFrame({"a": a, "b": b, "city": city})
    frame.loc[::97, "city"] = "atlantis"  # not in the vocabulary: coded as missing
    return frame, np.digitize(latent, [-1.5, 0.0, 1.5])


def _fit(model: OrdinalLGBM | BinaryLGBM, binary: bool = False) -> OrdinalLGBM | BinaryLGBM:
    frame, level = _frame()
    y = (level > 1).astype(int) if binary else level
    return model.fit(frame[:1200], y[:1200], frame[1200:1600], y[1200:1600])


@pytest.fixture(scope="module")
def models() -> dict[str, OrdinalLGBM | BinaryLGBM]:
    out = {"ordinal": _fit(OrdinalLGBM(LAYOUT, LEVELS, PARAMS, {"a": 1}, 200, 5))}
    calibrated = OrdinalLGBM(
        LAYOUT, LEVELS, PARAMS, {"a": 1}, 200, 5, calibration="cumulative_logit"
    )
    out["cumulative_logit"] = _fit(calibrated)
    for calibration in ("sigmoid", "isotonic", "none"):
        model = BinaryLGBM(LAYOUT, PARAMS, {}, 200, 5, calibration, output="p_up")
        out[calibration] = _fit(model, binary=True)
    return out


@pytest.fixture
def rows() -> pd.DataFrame:
    return _frame()[0][1600:]


def _saved(model: OrdinalLGBM | BinaryLGBM, folder: Path) -> tuple[Path, str]:
    save_portable(model, folder)
    return folder, manifest_sha256(folder)


def _assert_same(original: OrdinalLGBM | BinaryLGBM, rebuilt: object, rows: pd.DataFrame) -> None:
    assert type(rebuilt) is type(original)
    assert isinstance(rebuilt, OrdinalLGBM | BinaryLGBM)
    assert rebuilt.layout == original.layout
    assert rebuilt.best_iterations == original.best_iterations
    assert np.array_equal(rebuilt.predict_proba(rows), original.predict_proba(rows))
    pd.testing.assert_frame_equal(rebuilt.predict_frame(rows), original.predict_frame(rows))
    want, got = explain_frame(original, rows), explain_frame(rebuilt, rows)
    assert got.output_names == want.output_names
    assert np.array_equal(got.values, want.values)
    assert np.array_equal(got.base, want.base)
    assert np.array_equal(got.data, want.data, equal_nan=True)


# --- the round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ordinal", "cumulative_logit", "sigmoid", "isotonic", "none"])
def test_a_rebuilt_model_predicts_and_explains_bit_for_bit(
    models: dict[str, OrdinalLGBM | BinaryLGBM], kind: str, rows: pd.DataFrame, tmp_path: Path
) -> None:
    model = models[kind]
    folder, sha256 = _saved(model, tmp_path)
    rebuilt = load_portable(folder, sha256)
    _assert_same(model, rebuilt, rows)
    if isinstance(model, BinaryLGBM):
        assert isinstance(rebuilt, BinaryLGBM)
        assert rebuilt.output == "p_up" and rebuilt.calibration == kind
        assert type(rebuilt.calibrator) is type(model.calibrator)
    else:
        assert isinstance(rebuilt, OrdinalLGBM)
        assert rebuilt.classes == model.classes and rebuilt.monotone == {"a": 1}


def test_platt_scaling_is_expit_of_the_saved_numbers(
    models: dict[str, OrdinalLGBM | BinaryLGBM], rows: pd.DataFrame, tmp_path: Path
) -> None:
    """sklearn's binary predict_proba is expit(raw * coef + intercept): with the numbers read back
    from JSON it gives the same bits as the fitted calibrator."""
    model = models["sigmoid"]
    assert isinstance(model, BinaryLGBM) and model.booster is not None
    folder, _ = _saved(model, tmp_path)
    saved = json.loads((folder / MODEL_JSON).read_text())["calibrator"]
    raw = model.booster.predict(
        LAYOUT.matrix(rows), raw_score=True, num_iteration=model.booster.best_iteration
    )
    by_hand = 1.0 / (1.0 + np.exp(-(raw[:, None] @ np.array(saved["coef"]).T + saved["intercept"])))
    assert np.allclose(by_hand[:, 0], model.predict_proba(rows), rtol=0, atol=1e-15)
    assert saved["coef"][0][0] == float(model.calibrator.coef_[0, 0])
    assert saved["intercept"][0] == float(model.calibrator.intercept_[0])


def test_only_the_trees_up_to_the_best_iteration_are_saved_and_used(
    models: dict[str, OrdinalLGBM | BinaryLGBM], rows: pd.DataFrame, tmp_path: Path
) -> None:
    """A booster holding trees past its best iteration: the saved one holds only those it predicts
    with, and the rebuilt model (whose booster has no best iteration of its own) uses all of them."""
    model = copy.copy(models["none"])
    assert isinstance(model, BinaryLGBM)
    frame, level = _frame()
    data = lgb.Dataset(
        LAYOUT.matrix(frame[:1200]),
        (level[:1200] > 1).astype(int),
        feature_name=list(LAYOUT.names),
        categorical_feature=LAYOUT.categorical_indices,
    )
    model.booster = lgb.train({**PARAMS, "objective": "binary", "verbosity": -1}, data, 20)
    model.booster.best_iteration = 7
    folder, sha256 = _saved(model, tmp_path)
    rebuilt = load_portable(folder, sha256)
    assert isinstance(rebuilt, BinaryLGBM) and rebuilt.booster is not None
    assert rebuilt.booster.current_iteration() == 7 and rebuilt.booster.best_iteration == 7
    _assert_same(model, rebuilt, rows)
    every_tree = model.booster.predict(LAYOUT.matrix(rows), num_iteration=20)
    assert not np.array_equal(rebuilt.predict_proba(rows), every_tree)


def test_the_folder_holds_texts_json_and_a_manifest_of_them(
    models: dict[str, OrdinalLGBM | BinaryLGBM], tmp_path: Path
) -> None:
    manifest = save_portable(models["ordinal"], tmp_path)
    names = {"booster_0.txt", "booster_1.txt", "booster_2.txt", MODEL_JSON}
    assert {p.name for p in tmp_path.iterdir()} == names | {MANIFEST}
    assert manifest["format_version"] == portable.FORMAT_VERSION
    assert {f["path"] for f in manifest["files"]} == names
    assert all(f["bytes"] == (tmp_path / f["path"]).stat().st_size for f in manifest["files"])
    described = json.loads((tmp_path / MODEL_JSON).read_text())
    assert described["features"] == ["a", "b", "city"]
    assert described["categories"] == {"city": ["east", "north", "south"]}
    assert described["classes"] == LEVELS and described["task"] == "ordinal"
    assert (tmp_path / "booster_0.txt").read_text().startswith("tree\n")
    again = tmp_path / "again"
    save_portable(models["ordinal"], again)
    assert manifest_sha256(again) == manifest_sha256(tmp_path)  # deterministic


def test_loading_never_unpickles(
    models: dict[str, OrdinalLGBM | BinaryLGBM],
    rows: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the portable loader unpickled something")

    folders = {kind: _saved(model, tmp_path / kind) for kind, model in models.items()}
    for module, name in [
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (cloudpickle, "load"),
        (cloudpickle, "loads"),
        (joblib, "load"),
    ]:
        monkeypatch.setattr(module, name, refuse)
    for kind, (folder, sha256) in folders.items():
        _assert_same(models[kind], load_portable(folder, sha256), rows)
    tree = ast.parse(Path(portable.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not imported & {"pickle", "cloudpickle", "joblib", "dill", "marshal", "shelve"}


# --- tampering ----------------------------------------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_json(path: Path) -> None:
    described = json.loads(path.read_text())
    described["categories"]["city"] = ["north", "east", "south"]  # swaps two codes
    path.write_text(json.dumps(described, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to rebuild the model fails the test: checks must refuse first."""

    def parsed(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed a model that failed its checks")

    monkeypatch.setattr(portable, "model_from_files", parsed)
    monkeypatch.setattr(portable.lgb, "Booster", parsed)


@pytest.mark.parametrize(
    ("damage", "file", "says"),
    [
        (_flip_byte, "booster_1.txt", "differs from the manifest"),
        (_edit_json, MODEL_JSON, "(differs from the manifest|bytes where the manifest)"),
        (Path.unlink, "booster_2.txt", "listed in the manifest but missing"),
        (lambda p: p.write_text("{}"), "booster_9.txt", "not listed in the manifest"),
    ],
    ids=["flipped-byte", "edited-json", "removed-file", "extra-file"],
)
def test_a_changed_file_is_refused_before_parsing(
    models: dict[str, OrdinalLGBM | BinaryLGBM],
    tmp_path: Path,
    damage: object,
    file: str,
    says: str,
    no_parsing: None,
) -> None:
    folder, sha256 = _saved(models["ordinal"], tmp_path)
    damage(folder / file)  # type: ignore[operator]
    with pytest.raises(PortableModelError, match=rf"{file}: .*{says}"):
        load_portable(folder, sha256)
    with pytest.raises(PortableModelError, match=file):
        load_portable(folder, None)  # the manifest still catches it without the registry's sha


def test_a_rewritten_manifest_fails_the_recorded_sha(
    models: dict[str, OrdinalLGBM | BinaryLGBM], tmp_path: Path, no_parsing: None
) -> None:
    """Editing model.json and its manifest entry together is caught by the registry's sha256."""
    folder, sha256 = _saved(models["sigmoid"], tmp_path)
    _edit_json(folder / MODEL_JSON)
    manifest = json.loads((folder / MANIFEST).read_text())
    for entry in manifest["files"]:
        if entry["path"] == MODEL_JSON:
            data = (folder / MODEL_JSON).read_bytes()
            entry["sha256"], entry["bytes"] = portable._sha256(data), len(data)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PortableModelError, match=r"manifest\.json: sha256 .* recorded"):
        load_portable(folder, sha256)
    with pytest.raises(PortableModelError, match=r"manifest\.json: sha256"):
        load_portable(_saved(models["sigmoid"], tmp_path / "fresh")[0], "0" * 64)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"format_version": 99}, "format version 99 is not supported"),
        ({"files": [{"path": "../evil.pkl", "sha256": "0" * 64, "bytes": 1}]}, "unknown file"),
        ({"files": []}, "lists no files"),
    ],
)
def test_a_manifest_of_another_format_or_with_strange_files_is_refused(
    models: dict[str, OrdinalLGBM | BinaryLGBM],
    tmp_path: Path,
    change: dict[str, object],
    says: str,
    no_parsing: None,
) -> None:
    folder, _ = _saved(models["none"], tmp_path)
    manifest = {**json.loads((folder / MANIFEST).read_text()), **change}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PortableModelError, match=rf"manifest\.json: .*{says}"):
        load_portable(folder, manifest_sha256(folder))


def test_a_missing_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PortableModelError, match=r"manifest\.json: cannot read"):
        load_portable(tmp_path, None)
    with pytest.raises(PortableModelError, match=r"manifest\.json: cannot read"):
        manifest_sha256(tmp_path)


def test_features_that_disagree_with_the_boosters_are_refused(
    models: dict[str, OrdinalLGBM | BinaryLGBM], tmp_path: Path
) -> None:
    """A model.json whose features are not the boosters' (consistent manifest and all) is not
    loaded: the layout would feed the trees the wrong columns."""
    files = portable.portable_files(models["ordinal"])
    described = json.loads(files[MODEL_JSON])
    described["features"] = ["b", "a", "city"]
    files[MODEL_JSON] = json.dumps(described).encode()
    with pytest.raises(PortableModelError, match=r"booster_0\.txt: reads features"):
        portable.model_from_files(files, tmp_path)


# --- through the registry --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_REGISTRY_URI",
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
            "MLFLOW_DISABLE_TELEMETRY",
        ):
            patch.delenv(name, raising=False)
        patch.setattr(tracking, "_STORE", {"uri": None, "artifacts": None})
        tracking.use_store(f"sqlite:///{folder}/mlflow.db")
        yield folder
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def churn(specs: Specs) -> TrainingResult:
    frame, level = _frame(1500, seed=3)
    frame = frame.assign(cid=[f"K{i:05d}" for i in range(len(frame))], churned=level > 1)
    frame["churned"] = np.where(frame["churned"], "yes", "no")
    flat = prepare_flat_table(frame, target="churned", id_column="cid", task="binary")
    spec = load_model_spec("churn", specs)
    spec = spec.model_copy(
        update={
            "max_rounds": 40,
            "params": {**spec.params, **PARAMS},
            "flat_candidates": ["lightgbm"],  # (this linear table would choose the linear one)
        }
    )
    return train_on_flat_table(flat, spec, id_column="cid")


@pytest.mark.slow
def test_a_registered_model_loads_from_its_portable_form(
    store: Path, churn: TrainingResult, specs: Specs
) -> None:
    logged = tracking.log_training(churn, source={"path": "churn.csv"})
    client = MlflowClient()
    version = client.get_model_version(logged.name, str(logged.version))
    sha256 = version.tags[tracking.PORTABLE_SHA256_TAG]
    assert client.get_run(logged.run_id).data.tags[tracking.PORTABLE_SHA256_TAG] == sha256
    listed = {a.path for a in client.list_artifacts(logged.run_id, tracking.PORTABLE_DIR)}
    assert f"{tracking.PORTABLE_DIR}/{MANIFEST}" in listed

    ref = f"{logged.name}@{tracking.CHALLENGER}"
    pickled, portable_one = tracking.load_estimator(ref), tracking.load_portable_estimator(ref)
    assert (
        portable_one.ref == pickled.ref and portable_one.spec_name == pickled.spec_name == "churn"
    )
    test = churn.rows("test")
    _assert_same(pickled.model, portable_one.model, test)
    _assert_same(churn.model, portable_one.model, test)
    explainer = tracking.load_explainer(ref, specs, portable=True)
    assert explainer.ref == pickled.ref
    assert np.array_equal(explainer.model.predict_proba(test), churn.model.predict_proba(test))

    # Tampering with the stored artifact after registration is caught at load.
    stored = Path(
        mlflow.artifacts.download_artifacts(run_id=logged.run_id, artifact_path="").rstrip("/")
    )
    assert stored.is_relative_to(store)  # a local store: the download is the stored file
    _flip_byte(stored / tracking.PORTABLE_DIR / "booster_0.txt")
    with pytest.raises(PortableModelError, match=r"version 1 .*booster_0\.txt: sha256"):
        tracking.load_portable_estimator(ref)

    # A version registered without the tag is refused, not loaded some other way.
    client.delete_model_version_tag(logged.name, str(logged.version), "suitability.portable_sha256")
    with pytest.raises(ValueError, match="registered before portable models; retrain it"):
        tracking.load_portable_estimator(ref)
