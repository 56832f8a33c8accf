"""Fitted models in forms that execute no code when read: LightGBM's text model per booster and
JSON metadata, each file's sha256 in a manifest whose own sha256 the registry records.

A service loads these instead of the MLflow pyfunc (a cloudpickle) so that nothing it did not
write can run inside it. Everything is checked before anything is parsed: the manifest against
the sha256 recorded at registration, then every file against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import sklearn
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from suitability.models.estimators import BinaryLGBM, FeatureLayout, OrdinalLGBM

#: Bumped whenever model.json or the manifest changes meaning; a loader refuses other versions.
FORMAT_VERSION = 2
#: Formats this code reads: 1 lacks the ordinal model's calibration (it has none).
READABLE_VERSIONS = (1, 2)
#: The ordinal calibrator's fitted numbers, one per cut each (`OrdinalLGBM.calibrator`).
_CALIBRATOR_PARTS = ("slopes", "weights", "thresholds")
MANIFEST = "manifest.json"
MODEL_JSON = "model.json"
_BOOSTER_FILE = re.compile(r"booster_(0|[1-9][0-9]{0,3})\.txt")
_SHA256 = re.compile(r"[0-9a-f]{64}")

PortableEstimator = OrdinalLGBM | BinaryLGBM


class PortableModelError(ValueError):
    """A portable model folder that is incomplete, altered, or of a format this code cannot read."""


# --- writing ---------------------------------------------------------------------------------------


def portable_files(model: PortableEstimator) -> dict[str, bytes]:
    """The files of `model`'s portable form, by name: `booster_<k>.txt` (LightGBM text, only the
    trees up to the best iteration), `model.json` (everything else) and `manifest.json` (each
    other file's sha256 and size)."""
    boosters = _boosters(model)
    names = list(model.layout.names)
    for k, booster in enumerate(boosters):
        if booster.feature_name() != names:
            raise ValueError(
                f"booster {k} reads features {booster.feature_name()}, not the layout's {names}"
            )
    files: dict[str, bytes] = {}
    described = []
    for k, booster in enumerate(boosters):
        # Only the trees the model predicts with, so the loader needs no iteration to pick.
        best = booster.best_iteration
        trees = best if best > 0 else booster.current_iteration()
        name = f"booster_{k}.txt"
        files[name] = booster.model_to_string(num_iteration=trees).encode("utf-8")
        described.append({"file": name, "best_iteration": best, "iterations": trees})
    files[MODEL_JSON] = _json_bytes(_describe(model, described))
    files[MANIFEST] = _json_bytes(_manifest(files))
    return files


def _boosters(model: PortableEstimator) -> list[lgb.Booster]:
    if isinstance(model, OrdinalLGBM):
        if not model.boosters:
            raise ValueError("the ordinal model is not fitted")
        return list(model.boosters)
    if isinstance(model, BinaryLGBM):
        if model.booster is None:
            raise ValueError("the binary model is not fitted")
        return [model.booster]
    raise TypeError(f"cannot save a {type(model).__name__} in the portable format")


def _describe(model: PortableEstimator, boosters: list[dict[str, Any]]) -> dict[str, Any]:
    """model.json: what rebuilds the estimator, plus its training settings for the record."""
    layout = model.layout
    common = {
        "format_version": FORMAT_VERSION,
        "task": model.task,
        "class": type(model).__name__,
        "features": list(layout.names),
        "categories": {name: list(values) for name, values in layout.categories.items()},
        "boosters": boosters,
        "params": _plain(model.params),
        "monotone": _plain(model.monotone),
        "max_rounds": model.max_rounds,
        "early_stopping_rounds": model.early_stopping_rounds,
        "seed": model.seed,
        "written_with": {"lightgbm": lgb.__version__, "scikit-learn": sklearn.__version__},
    }
    if isinstance(model, OrdinalLGBM):
        calibrator = getattr(model, "calibrator", None)
        return {
            **common,
            "classes": list(model.classes),
            "calibration": getattr(model, "calibration", "none"),
            # json writes floats by `repr`: they read back as the same doubles
            "calibrator": None
            if calibrator is None
            else {
                name: [float(v) for v in values]
                for name, values in zip(_CALIBRATOR_PARTS, calibrator, strict=True)
            },
        }
    return {
        **common,
        "output": model.output,
        "calibration": model.calibration,
        "calibrator": _describe_calibrator(model),
    }


def _describe_calibrator(model: BinaryLGBM) -> dict[str, Any]:
    """The calibrator's fitted numbers. Python's json writes floats by `repr`, which reads back
    to the same double, so the rebuilt calibrator computes bit-identical probabilities."""
    calibrator = model.calibrator
    expected = {"none": type(None), "sigmoid": LogisticRegression, "isotonic": IsotonicRegression}
    if not isinstance(calibrator, expected[model.calibration]):
        raise ValueError(
            f"calibration {model.calibration!r} with a {type(calibrator).__name__} calibrator"
        )
    if isinstance(calibrator, LogisticRegression):
        return {
            "kind": "sigmoid",
            "coef": np.asarray(calibrator.coef_, dtype=np.float64).tolist(),
            "intercept": np.asarray(calibrator.intercept_, dtype=np.float64).tolist(),
            "classes": np.asarray(calibrator.classes_).tolist(),
            "C": float(calibrator.C),
        }
    if isinstance(calibrator, IsotonicRegression):
        return {
            "kind": "isotonic",
            "x_thresholds": np.asarray(calibrator.X_thresholds_, dtype=np.float64).tolist(),
            "y_thresholds": np.asarray(calibrator.y_thresholds_, dtype=np.float64).tolist(),
            "x_min": float(calibrator.X_min_),
            "x_max": float(calibrator.X_max_),
            "increasing": bool(calibrator.increasing_),
            "out_of_bounds": calibrator.out_of_bounds,
            "y_min": calibrator.y_min,
            "y_max": calibrator.y_max,
        }
    return {"kind": "none"}


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Spec settings as JSON values (numpy scalars as numbers)."""
    return json.loads(json.dumps(dict(values), default=_json_scalar))


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{value!r} ({type(value).__name__}) has no JSON form")


def _manifest(files: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "files": [
            {"path": name, "sha256": _sha256(data), "bytes": len(data)}
            for name, data in sorted(files.items())
        ],
    }


def _json_bytes(value: Any) -> bytes:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_portable(model: PortableEstimator, folder: str | Path) -> dict[str, Any]:
    """Write `model`'s portable form into `folder` (created if needed; it should hold nothing
    else, since the loader refuses files the manifest does not list). Returns the manifest."""
    files = portable_files(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return json.loads(files[MANIFEST])


def manifest_sha256(folder: str | Path) -> str:
    """The sha256 of a portable folder's manifest: the one value to record, since the manifest
    holds every other file's sha256."""
    path = Path(folder) / MANIFEST
    try:
        return _sha256(path.read_bytes())
    except OSError as error:
        raise PortableModelError(f"{path}: cannot read the manifest ({error.strerror})") from None


# --- reading ---------------------------------------------------------------------------------------


def load_portable(folder: str | Path, expected_sha256: str | None) -> PortableEstimator:
    """The estimator saved in `folder` by `save_portable`, after checking the manifest's sha256
    against `expected_sha256` (the value recorded at registration; None skips only this check)
    and every file against the manifest. Any difference is a `PortableModelError` naming the
    file; nothing is parsed until every check has passed, and nothing is unpickled."""
    files = verified_files(folder, expected_sha256)
    return model_from_files(files, Path(folder))


def verified_files(folder: str | Path, expected_sha256: str | None) -> dict[str, bytes]:
    """The bytes of every file the manifest lists, each checked for size and sha256; the
    manifest itself checked against `expected_sha256` before it is read as JSON."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    try:
        manifest_bytes = manifest_path.read_bytes()
    except OSError as error:
        raise PortableModelError(
            f"{manifest_path}: cannot read the manifest ({error.strerror})"
        ) from None
    if expected_sha256 is not None:
        actual = _sha256(manifest_bytes)
        if actual != expected_sha256.strip().lower():
            raise PortableModelError(
                f"{manifest_path}: sha256 {actual} differs from the recorded {expected_sha256}; "
                "the model's files were changed after it was registered"
            )
    listed = _listed_files(manifest_bytes, manifest_path)
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    if unlisted := sorted(present - set(listed)):
        raise PortableModelError(
            f"{folder / unlisted[0]}: not listed in the manifest "
            f"({len(unlisted)} unlisted file(s): {', '.join(unlisted)})"
        )
    files: dict[str, bytes] = {}
    for name, (sha256, size) in listed.items():
        path = folder / name
        if not path.is_file():
            raise PortableModelError(f"{path}: listed in the manifest but missing")
        data = path.read_bytes()
        if len(data) != size:
            raise PortableModelError(
                f"{path}: {len(data)} bytes where the manifest records {size}; the file was "
                "changed or truncated"
            )
        if (actual := _sha256(data)) != sha256:
            raise PortableModelError(
                f"{path}: sha256 {actual} differs from the manifest's {sha256}; the file was "
                "changed"
            )
        files[name] = data
    if MODEL_JSON not in files:
        raise PortableModelError(f"{manifest_path}: lists no {MODEL_JSON}")
    return files


def _listed_files(manifest_bytes: bytes, path: Path) -> dict[str, tuple[str, int]]:
    """The manifest's files as name -> (sha256, size), refusing a malformed manifest, another
    format version, and any name that is not one of ours (which also rules out paths)."""
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PortableModelError(f"{path}: not a JSON manifest ({error})") from None
    if not isinstance(manifest, dict):
        raise PortableModelError(f"{path}: not a manifest (a JSON object is expected)")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise PortableModelError(
            f"{path}: format version {version!r} is not supported (this code reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}); load it with the suitability version "
            "that wrote it"
        )
    entries = manifest.get("files")
    if not isinstance(entries, list) or not entries:
        raise PortableModelError(f"{path}: lists no files")
    listed: dict[str, tuple[str, int]] = {}
    for entry in entries:
        name = entry.get("path") if isinstance(entry, dict) else None
        sha256 = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not (name == MODEL_JSON or _BOOSTER_FILE.fullmatch(name)):
            raise PortableModelError(f"{path}: lists an unknown file {name!r}")
        if name in listed:
            raise PortableModelError(f"{path}: lists {name} twice")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise PortableModelError(f"{path}: {name} has no valid sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise PortableModelError(f"{path}: {name} has no valid size")
        listed[name] = (sha256, size)
    return listed


def model_from_files(files: Mapping[str, bytes], folder: Path | None = None) -> PortableEstimator:
    """Rebuild the estimator from checked file contents (see `verified_files`): the class is
    constructed without fitting, its boosters read from LightGBM text and its calibrator's
    fitted numbers set from model.json."""
    where = folder or Path(".")
    described = _model_json(files[MODEL_JSON], where / MODEL_JSON)
    try:
        return _rebuild(described, files, where)
    except PortableModelError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, lgb.basic.LightGBMError) as error:
        raise PortableModelError(
            f"{where / MODEL_JSON}: cannot rebuild the model ({type(error).__name__}: {error})"
        ) from None


def _model_json(data: bytes, path: Path) -> dict[str, Any]:
    try:
        described = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PortableModelError(f"{path}: not JSON ({error})") from None
    if not isinstance(described, dict):
        raise PortableModelError(f"{path}: a JSON object is expected")
    if described.get("format_version") not in READABLE_VERSIONS:
        raise PortableModelError(
            f"{path}: format version {described.get('format_version')!r} is not supported "
            f"(this code reads {', '.join(map(str, READABLE_VERSIONS))})"
        )
    return described


def _rebuild(
    described: Mapping[str, Any], files: Mapping[str, bytes], where: Path
) -> PortableEstimator:
    names = tuple(str(n) for n in described["features"])
    categories = {str(k): tuple(str(c) for c in v) for k, v in described["categories"].items()}
    if unknown := sorted(set(categories) - set(names)):
        raise PortableModelError(
            f"{where / MODEL_JSON}: categories for features it does not list: {unknown}"
        )
    layout = FeatureLayout(names, categories)
    boosters = [_booster(entry, files, names, where) for entry in described["boosters"]]
    task, kind = described["task"], described["class"]
    settings = {
        "params": described["params"],
        "monotone": described["monotone"],
        "max_rounds": int(described["max_rounds"]),
        "early_stopping_rounds": int(described["early_stopping_rounds"]),
        "seed": int(described["seed"]),
    }
    if task == "ordinal" and kind == OrdinalLGBM.__name__:
        classes = [str(c) for c in described["classes"]]
        if len(boosters) != len(classes) - 1:
            raise PortableModelError(
                f"{where / MODEL_JSON}: {len(classes)} classes need {len(classes) - 1} "
                f"boosters, not {len(boosters)}"
            )
        ordinal = OrdinalLGBM(
            layout, classes, calibration=described.get("calibration", "none"), **settings
        )
        ordinal.boosters = boosters
        if ordinal.calibration == "cumulative_logit":
            fitted = described.get("calibrator") or {}
            parts = [fitted.get(name) for name in _CALIBRATOR_PARTS]
            if not all(isinstance(v, list) and len(v) == len(boosters) for v in parts):
                raise PortableModelError(
                    f"{where / MODEL_JSON}: the cumulative_logit calibrator needs "
                    f"{len(boosters)} {', '.join(_CALIBRATOR_PARTS)}"
                )
            slopes, weights, thresholds = (np.asarray(v, dtype=np.float64) for v in parts)
            ordinal.calibrator = (slopes, weights, thresholds)
        return ordinal
    if task == "binary" and kind == BinaryLGBM.__name__:
        if len(boosters) != 1:
            raise PortableModelError(
                f"{where / MODEL_JSON}: a binary model has one booster, not {len(boosters)}"
            )
        binary = BinaryLGBM(
            layout,
            calibration=described["calibration"],
            output=str(described["output"]),
            **settings,
        )
        binary.booster = boosters[0]
        binary.calibrator = _calibrator(described["calibrator"], binary.calibration, where)
        return binary
    raise PortableModelError(f"{where / MODEL_JSON}: unknown model {kind!r} for task {task!r}")


def _booster(
    entry: Mapping[str, Any], files: Mapping[str, bytes], names: tuple[str, ...], where: Path
) -> lgb.Booster:
    """One booster from its text, predicting with exactly the saved trees."""
    name = entry["file"]
    if name not in files or not _BOOSTER_FILE.fullmatch(name):
        raise PortableModelError(f"{where / MODEL_JSON}: names {name!r}, not a listed booster")
    booster = lgb.Booster(model_str=files[name].decode("utf-8"))
    if booster.feature_name() != list(names):
        raise PortableModelError(
            f"{where / name}: reads features {booster.feature_name()}, not model.json's "
            f"{list(names)}"
        )
    if booster.current_iteration() != int(entry["iterations"]):
        raise PortableModelError(
            f"{where / name}: holds {booster.current_iteration()} iterations where model.json "
            f"records {entry['iterations']}"
        )
    # A loaded booster has no best iteration (-1); the estimators predict with
    # `num_iteration=best_iteration`, and with the original value that is every saved tree.
    booster.best_iteration = int(entry["best_iteration"])
    return booster


def _calibrator(
    described: Mapping[str, Any], calibration: str, where: Path
) -> LogisticRegression | IsotonicRegression | None:
    kind = described["kind"]
    if kind != calibration:
        raise PortableModelError(
            f"{where / MODEL_JSON}: calibration {calibration!r} with a {kind!r} calibrator"
        )
    if kind == "none":
        return None
    if kind == "sigmoid":
        # Binary `predict_proba` is expit(x @ coef_.T + intercept_): the same numbers in the
        # same arrays give the same bits.
        sigmoid = LogisticRegression(C=float(described["C"]))
        sigmoid.coef_ = np.asarray(described["coef"], dtype=np.float64).reshape(1, 1)
        sigmoid.intercept_ = np.asarray(described["intercept"], dtype=np.float64).reshape(1)
        sigmoid.classes_ = np.asarray(described["classes"])
        sigmoid.n_features_in_ = 1
        if len(sigmoid.classes_) != 2:
            raise PortableModelError(f"{where / MODEL_JSON}: a sigmoid calibrator has 2 classes")
        return sigmoid
    if kind == "isotonic":
        return _isotonic(described, where)
    raise PortableModelError(f"{where / MODEL_JSON}: unknown calibrator {kind!r}")


def _isotonic(described: Mapping[str, Any], where: Path) -> IsotonicRegression:
    """Refit on the recorded thresholds (already monotone and trimmed, so the fit returns them
    unchanged) and check it did: the public API only, and proof the curve is the saved one."""
    x = np.asarray(described["x_thresholds"], dtype=np.float64)
    y = np.asarray(described["y_thresholds"], dtype=np.float64)
    isotonic = IsotonicRegression(
        y_min=described["y_min"],
        y_max=described["y_max"],
        increasing=bool(described["increasing"]),
        out_of_bounds=described["out_of_bounds"],
    ).fit(x, y)
    same = (
        np.array_equal(isotonic.X_thresholds_, x)
        and np.array_equal(isotonic.y_thresholds_, y)
        and float(isotonic.X_min_) == float(described["x_min"])
        and float(isotonic.X_max_) == float(described["x_max"])
    )
    if not same:
        raise PortableModelError(
            f"{where / MODEL_JSON}: the isotonic calibrator's thresholds do not rebuild exactly"
        )
    return isotonic
