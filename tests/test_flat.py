"""Code tests for `suitability.models.flat`: reading a user's table and preparing it for a model,
on tiny inline tables shaped like the public Telco churn CSV."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suitability.models.flat import (
    FlatTableError,
    assign_ids_to_splits,
    prepare_flat_table,
    read_flat_table,
)

N_ROWS = 24


def _telco() -> pd.DataFrame:
    """24 rows as `read_flat_table` returns a Telco-like CSV: everything text, blanks as "",
    one repeated customer, one typo and one thousands separator in TotalCharges."""
    rows = range(N_ROWS)
    charges = [f"{20 + 7.5 * i:.2f}" for i in rows]
    charges[3] = " "  # Telco's blank TotalCharges for new customers
    charges[5] = "1,234.5"
    charges[7] = "abc"
    ids = [f"{i:04d}-XYZ" for i in rows]
    ids[9] = ids[8]
    frame = pd.DataFrame(
        {
            "customerID": ids,
            "gender": ["Female" if i % 2 else "Male" for i in rows],
            "SeniorCitizen": [str((i % 3 == 0 and 1) or 0) for i in rows],
            "tenure": [str(i % 12) for i in rows],
            "InternetService": [["DSL", "Fiber optic", "No"][i % 3] for i in rows],
            "OnlineSecurity": [["Yes", "No", "No internet service"][i % 3] for i in rows],
            "TotalCharges": charges,
            "notes": [f"called on day {i} about the bill" for i in rows],
            "country": ["US"] * N_ROWS,
            "signup": [f"2021-{i % 12 + 1:02d}-01" for i in rows],
            "Churn": ["Yes" if i % 4 == 0 else "No" for i in rows],
        },
        dtype="str",
    )
    frame["paperless"] = [i % 2 == 0 for i in rows]
    return frame


def _prepare(frame: pd.DataFrame, **options: object):
    arguments = {"target": "Churn", "id_column": "customerID", "task": "binary"} | options
    return prepare_flat_table(frame, **arguments)


def _tiny(target: object) -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c", "d"], "x": [1.0, 2.0, 3.0, 2.0], "y": target})


# --- prepare: features ---------------------------------------------------------------------------


def test_telco_like_table_becomes_a_clean_matrix() -> None:
    table = _prepare(_telco(), source="telco.csv")

    assert list(table.features.columns) == [
        "gender",
        "SeniorCitizen",
        "tenure",
        "InternetService",
        "OnlineSecurity",
        "TotalCharges",
        "paperless",
    ]
    assert table.features.index.equals(pd.RangeIndex(N_ROWS))
    assert table.numeric == ["SeniorCitizen", "tenure", "TotalCharges", "paperless"]
    assert table.categorical == ["gender", "InternetService", "OnlineSecurity"]
    assert table.text_numbers == ["SeniorCitizen", "tenure", "TotalCharges"]
    for name in table.numeric:
        assert table.features[name].dtype == np.float64
    security = table.features["OnlineSecurity"]
    assert isinstance(security.dtype, pd.CategoricalDtype)
    assert list(security.cat.categories) == ["No", "No internet service", "Yes"]


def test_text_numbers_handle_blanks_thousands_and_typos() -> None:
    table = _prepare(_telco())
    charges = table.features["TotalCharges"]

    assert np.isnan(charges[3])  # blank
    assert charges[5] == 1234.5  # "1,234.5"
    assert np.isnan(charges[7])  # "abc"
    assert charges[0] == 20.0
    assert any("TotalCharges: 1 values are not numbers ('abc')" in w for w in table.warnings)


def test_unusable_columns_are_dropped_with_reasons() -> None:
    table = _prepare(_telco())

    assert set(table.dropped) == {"notes", "country", "signup"}
    assert "looks like free text or an id" in table.dropped["notes"]
    assert "constant" in table.dropped["country"]
    assert "--time" in table.dropped["signup"]


def test_bool_column_is_numeric_zero_one() -> None:
    paperless = _prepare(_telco()).features["paperless"]

    assert paperless.dtype == np.float64
    assert paperless.tolist()[:2] == [1.0, 0.0]


def test_missing_tokens_become_nan_and_categories_are_sorted() -> None:
    frame = _tiny(["yes", "no", "no", "yes"])
    frame["plan"] = [" gold ", "NULL", "N/A", "basic"]
    frame["score"] = ["1", "?", "-", "4"]

    table = prepare_flat_table(frame, target="y", id_column="id", task="binary")

    assert table.features["plan"].isna().tolist() == [False, True, True, False]
    assert list(table.features["plan"].cat.categories) == ["basic", "gold"]
    assert table.features["score"].tolist()[::3] == [1.0, 4.0]
    assert table.features["score"].isna().sum() == 2


def test_high_cardinality_text_is_dropped() -> None:
    frame = _telco()
    frame["city"] = [f"city {i % 12}" for i in range(N_ROWS)]

    table = _prepare(frame, max_categories=5)

    assert table.dropped["city"].startswith("high-cardinality text (12 distinct values)")


def test_datetime_dtype_column_is_dropped_and_entirely_missing_too() -> None:
    frame = _telco()
    frame["last_login"] = pd.Timestamp("2024-01-01")
    frame["empty"] = ""

    table = _prepare(frame)

    assert "dates are not used" in table.dropped["last_login"]
    assert table.dropped["empty"] == "entirely missing"


def test_no_usable_features_is_an_error() -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "y": ["yes", "no"], "same": ["x", "x"]})

    with pytest.raises(FlatTableError, match="no usable feature columns"):
        prepare_flat_table(frame, target="y", id_column="id", task="binary")


def test_duplicate_column_names_are_an_error() -> None:
    frame = pd.DataFrame([["a", 1, 2, "yes"]], columns=["id", "x", "x", "y"])

    with pytest.raises(FlatTableError, match="repeated: 'x'"):
        prepare_flat_table(frame, target="y", id_column="id", task="binary")


# --- prepare: target, ids, times ---------------------------------------------------------------


def test_yes_no_target_orders_classes_negative_then_positive() -> None:
    table = _prepare(_telco())

    assert table.classes == ["No", "Yes"]
    assert table.target.dtype == np.int64
    assert table.target[:4].tolist() == [1, 0, 0, 0]


@pytest.mark.parametrize(
    ("values", "classes", "codes"),
    [
        ([0, 1, 1, 0], ["0", "1"], [0, 1, 1, 0]),
        ([1.0, 0.0, 0.0, 1.0], ["0", "1"], [1, 0, 0, 1]),
        ([True, False, True, False], ["False", "True"], [1, 0, 1, 0]),
        (["yes", "no", " YES ", "no"], ["no", "yes"], [1, 0, 1, 0]),
        (["Churned", "Retained", "Retained", "Churned"], ["Retained", "Churned"], [1, 0, 0, 1]),
    ],
)
def test_binary_target_variants(values: list[object], classes: list[str], codes: list[int]) -> None:
    table = prepare_flat_table(_tiny(values), target="y", id_column="id", task="binary")

    assert table.classes == classes
    assert table.target.tolist() == codes


def test_three_valued_binary_target_lists_the_values() -> None:
    with pytest.raises(FlatTableError, match=r"exactly two distinct values.*'Maybe'.*Accepted"):
        prepare_flat_table(
            _tiny(["Yes", "No", "Maybe", "No"]), target="y", id_column="id", task="binary"
        )


def test_unrecognised_binary_labels_are_an_error() -> None:
    with pytest.raises(FlatTableError, match="cannot tell the positive class"):
        prepare_flat_table(_tiny(["A", "B", "A", "B"]), target="y", id_column="id", task="binary")


def test_missing_target_names_the_rows() -> None:
    frame = _telco()
    frame.loc[[2, 6], "Churn"] = [" ", "NA"]

    with pytest.raises(FlatTableError, match=r"'Churn' is empty in 2 of 24 rows \(rows 3, 7;"):
        _prepare(frame)


def test_missing_id_names_the_rows() -> None:
    frame = _telco()
    frame.loc[0, "customerID"] = ""

    with pytest.raises(FlatTableError, match=r"id column 'customerID' is empty in 1 .*row 1;"):
        _prepare(frame)


def test_unknown_target_column_suggests_the_close_match() -> None:
    with pytest.raises(
        FlatTableError, match=r"no target column 'churn'\. Did you mean 'Churn'"
    ) as e:
        _prepare(_telco(), target="churn")

    assert "Columns: customerID, gender" in str(e.value)


def test_target_and_id_must_differ() -> None:
    with pytest.raises(FlatTableError, match="must differ"):
        _prepare(_telco(), target="customerID")


def test_repeated_ids_are_kept_and_noted() -> None:
    table = _prepare(_telco())

    assert table.ids.tolist()[8:10] == ["0008-XYZ", "0008-XYZ"]
    assert any(
        w.startswith("customerID: 1 ids appear on more than one row (2 rows in all)")
        for w in table.warnings
    )


def test_ordinal_target_with_a_given_order() -> None:
    table = prepare_flat_table(
        _tiny(["C3", "c1", "C5", "C1"]),
        target="y",
        id_column="id",
        task="ordinal",
        ordinal_order=["C1", "C2", "C3", "C4", "C5"],
    )

    assert table.classes == ["C1", "C2", "C3", "C4", "C5"]
    assert table.target.tolist() == [2, 0, 4, 0]


def test_ordinal_target_outside_the_order_is_an_error() -> None:
    with pytest.raises(FlatTableError, match=r"outside the class order.*'C9'"):
        prepare_flat_table(
            _tiny(["C3", "C9", "C5", "C1"]),
            target="y",
            id_column="id",
            task="ordinal",
            ordinal_order=["C1", "C2", "C3", "C4", "C5"],
        )


def test_ordinal_integers_are_ordered_numerically() -> None:
    table = prepare_flat_table(
        _tiny(["10", "2", "3", "2"]), target="y", id_column="id", task="ordinal"
    )

    assert table.classes == ["2", "3", "10"]
    assert table.target.tolist() == [2, 0, 1, 0]


def test_ordinal_text_without_an_order_is_an_error() -> None:
    with pytest.raises(FlatTableError, match="give the classes in order"):
        prepare_flat_table(
            _tiny(["C3", "C1", "C5", "C1"]), target="y", id_column="id", task="ordinal"
        )


def test_time_column_is_parsed_and_not_a_feature() -> None:
    frame = _telco()
    frame.loc[1, "signup"] = "2021-02-01 13:30:00+02:00"

    table = _prepare(frame, time_column="signup")

    assert pd.api.types.is_datetime64_dtype(table.times)
    assert table.times[0] == pd.Timestamp("2021-01-01")
    assert table.times[1] == pd.Timestamp("2021-02-01 11:30")  # converted to UTC
    assert "signup" not in table.features and "signup" not in table.dropped


def test_unparseable_time_names_count_and_rows() -> None:
    frame = _telco()
    frame.loc[[4, 10], "signup"] = ["soon", "2021-13-45"]

    with pytest.raises(FlatTableError, match=r"2 values that are not dates.*'soon'.*rows 5, 11"):
        _prepare(frame, time_column="signup")


# --- read ----------------------------------------------------------------------------------------


def test_read_csv_keeps_everything_as_text_and_tolerates_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "telco.csv"
    path.write_bytes("customerID,TotalCharges,Churn\nA1, ,Yes\nA2,1,No\n".encode("utf-8-sig"))

    frame = read_flat_table(path)

    assert list(frame.columns) == ["customerID", "TotalCharges", "Churn"]
    assert frame["TotalCharges"].tolist() == [" ", "1"]
    assert all(pd.api.types.is_string_dtype(dtype) for dtype in frame.dtypes)


def test_read_parquet(tmp_path: Path) -> None:
    path = tmp_path / "telco.parquet"
    pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.5], "y": [True, False]}).to_parquet(path)

    frame = read_flat_table(str(path))

    assert frame["x"].tolist() == [1.5, 2.5]
    assert frame["y"].dtype == bool


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("table.xlsx", b"x", "unsupported file type '.xlsx'"),
        ("empty.csv", b"", "the file is empty"),
        ("header.csv", b"a,b\n", "no data rows"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "cannot be read as CSV"),
        ("dup.csv", b"a,a\n1,2\n", "repeated: 'a'"),
        ("latin.csv", b"a,b\n\xe9t\xe9,1\n", "not UTF-8"),
        ("semi.csv", b"a;b\n1;2\n", "separated by semicolons"),
        ("broken.parquet", b"not parquet", "cannot be read as parquet"),
    ],
)
def test_read_errors_name_the_path(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(FlatTableError, match=message) as error:
        read_flat_table(path)

    assert str(error.value).startswith(str(path))


def test_read_then_prepare_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "telco.csv"
    _telco().to_csv(path, index=False)

    table = _prepare(read_flat_table(path), source=str(path))

    assert table.classes == ["No", "Yes"]
    assert table.numeric == ["SeniorCitizen", "tenure", "TotalCharges", "paperless"]


def test_saved_pandas_index_column_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "telco.csv"
    _telco().to_csv(path)  # writes the row index under a blank header

    table = _prepare(read_flat_table(path))

    assert "no header name" in table.dropped["Unnamed: 0"]


# --- splits --------------------------------------------------------------------------------------


def test_ids_stay_in_their_earliest_split() -> None:
    ids = pd.Series(["a", "a", "b", "b", "c", "c", "d", "e", "e"])
    split = np.array(
        [
            "test",
            "train",
            "validation",
            "test",
            "validation",
            "validation",
            "train",
            "test",
            "train",
        ]
    )

    new_split, crossed_ids, dropped_rows = assign_ids_to_splits(ids, split)

    assert new_split.tolist() == [
        "dropped",  # a: in train, so its test row goes
        "train",
        "validation",
        "dropped",  # b: validation comes before test
        "validation",  # c: two rows in one split is fine
        "validation",
        "train",
        "dropped",
        "train",
    ]
    assert (crossed_ids, dropped_rows) == (3, 3)
    assert split[0] == "test"  # input untouched


def test_assign_ids_without_overlap_changes_nothing() -> None:
    split = np.array(["train", "validation", "test"])

    new_split, crossed_ids, dropped_rows = assign_ids_to_splits(pd.Series(["a", "b", "c"]), split)

    assert new_split.tolist() == split.tolist()
    assert (crossed_ids, dropped_rows) == (0, 0)


# --- the preprocessor: raw rows, whatever the reader gave ----------------------------------------


def _as_pandas_reads_it(frame: pd.DataFrame, tmp: Path) -> pd.DataFrame:
    """The frame written as CSV and read back by a stock `pd.read_csv` (ints, floats with NaN
    for blanks, text), as a user scoring a file would."""
    path = tmp / "rows.csv"
    frame.to_csv(path, index=False)
    return pd.read_csv(path)


def test_the_preprocessor_gives_the_training_matrix_from_raw_rows(tmp_path) -> None:
    flat = _prepare(_telco())
    pre = flat.preprocessor
    pd.testing.assert_frame_equal(pre.transform(_telco()), flat.features)
    # as stock pandas reads the same file: tenure as int64, SeniorCitizen as int64, paperless
    # as bool, TotalCharges as text (the typo), blanks as NaN
    read = _as_pandas_reads_it(_telco(), tmp_path)
    assert read["tenure"].dtype.kind == "i"
    pd.testing.assert_frame_equal(pre.transform(read), flat.features)
    # and from the prepared matrix itself (what the logged test split holds)
    pd.testing.assert_frame_equal(pre.transform(flat.features), flat.features)


def test_the_preprocessor_scores_new_rows_one_at_a_time_and_shuffled() -> None:
    raw = _telco()
    flat = _prepare(raw)
    pre = flat.preprocessor
    order = np.random.default_rng(0).permutation(N_ROWS)
    shuffled = pre.transform(raw.iloc[order])
    pd.testing.assert_frame_equal(shuffled, flat.features.iloc[order].reset_index(drop=True))
    for row in (0, 3, 5, 7):  # a blank, a thousands separator, a typo: each alone in a frame
        one = pre.transform(raw.iloc[[row]])
        pd.testing.assert_frame_equal(one, flat.features.iloc[[row]].reset_index(drop=True))


def test_unseen_categories_are_missing_and_extra_columns_ignored() -> None:
    flat = _prepare(_telco())
    new = _telco().head(3).drop(columns=["Churn", "customerID"])
    new["InternetService"] = ["Satellite", "DSL", " dsl "]
    new["something_new"] = [1, 2, 3]
    out = flat.preprocessor.transform(new)
    assert list(out.columns) == list(flat.features.columns)
    assert out["InternetService"].isna().tolist() == [True, False, True]  # case kept, as trained


def test_a_missing_feature_column_is_named() -> None:
    flat = _prepare(_telco())
    with pytest.raises(FlatTableError, match=r"rows.csv: lacks the column\(s\).*'tenure'"):
        flat.preprocessor.transform(_telco().drop(columns=["tenure"]), source="rows.csv")


def test_raw_target_values_map_to_the_training_classes() -> None:
    flat = _prepare(_telco())
    pre = flat.preprocessor
    assert pre.target_codes(pd.Series(["Yes", "no", " YES", "No"], name="Churn")).tolist() == [
        1,
        0,
        1,
        0,
    ]
    assert pre.target_codes(pd.Series([1, 0, 1], name="Churn")).tolist() == [1, 0, 1]
    with pytest.raises(FlatTableError, match=r"target 'Churn' has values the model does not know"):
        pre.target_codes(pd.Series(["Yes", "maybe"], name="Churn"))
    ordinal = _prepare(
        pd.DataFrame({"id": list("abcdef"), "x": [1, 2, 3, 4, 5, 6], "y": [1, 2, 3, 1, 2, 3]}),
        target="y",
        id_column="id",
        task="ordinal",
    )
    codes = ordinal.preprocessor.target_codes(pd.Series([3.0, 1.0, "2"], name="y"))
    assert codes.tolist() == [2, 0, 1]


#: Values of each kind of column a user's table holds (hypothesis draws rows from them).
_RAW_VALUES = {
    "ints": st.integers(-5, 50),
    "floats": st.one_of(st.none(), st.floats(-1e6, 1e6).map(lambda v: round(v, 3))),
    "text_numbers": st.sampled_from(["1,234.5", " 7 ", "", "NA", "3.25", "-2", "10", "n/a", "abc"]),
    "booleans": st.sampled_from(["True", "false", "", "TRUE"]),
    "categories": st.sampled_from(["A", "b", " c", "", "null", "1"]),
    "mixed": st.sampled_from([1, "x", 2.5, None, "2", True]),
}


@st.composite
def _raw_tables(draw: st.DrawFn) -> tuple[pd.DataFrame, list[int]]:
    n = draw(st.integers(3, 50))
    kinds = draw(st.lists(st.sampled_from(sorted(_RAW_VALUES)), min_size=1, max_size=6))
    frame = pd.DataFrame(
        {
            f"{kind}_{j}": draw(st.lists(_RAW_VALUES[kind], min_size=n, max_size=n))
            for j, kind in enumerate(kinds)
        }
    )
    frame["id"] = [f"c{i}" for i in range(n)]
    frame["target"] = np.where(np.arange(n) % 3 == 0, "yes", "no")
    rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    return frame, rows


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_raw_tables())
def test_property_transform_of_raw_rows_is_the_prepared_matrix(table) -> None:
    """Any table of these column kinds: the preprocessor gives the training matrix from the
    table as it was, as stock pandas reads it back from CSV, and from any rows of it in any
    order (the same rows of the matrix)."""
    frame, rows = table
    try:
        flat = _prepare(frame, target="target", id_column="id")
    except FlatTableError:
        return  # every column dropped: there is no model to feed
    pre = flat.preprocessor
    pd.testing.assert_frame_equal(pre.transform(frame), flat.features)
    read = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    pd.testing.assert_frame_equal(pre.transform(read), flat.features)
    pd.testing.assert_frame_equal(
        pre.transform(frame.iloc[rows]), flat.features.iloc[rows].reset_index(drop=True)
    )
