"""Data contracts: a tiny valid dataset loads from parquet and CSV; every rule has a failing case
that names the table, column, row and rule; errors count every problem, show the first few and
never echo personal data."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suitability.data.contracts import ContractError, MissingTableError, Problem, ProblemLog
from suitability.data.io import TABLE_NAMES, load_table, load_tables
from suitability.data.pii import id_pseudonym
from suitability.settings import get_settings
from suitability.specs import Specs, load_specs

ROOT = Path(__file__).resolve().parents[1]
TS = "datetime64[us]"

# --- a tiny valid dataset (shared with test_io) ---------------------------------------------------


def _ts(values: object) -> pd.Series:
    return pd.Series(pd.to_datetime(values, format="ISO8601")).astype(TS)


def tiny_tables(specs: Specs) -> dict[str, pd.DataFrame]:
    """Three customers and a few rows of every table; every contract holds."""
    customers = pd.DataFrame(
        {
            "customer_id": ["C001", "C002", "C003"],
            "birth_date": _ts(["1980-05-01", "1955-12-31", "1999-01-15"]),
            "gender": ["F", "M", "F"],
            "city_tier": ["T1", "T2", "T4"],
            "income_band": ["I2", "I1", "I5"],
            "registered_at": _ts(
                ["2022-01-03 09:00:00", "2022-02-10 10:30:00", "2023-07-01 08:00:00.250000"]
            ),
            "channel_preference": ["app", "branch", "web"],
            "name": ["张三", "欧阳娜娜", None],
            "id_number": ["110101198005011234", "31010419551231432X", None],
            "phone": ["13812345678", "+86 139-8765-4321", None],
        }
    )
    definition = specs.questionnaires["RQ-2026.1"]
    submissions = [("C001", "2023-01-05 10:00:00"), ("C002", "2023-03-01 11:00:00")]
    questionnaire = pd.DataFrame(
        [
            (cid, definition.version, at, q.id, q.options[i % len(q.options)].id)
            for cid, at in submissions
            for i, q in enumerate(definition.questions)
        ],
        columns=["customer_id", "questionnaire_version", "submitted_at", "question_id", "answer"],
    )
    questionnaire["submitted_at"] = _ts(questionnaire["submitted_at"])
    events = pd.DataFrame(
        {
            "customer_id": ["C001", "C001", "C002", "C002", "C003", "C001"],
            "event_time": _ts(
                [
                    "2023-01-06 08:00:00",
                    "2023-01-06 08:05:00",
                    "2023-02-01 12:00:00",
                    "2023-02-03 12:00:00",
                    "2023-08-01 09:00:00",
                    "2023-09-01 09:00:00",
                ]
            ),
            "event_type": ["login", "deposit", "invest", "redeem", "product_view", "complaint"],
            "amount": [np.nan, 5000.0, 3000.0, 1000.5, np.nan, np.nan],
            "product_id": [None, None, "P001", "P001", "P002", None],
            "product_risk": [None, None, "R2", "R2", "R4", None],
            "term_days": pd.array([None, None, 90, 90, None, None], dtype="Int64"),
            "channel": ["app", "app", "web", "web", "app", "phone"],
            "duration_s": [35.0, np.nan, np.nan, np.nan, 12.5, 300.0],
        }
    )
    tags = pd.DataFrame(
        {
            "customer_id": ["C001", "C002"],
            "interview_time": _ts(["2023-04-01 10:00", "2023-05-02 15:00"]),
            "recorded_at": _ts(["2023-04-01 10:00", "2023-05-03 09:00"]),
            "advisor_id": ["A01", "A02"],
            "tag": ["wealth_growth", "liquidity_need"],
            "note": ["客户手机13812345678，邮箱 zhang.san@example.com", None],
        }
    )
    reviews = pd.DataFrame(
        {
            "customer_id": ["C001", "C002"],
            "reviewed_at": _ts(["2023-06-01", "2023-06-02 14:00"]),
            "confirmed_level": ["C3", "C1"],
        }
    )
    products = pd.DataFrame(
        {
            "product_id": ["P001", "P002"],
            "risk_level": ["R2", "R4"],
            "term_days": pd.array([90, 0], dtype="Int64"),
            "category": ["bond_fund", "equity_fund"],
        }
    )
    return {
        "customers": customers,
        "questionnaire_responses": questionnaire,
        "events": events,
        "interview_tags": tags,
        "risk_reviews": reviews,
        "products": products,
    }


def write_tables(folder: Path, tables: dict[str, pd.DataFrame], fmt: str = "parquet") -> Path:
    """Write each frame as `folder/<table>.<fmt>` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def assert_problem(
    error: ContractError, table: str, column: str | None, row: int | None, rule: str
) -> Problem:
    """The error lists a problem at (table, column, row) whose rule contains `rule`, and its
    message shows it."""
    matches = [
        p
        for p in error.problems
        if p.table == table and p.column == column and p.row == row and rule in p.rule
    ]
    assert matches, f"no {table}.{column} row {row} {rule!r} in:\n{error}"
    where = table if column is None else f"{table}.{column}"
    if row is not None:
        where += f", row {row}"
    assert f"{where}: " in str(error) and rule in str(error)
    return matches[0]


def test_a_value_refused_as_an_identifier_is_not_echoed(tmp_path, specs, tiny):
    tiny["customers"].loc[0, "customer_id"] = "zhang.san@example.com"
    tiny["events"].loc[0, "product_id"] = "王五 13812345678"
    with pytest.raises(ContractError) as caught:
        load_tables(write_tables(tmp_path, tiny), specs)
    assert_problem(caught.value, "events", "product_id", 1, "must be an identifier")
    assert "zhang.san" not in str(caught.value) and "13812345678" not in str(caught.value)


@pytest.fixture
def tiny(specs: Specs) -> dict[str, pd.DataFrame]:
    return tiny_tables(specs)


def _load_error(folder: Path, specs: Specs) -> ContractError:
    with pytest.raises(ContractError) as info:
        load_tables(folder, specs)
    return info.value


# --- valid data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_tiny_valid_dataset_loads_with_canonical_dtypes(tmp_path, specs, tiny, fmt):
    tables = load_tables(write_tables(tmp_path, tiny, fmt), specs)
    assert list(tables) == list(TABLE_NAMES)
    expected_dtype = {"string": "str", "timestamp": TS, "date": TS, "float": "float64"}
    from suitability.data.schema import TABLES

    for name, frame in tables.items():
        assert len(frame) == len(tiny[name])
        assert list(frame.columns) == list(tiny[name].columns)  # declared order
        assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
        for column in TABLES[name].columns:
            if column.name in frame:
                want = expected_dtype.get(column.type, "Int64")
                assert str(frame[column.name].dtype) == want, (name, column.name)
    events = tables["events"]
    pd.testing.assert_series_equal(events["amount"], tiny["events"]["amount"])
    assert events["term_days"].tolist()[2] == 90 and events["term_days"].isna().sum() == 4
    assert tables["customers"]["registered_at"].iloc[2] == pd.Timestamp("2023-07-01 08:00:00.25")


def test_csv_and_parquet_load_the_same_frames(tmp_path, specs, tiny):
    from_parquet = load_tables(write_tables(tmp_path / "pq", tiny), specs)
    from_csv = load_tables(write_tables(tmp_path / "csv", tiny, "csv"), specs)
    for name in TABLE_NAMES:
        pd.testing.assert_frame_equal(from_parquet[name], from_csv[name])


def test_pii_is_masked_on_load(tmp_path, specs, tiny):
    tables = load_tables(write_tables(tmp_path, tiny), specs)
    customers = tables["customers"]
    assert customers["name"].tolist()[:2] == ["张*", "欧阳*"]
    assert customers["id_number"].tolist()[:2] == [
        id_pseudonym("110101198005011234"),
        id_pseudonym("31010419551231432X"),
    ]
    assert customers["phone"].tolist()[:2] == ["138****5678", "139****4321"]
    assert customers[["name", "id_number", "phone"]].iloc[2].isna().all()  # null stays null
    note = tables["interview_tags"]["note"].iloc[0]
    assert "13812345678" not in note and "zhang.san" not in note and "138****5678" in note


def test_optional_columns_may_be_absent(tmp_path, specs, tiny):
    tiny["customers"] = tiny["customers"].drop(columns=["name", "id_number", "phone"])
    tiny["interview_tags"] = tiny["interview_tags"].drop(columns=["note"])
    tables = load_tables(write_tables(tmp_path, tiny), specs)
    assert "phone" not in tables["customers"] and "note" not in tables["interview_tags"]


def test_csv_numbers_stored_as_text_load(tmp_path, specs, tiny):
    folder = write_tables(tmp_path, tiny, "csv")
    text = (folder / "products.csv").read_text()
    # quoted numbers, whitespace and a whole number written as a float are all fine
    (folder / "products.csv").write_text(text.replace(",90,", ',"90",').replace(",0,", ", 0.0 ,"))
    products = load_table(folder, "products", specs)
    assert products["term_days"].tolist() == [90, 0]
    assert str(products["term_days"].dtype) == "Int64"


# --- every rule fails with table, column, row and rule --------------------------------------------

Mutation = Callable[[dict[str, pd.DataFrame]], None]


def _set(table: str, row: int, column: str, value: object) -> Mutation:
    """Set a cell; `row` is the 1-based data row the error must report."""

    def mutate(t: dict[str, pd.DataFrame]) -> None:
        frame = t[table]
        if value is None and frame[column].dtype == object:
            frame[column] = frame[column].astype(object)
        frame.loc[row - 1, column] = value

    return mutate


def _append_copy(table: str, row: int, **changes: object) -> Mutation:
    def mutate(t: dict[str, pd.DataFrame]) -> None:
        extra = t[table].iloc[[row - 1]].assign(**changes)
        t[table] = pd.concat([t[table], extra], ignore_index=True)

    return mutate


def _drop_row(table: str, row: int) -> Mutation:
    def mutate(t: dict[str, pd.DataFrame]) -> None:
        t[table] = t[table].drop(index=row - 1).reset_index(drop=True)

    return mutate


RULE_CASES = [
    # customers
    ("customers", _set("customers", 2, "gender", "X"), "gender", 2, "value not allowed"),
    ("customers", _set("customers", 3, "city_tier", "T9"), "city_tier", 3, "value not allowed"),
    ("customers", _set("customers", 1, "income_band", "I0"), "income_band", 1, "not allowed"),
    ("customers", _set("customers", 2, "channel_preference", "fax"), "channel_preference", 2,
     "value not allowed"),
    ("customers", _set("customers", 2, "customer_id", None), "customer_id", 2, "must not be empty"),
    ("customers", _set("customers", 1, "customer_id", "zhang.san@example.com"), "customer_id", 1,
     "must be an identifier"),
    ("customers", _set("customers", 3, "registered_at", pd.NaT), "registered_at", 3,
     "must not be empty"),
    ("customers", _set("customers", 3, "customer_id", "C001"), "customer_id", 3,
     "customer_id must be unique"),
    ("customers", _set("customers", 2, "birth_date", pd.Timestamp("2022-03-01")), "birth_date", 2,
     "birth_date before registered_at"),
    # questionnaire_responses
    ("questionnaire_responses", _set("questionnaire_responses", 4, "questionnaire_version", "RQ-0"),
     "questionnaire_version", 4, "value not allowed"),
    ("questionnaire_responses", _set("questionnaire_responses", 5, "question_id", "shoe_size"),
     "question_id", 5, "value not allowed"),
    ("questionnaire_responses", _set("questionnaire_responses", 6, "answer", "Z"), "answer", 6,
     "answer is an option of question_id"),
    ("questionnaire_responses", _set("questionnaire_responses", 7, "answer", None), "answer", 7,
     "must not be empty"),
    ("questionnaire_responses", _set("questionnaire_responses", 2, "customer_id", "C999"),
     "customer_id", 2, "customer_id exists in customers"),
    ("questionnaire_responses", _append_copy("questionnaire_responses", 3), "question_id", 25,
     "one row per customer_id, questionnaire_version, submitted_at, question_id"),
    ("questionnaire_responses", _drop_row("questionnaire_responses", 15), "question_id", 13,
     "a submission answers every question of its version"),
    # events
    ("events", _set("events", 1, "event_type", "teleport"), "event_type", 1, "value not allowed"),
    ("events", _set("events", 2, "channel", "fax"), "channel", 2, "value not allowed"),
    ("events", _set("events", 2, "amount", -5.0), "amount", 2, "must be ≥ 0"),
    ("events", _set("events", 3, "term_days", -1), "term_days", 3, "must be ≥ 0"),
    ("events", _set("events", 1, "duration_s", -0.5), "duration_s", 1, "must be ≥ 0"),
    ("events", _set("events", 2, "amount", 2e16), "amount", 2, "must be ≤ 10,000,000,000"),
    ("events", _set("events", 3, "term_days", 10**9), "term_days", 3, "must be ≤ 36,500"),
    ("events", _set("events", 1, "duration_s", 1e7), "duration_s", 1, "must be ≤ 86,400"),
    ("events", _set("events", 4, "product_id", "a@b.cn"), "product_id", 4,
     "must be an identifier"),
    ("events", _set("events", 4, "product_risk", "R9"), "product_risk", 4, "value not allowed"),
    ("events", _set("events", 2, "amount", np.nan), "amount", 2,
     "amount is present for monetary event types"),
    ("events", _set("events", 3, "product_risk", None), "product_risk", 3,
     "product_risk is present for invest events"),
    ("events", _set("events", 5, "customer_id", "C404"), "customer_id", 5,
     "customer_id exists in customers"),
    ("events", _set("events", 6, "event_time", pd.NaT), "event_time", 6, "must not be empty"),
    # interview_tags
    ("interview_tags", _set("interview_tags", 2, "tag", "likes_cats"), "tag", 2,
     "value not allowed"),
    ("interview_tags", _set("interview_tags", 2, "recorded_at", pd.Timestamp("2023-05-01")),
     "recorded_at", 2, "recorded_at >= interview_time"),
    ("interview_tags", _set("interview_tags", 1, "advisor_id", None), "advisor_id", 1,
     "must not be empty"),
    ("interview_tags", _set("interview_tags", 1, "advisor_id", "Li Lei"), "advisor_id", 1,
     "must be an identifier"),
    ("interview_tags", _set("interview_tags", 1, "customer_id", "C404"), "customer_id", 1,
     "customer_id exists in customers"),
    # risk_reviews
    ("risk_reviews", _set("risk_reviews", 2, "confirmed_level", "C9"), "confirmed_level", 2,
     "value not allowed (expected one of: C1, C2, C3, C4, C5)"),
    ("risk_reviews", _set("risk_reviews", 1, "customer_id", "C404"), "customer_id", 1,
     "customer_id exists in customers"),
    # products
    ("products", _set("products", 1, "risk_level", "R0"), "risk_level", 1, "value not allowed"),
    ("products", _set("products", 2, "term_days", -30), "term_days", 2, "must be ≥ 0"),
    ("products", _set("products", 1, "category", "张三"), "category", 1, "must be an identifier"),
    ("products", _set("products", 2, "product_id", "P001"), "product_id", 2,
     "product_id must be unique"),
]  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize(
    ("table", "mutate", "column", "row", "rule"),
    RULE_CASES,
    ids=[f"{c[0]}.{c[2]}:{c[4][:30]}" for c in RULE_CASES],
)
def test_each_rule_names_table_column_row_and_rule(
    tmp_path, specs, tiny, table, mutate, column, row, rule, fmt
):
    mutate(tiny)
    error = _load_error(write_tables(tmp_path, tiny, fmt), specs)
    assert_problem(error, table, column, row, rule)
    # nothing else is reported, except what follows from the broken row: references to a
    # customer whose row broke, or a submission that now lacks the broken answer
    follow_on = ("customer_id exists in customers", "a submission answers every question")
    others = [p for p in error.problems if (p.table, p.column, p.row) != (table, column, row)]
    assert all(p.rule.startswith(follow_on) for p in others), str(error)


def test_duplicate_and_incomplete_submission_say_which_row_and_questions(tmp_path, specs, tiny):
    _set("customers", 3, "customer_id", "C001")(tiny)
    _drop_row("questionnaire_responses", 15)(tiny)  # 3rd question of the 2nd submission
    error = _load_error(write_tables(tmp_path, tiny), specs)
    dup = assert_problem(error, "customers", "customer_id", 3, "customer_id must be unique")
    assert dup.value == "'C001' first at row 1"
    gap = assert_problem(error, "questionnaire_responses", "question_id", 13, "every question")
    assert gap.value == "missing: investable_assets"


def test_question_must_belong_to_its_version(tmp_path, specs, tiny):
    """With two questionnaire versions, a question of one is not an answer to the other."""
    features = tmp_path / "features"
    shutil.copytree(ROOT / "features", features)
    (features / "questionnaires" / "tiny.yaml").write_text(
        "version: TINY-1\ntitle: {zh: 简易问卷, en: Tiny}\nquestions:\n"
        "  - id: pets\n    text: {zh: 宠物, en: Pets}\n    options:\n"
        "      - {id: A, score: 0, zh: 无, en: none}\n      - {id: B, score: 1, zh: 有, en: some}\n"
        "bands:\n  - {level: C1, min: 0, max: 1}\n",
        encoding="utf-8",
    )
    two_versions = load_specs(features)
    _set("questionnaire_responses", 3, "question_id", "pets")(tiny)
    error = _load_error(write_tables(tmp_path / "data", tiny), two_versions)
    assert_problem(
        error, "questionnaire_responses", "question_id", 3, "belongs to questionnaire_version"
    )


# --- parsing ----------------------------------------------------------------------------------


def test_unparseable_csv_values_are_problems_with_rows(tmp_path, specs, tiny):
    folder = write_tables(tmp_path, tiny, "csv")
    events = pd.read_csv(folder / "events.csv", dtype=str, keep_default_na=False)
    events.loc[1, "event_time"] = "2023-13-45 08:00:00"  # shape ok, not a date
    events.loc[3, "event_time"] = "yesterday"
    events.loc[4, "event_time"] = "2023-08-01T09:00:00+08:00"  # time zones are not accepted
    events.loc[2, "amount"] = "3,000"
    events.loc[2, "term_days"] = "90.5"
    events.to_csv(folder / "events.csv", index=False)
    error = _load_error(folder, specs)
    for row in (2, 4, 5):
        problem = assert_problem(error, "events", "event_time", row, "not a valid timestamp")
    assert problem.value == "got '2023-08-01T09:00:00+08:00'"
    assert_problem(error, "events", "amount", 3, "not a number")
    assert_problem(error, "events", "term_days", 3, "not a whole number")
    assert error.total == 5


def test_birth_date_with_a_time_of_day_is_not_a_date(tmp_path, specs, tiny):
    tiny["customers"].loc[0, "birth_date"] = pd.Timestamp("1980-05-01 13:00")
    error = _load_error(write_tables(tmp_path, tiny), specs)
    assert_problem(error, "customers", "birth_date", 1, "not a date (has a time of day)")


def test_wrong_parquet_type_is_one_column_problem(tmp_path, specs, tiny):
    tiny["risk_reviews"]["reviewed_at"] = [True, False]
    error = _load_error(write_tables(tmp_path, tiny), specs)
    assert_problem(error, "risk_reviews", "reviewed_at", None, "wrong type: expected a timestamp")
    assert error.total == 1


def test_time_zone_aware_parquet_timestamps_are_rejected(tmp_path, specs, tiny):
    tiny["risk_reviews"]["reviewed_at"] = tiny["risk_reviews"]["reviewed_at"].dt.tz_localize("UTC")
    error = _load_error(write_tables(tmp_path, tiny), specs)
    assert_problem(error, "risk_reviews", "reviewed_at", None, "expected naive local times")


def test_whole_floats_are_accepted_for_int_columns(tmp_path, specs, tiny):
    tiny["events"]["term_days"] = tiny["events"]["term_days"].astype("float64")  # NaN for NA
    events = load_table(write_tables(tmp_path, tiny), "events", specs)
    assert str(events["term_days"].dtype) == "Int64" and events["term_days"].sum() == 180


# --- the error itself --------------------------------------------------------------------------


def test_missing_column_is_a_clear_problem(tmp_path, specs, tiny):
    tiny["customers"] = tiny["customers"].drop(columns=["gender"])
    error = _load_error(write_tables(tmp_path, tiny), specs)
    assert_problem(error, "customers", "gender", None, "required column is missing")
    assert error.total == 1  # no follow-on null problems for the missing column


def test_missing_table_names_the_table_and_paths(tmp_path, specs, tiny):
    del tiny["risk_reviews"]
    folder = write_tables(tmp_path, tiny)
    with pytest.raises(MissingTableError) as info:
        load_tables(folder, specs)
    message = str(info.value)
    assert "risk_reviews: table not found" in message
    assert str(folder / "risk_reviews.parquet") in message
    assert str(folder / "risk_reviews.csv") in message


def test_many_problems_show_the_first_n_and_count_all(tmp_path, specs, tiny, monkeypatch):
    monkeypatch.setenv("SUITABILITY_MAX_PROBLEMS_SHOWN", "5")
    get_settings.cache_clear()
    try:
        n = 1234
        events = tiny["events"]
        events = events.iloc[np.arange(n) % len(events)].reset_index(drop=True)
        events["channel"] = "fax"
        tiny["events"] = events
        tiny["customers"].loc[2, "gender"] = "?"
        error = _load_error(write_tables(tmp_path, tiny), specs)
        message = str(error)
    finally:
        get_settings.cache_clear()
    assert error.total == n + 1
    assert "1,235 problems" in message
    assert "… and 1,230 more problems" in message
    assert "1,234 × events.channel: value not allowed" in message
    shown = [line for line in message.splitlines() if ", row " in line]
    assert len(shown) == 5
    # sorted by table (declared order) then row
    assert shown[0].startswith("  customers.gender, row 3")
    assert [line.split(", row ")[1].split(":")[0] for line in shown[1:]] == ["1", "2", "3", "4"]


def test_problem_log_keeps_the_first_problems_across_batches():
    log = ProblemLog(keep=3)
    from suitability.data.contracts import Finding

    log.add("events", Finding("channel", "bad", np.array([10, 11, 12, 13])))
    log.add("events", Finding("amount", "neg", np.array([2, 50])))
    log.add("customers", Finding("gender", "bad", np.array([7])))
    error = log.error()
    assert error is not None and error.total == 7
    assert [(p.table, p.row) for p in error.problems] == [
        ("customers", 7),
        ("events", 2),
        ("events", 10),
    ]


def test_pii_values_never_appear_in_errors(tmp_path, specs, tiny):
    customers = tiny["customers"]
    customers.loc[0, "gender"] = "unknown"
    customers["phone"] = customers["phone"].astype(object)
    customers.loc[0, "phone"] = 13812345678  # a number where text belongs: a type problem
    customers["phone"] = customers["phone"].astype(object)
    folder = write_tables(tmp_path, tiny, "csv")
    error = _load_error(folder, specs)
    message = str(error) + repr(error.problems)
    assert "unknown" in message  # ordinary values are shown
    for secret in ("12345678", "5678", "110101", "张三", "欧阳"):
        assert secret not in message


def test_pii_column_of_the_wrong_type_is_reported_without_its_values(tmp_path, specs, tiny):
    tiny["customers"]["id_number"] = [110101198005011234, 310104195512314321, 1]
    error = _load_error(write_tables(tmp_path, tiny), specs)
    assert_problem(error, "customers", "id_number", None, "wrong type: expected text")
    assert "110101198005011234" not in str(error) and "1101" not in str(error)


def test_long_values_are_cut(tmp_path, specs, tiny):
    tiny["products"].loc[0, "risk_level"] = "R" * 200
    error = _load_error(write_tables(tmp_path, tiny), specs)
    value = error.problems[0].value
    assert value is not None and len(value) < 60 and value.endswith("…'")


def test_error_is_a_value_error_with_structured_problems(tmp_path, specs, tiny):
    tiny["products"].loc[0, "risk_level"] = "R0"
    error = _load_error(write_tables(tmp_path, tiny), specs)
    assert isinstance(error, ValueError)
    assert error.problems == [
        Problem("products", "risk_level", 1, error.problems[0].rule, "got 'R0'")
    ]
    assert error.counts == {("products", "risk_level", error.problems[0].rule): 1}


@pytest.mark.parametrize("rows", [0, 1, 5])
def test_canonical_frames_built_column_by_column_equal_arrows_own_conversion(rows):
    """The request path builds canonical frames from arrow arrays column by column; the frame
    must be the one `Table.to_pandas` gives (values, nulls, dtypes, labels, index)."""
    import pyarrow as pa

    from suitability.data import contracts

    rng = np.random.default_rng(rows)
    present = rng.random(rows) < 0.6
    columns = {
        "text": pa.array(
            [f"v{i}" if p else None for i, p in enumerate(present)], pa.large_string()
        ),
        "count": pa.array([i if p else None for i, p in enumerate(present)], pa.int64()),
        "amount": pa.array([i / 3 if p else None for i, p in enumerate(present)], pa.float64()),
        "time": pa.array(
            [1_700_000_000_000_000 + i if p else None for i, p in enumerate(present)],
            pa.timestamp("us"),
        ),
        "blank": pa.nulls(rows, pa.large_string()),
    }
    built = contracts._from_canonical_arrays(columns, 7, rows)
    table = pa.table(columns)
    expected = table.to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype(), pa.large_string(): contracts._STR_DTYPE}.get,
        ignore_metadata=True,
    )
    expected.index = pd.RangeIndex(7, 7 + rows)
    assert built is not None
    pd.testing.assert_frame_equal(built, expected, check_exact=True)
    assert list(built.dtypes) == list(expected.dtypes)
    assert built.columns.dtype == expected.columns.dtype
    built.loc[built.index[:1], "amount"] = -1.0  # the frame owns writable data
    # Types outside the canonical set are left to arrow's conversion.
    assert contracts._from_canonical_arrays({"x": pa.array([1], pa.int32())}, 0, 1) is None


# --- whole-table pre-checks against pandas ------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_whole_table_prechecks_agree_with_pandas_sorted_or_not(seed, specs):
    """`_surely_unique` (neighbours when sorted, hashing otherwise) says "unique" exactly when
    pandas finds no duplicate complete key, on tables sorted, shuffled, with nulls and repeats;
    and `_tuple_in` agrees with a row-by-row membership test."""
    import pyarrow as pa

    from suitability.data import contracts

    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame(
        {
            "customer_id": pd.array([f"C{i:03d}" for i in rng.integers(0, 40, n)], dtype="str"),
            "t": pd.to_datetime(rng.integers(0, 5, n), unit="D").astype("datetime64[us]"),
            "q": pd.array(rng.choice(["a", "b", "c", None], n), dtype="str"),
        }
    )
    key = ["customer_id", "t", "q"]
    for variant in ("sorted", "shuffled", "deduplicated"):
        f = frame.sort_values(key, ignore_index=True) if variant != "shuffled" else frame
        if variant == "deduplicated":
            f = f.drop_duplicates(key, ignore_index=True)
        complete = f.dropna(subset=key)
        expected = not complete.duplicated(key).any()
        assert contracts._surely_unique(f, key) is expected, variant
        encoded = pa.table(
            {c: _arrow(f[c]).dictionary_encode() if c != "t" else _arrow(f[c]) for c in key}
        )
        assert contracts._surely_unique(f, key, encoded) is expected, variant
    allowed = {("C001", "a"), ("C002", "b"), ("C039", "c")}
    parts = [_arrow(frame["customer_id"]), _arrow(frame["q"]).dictionary_encode()]
    got = np.asarray(contracts._tuple_in(parts, allowed))
    want = [(c, q) in allowed for c, q in zip(frame["customer_id"], frame["q"], strict=True)]
    np.testing.assert_array_equal(got, want)


def _arrow(column: pd.Series):
    import pyarrow as pa

    array = pa.array(column, from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
