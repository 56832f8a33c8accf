"""Data behind an fsspec URL is read as a local folder is: the same contract reports (every rule
of the broken-table corpus), the same features and training tables, on one process and on a
Dask cluster whose workers open the URL themselves; a URL that cannot be read is one clear
error. S3 is a moto server on a local port (`s3_server.py`)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import contract_corpus
from s3_server import s3_endpoint, upload
from suitability import cluster
from suitability.cli import app
from suitability.data import io
from suitability.data.storage import StorageError, is_url, locate
from suitability.data.synth import generate
from suitability.features.builder import build_features
from suitability.models.sources import read_feature_table
from suitability.models.spec import load_model_spec
from suitability.models.training_table import build_training_table
from suitability.settings import get_settings

AS_OF = [pd.Timestamp("2025-09-01"), pd.Timestamp("2026-03-01")]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "data"
    generate(out, 300, 5)
    return out


@pytest.fixture(scope="module")
def s3(world):
    with pytest.MonkeyPatch.context() as mp, s3_endpoint(mp) as fs:
        url = upload(fs, world, "worlds/small")
        yield fs, url


# --- locations --------------------------------------------------------------------------------


def test_a_local_path_and_a_file_url_are_local(tmp_path):
    plain, url = locate(tmp_path), locate(f"file://{tmp_path}")
    assert plain.local and url.local and not is_url(tmp_path)
    assert plain.path == url.path == str(tmp_path)
    assert (plain / "x.parquet").path == str(tmp_path / "x.parquet")
    assert str(locate("relative/data")) == "relative/data"  # messages name what the user typed


def test_an_unknown_protocol_or_missing_backend_is_a_clear_error():
    with pytest.raises(StorageError, match=r"nosuch://bucket/x: not a readable URL"):
        locate("nosuch://bucket/x")
    # gcsfs is not installed: fsspec names the package to install
    with pytest.raises(StorageError, match=r"gs://bucket/x: .*gcsfs.*on the client and every"):
        locate("gs://bucket/x")


def test_a_password_in_a_url_never_reaches_a_message():
    place = locate("memory://user:s3cret@host/data")
    assert "s3cret" not in str(place) and "s3cret" not in place.absolute()
    assert pickle.loads(pickle.dumps(place)).url == place.url  # the real URL travels to workers


def test_a_location_pickles_as_its_url_and_is_opened_again(s3):
    _, url = s3
    place = locate(url) / "customers"
    again = pickle.loads(pickle.dumps(place))
    assert again == place and again.is_dir()
    assert [f.name for f in again.files(".parquet")] == ["part-00000.parquet"]


# --- the same answers from S3 -----------------------------------------------------------------


def test_validating_a_folder_on_s3_counts_what_the_local_folder_holds(s3, world, specs):
    _, url = s3
    assert io.validate_folder(url, specs) == io.validate_folder(world, specs)


@pytest.mark.slow
def test_every_broken_table_on_s3_is_reported_as_the_local_one(s3, specs, monkeypatch, tmp_path):
    """The broken-table corpus (every rule; parquet, CSV and parts folders; two-row batches)
    read from S3: the same message, problems and rows."""
    fs, _ = s3
    local = contract_corpus.reports(specs)
    validate = contract_corpus.validate_folder

    def from_s3(folder, specs, *, batch_rows):
        url = upload(fs, folder, f"corpus/{Path(folder).name}")
        try:
            return validate(url, specs, batch_rows=batch_rows)
        finally:
            fs.rm(url, recursive=True)

    monkeypatch.setattr(contract_corpus, "validate_folder", from_s3)
    remote = contract_corpus.reports(specs)
    assert sorted(local) == sorted(remote)
    for case, want in local.items():
        got = remote[case]
        # a missing table's message names the paths looked for: the URL instead of the folder
        if "table not found" in str(want["message"]):
            assert "s3://" in str(got["message"]), case
            continue
        assert got == want, case


def test_features_and_training_tables_from_s3_are_those_of_the_local_folder(
    s3, world, specs, tmp_path
):
    _, url = s3
    build_features(world, AS_OF, tmp_path / "local.parquet", specs)
    build_features(url, AS_OF, tmp_path / "s3.parquet", specs)
    assert pq.read_table(tmp_path / "local.parquet").equals(pq.read_table(tmp_path / "s3.parquet"))
    spec = load_model_spec("churn", specs)
    one = build_training_table(spec, world, specs, tmp_path).frame
    other = build_training_table(spec, url, specs, tmp_path).frame
    pd.testing.assert_frame_equal(one, other, check_exact=True)


def test_a_csv_world_on_s3_reads_as_the_local_one(s3, world, specs, tmp_path):
    fs, _ = s3
    csv = tmp_path / "csv"
    csv.mkdir()
    for name in io.TABLE_NAMES:
        frame = pq.read_table(io.locate_table(world, name).path.path).to_pandas()
        frame.to_csv(csv / f"{name}.csv", index=False)
    url = upload(fs, csv, "worlds/csv")
    assert io.validate_folder(url, specs) == io.validate_folder(csv, specs)
    build_features(csv, AS_OF[:1], tmp_path / "local.csv", specs)
    build_features(url, AS_OF[:1], tmp_path / "s3.csv", specs)
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "s3.csv").read_bytes()


def test_a_feature_table_on_s3_reads_as_the_local_file(s3, world, specs, tmp_path):
    fs, _ = s3
    spec = load_model_spec("churn", specs)
    table = build_training_table(spec, world, specs, tmp_path).frame
    folder = tmp_path / "tables"
    folder.mkdir()
    table.to_parquet(folder / "churn.parquet")
    url = upload(fs, folder, "tables")
    pd.testing.assert_frame_equal(
        read_feature_table(f"{url}/churn.parquet"), read_feature_table(folder / "churn.parquet")
    )


# --- errors -----------------------------------------------------------------------------------


def test_the_cli_names_a_url_that_is_not_there_or_not_readable(s3, tmp_path):
    _, url = s3
    runner = CliRunner()
    missing = runner.invoke(app, ["data", "validate", "--data", f"{url}-nothing"])
    assert missing.exit_code == 2
    assert f"--data {url}-nothing: no such folder" in " ".join(missing.output.split())
    unknown = runner.invoke(
        app,
        [
            "features",
            "build",
            "--data",
            "gs://b/w",
            "--as-of",
            "2026-01-01",
            "--out",
            str(tmp_path / "f.parquet"),
        ],
    )
    assert unknown.exit_code == 2 and "gcsfs" in unknown.output, unknown.output
    assert "Traceback" not in missing.output + unknown.output


def test_a_missing_table_on_s3_is_named_with_its_url(s3, world, specs, tmp_path):
    fs, _ = s3
    partial = tmp_path / "partial"
    shutil.copytree(world, partial, ignore=shutil.ignore_patterns("interview_tags"))
    url = upload(fs, partial, "worlds/partial")
    with pytest.raises(io.MissingTableError, match=rf"interview_tags.*{url}/interview_tags"):
        io.validate_folder(url, specs)


# --- on a cluster -----------------------------------------------------------------------------


@pytest.mark.slow
def test_cluster_workers_read_the_url_themselves(s3, world, specs, tmp_path, monkeypatch):
    """The workers start after the S3 settings are in the environment and open the URL with
    them: the validation, the features and the batch explanations are those of local files in
    one process."""
    from suitability.explain.batch import explain_table
    from suitability.features.distributed import validate_on_cluster
    from suitability.models.train import train_on_features

    fs, url = s3
    spec = load_model_spec("churn", specs)
    table = build_training_table(spec, world, specs, tmp_path).frame
    spec = spec.model_copy(update={"params": {**spec.params, "learning_rate": 0.3}})
    model = train_on_features(table, spec, specs).model
    folder = tmp_path / "explain"
    folder.mkdir()
    table.to_parquet(folder / "features.parquet", index=False, row_group_size=200)
    features = upload(fs, folder, "explain") + "/features.parquet"
    monkeypatch.setenv("SUITABILITY_CLUSTER_PARTITION_CUSTOMERS", "60")
    monkeypatch.setattr("suitability.data.table_map.CLUSTER_ROWS", 300)
    get_settings.cache_clear()
    try:
        with cluster.connect(cluster.ClusterSpec(local_workers=2)) as client:
            assert validate_on_cluster(client, url, specs) == io.validate_folder(world, specs)
            many = build_features(url, AS_OF, tmp_path / "many.parquet", specs, cluster=client)
            assert many.partitions >= 4
            explain_table(model, features, tmp_path / "many-shap.parquet", cluster=client)
    finally:
        get_settings.cache_clear()
    build_features(world, AS_OF, tmp_path / "one.parquet", specs)
    assert pq.read_table(tmp_path / "one.parquet").equals(pq.read_table(tmp_path / "many.parquet"))
    explain_table(model, folder / "features.parquet", tmp_path / "one-shap.parquet")
    one, other = (
        pq.read_table(tmp_path / "one-shap.parquet"),
        pq.read_table(tmp_path / "many-shap.parquet"),
    )
    assert one.num_rows == len(table) > 600 and one.equals(other)
