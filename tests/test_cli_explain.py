"""`suitability explain` and `suitability report` end to end, on the demo's registered models:
what a data scientist and a compliance officer get, and the clear errors for their mistakes."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pypdfium2 as pdfium
import pytest
from typer.testing import CliRunner

from suitability.cli import app
from suitability.models.spec import load_model_spec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]
runner = CliRunner()


def _run(args: list[str]):
    return runner.invoke(app, args, catch_exceptions=False)


def _ok(args: list[str]) -> str:
    result = _run(args)
    assert result.exit_code == 0, result.output
    return result.output


def _fails(args: list[str], code: int, *needles: str) -> str:
    result = _run(args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture()
def store(demo, monkeypatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(demo / 'mlflow.db').resolve()}")
    return demo


def _pdf_text(path: Path) -> str:
    pdf = pdfium.PdfDocument(path)
    try:
        return "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()


def _raw_pii(demo: Path) -> list[str]:
    customers = pd.read_parquet(demo / "data" / "customers")
    return [
        str(v)
        for column in ("name", "phone", "id_number")
        for v in customers[column].dropna().head(2500)
    ]


def test_demo_writes_both_dossiers_and_a_decision_report_in_both_languages(demo):
    reports = sorted(p.name for p in (demo / "reports").iterdir())
    assert len(reports) == 12
    for stem in ("dossier-risk-level", "dossier-churn"):
        for lang in ("zh", "en"):
            for fmt in ("html", "pdf"):
                assert f"{stem}.{lang}.{fmt}" in reports
    assert sum(name.startswith("decision-") for name in reports) == 4
    logged = {p.name for p in (demo / "mlartifacts").rglob("reports/*")}
    assert set(reports) <= logged  # every report is attached to its model's run


def test_explain_prints_both_models_reasons_and_a_json_record(store, demo):
    customer = sorted((demo / "reports").glob("decision-*.zh.html"))[0].name.split("-")[1]
    output = _ok(
        ["explain", "--data", str(demo / "data"), "--customer", customer, "--lang", "en", "--json"]
    )
    record = _last_json(output)
    risk, churn = record["risk_level"], record["churn"]
    assert risk["predicted_level"] in {"C1", "C2", "C3", "C4", "C5"}
    assert abs(sum(risk["probabilities"].values()) - 1) < 1e-9
    assert 1 <= len(risk["reasons"]) <= 4 and 1 <= len(churn["reasons"]) <= 4
    assert 0 <= churn["p_churn"] <= 1
    assert (
        record["models"]["risk-level"]["version"] == 1
        and record["models"]["churn"]["alias"] == "champion"
    )
    assert len(record["feature_hash"]) == 64 and record["decision"] is None
    assert (
        risk["reasons"][0]["text"]["en"] in " ".join(output.split())
        or "why this category" in output
    )
    for value in _raw_pii(demo):
        assert value not in output


def test_explain_as_of_an_earlier_time_uses_only_what_was_known(store, demo):
    customer = sorted((demo / "reports").glob("decision-*.zh.html"))[0].name.split("-")[1]
    early = _last_json(
        _ok(
            [
                "explain",
                "--data",
                str(demo / "data"),
                "--customer",
                customer,
                "--as-of",
                "2025-06-01",
                "--json",
            ]
        )
    )
    assert early["as_of"] == "2025-06-01T00:00:00"
    for source in early["sources"]:
        assert source["latest"] is None or source["latest"] <= "2025-06-01T00:00:00"


def test_decision_report_renders_chinese_masks_pii_and_is_logged(store, demo, tmp_path):
    customer = sorted((demo / "reports").glob("decision-*.zh.html"))[0].name.split("-")[1]
    products = pd.read_parquet(demo / "data" / "products.parquet")
    r1 = str(products.loc[products["risk_level"] == "R1", "product_id"].iloc[0])
    pdf_path, html_path = tmp_path / "d.pdf", tmp_path / "d.html"
    record = _last_json(
        _ok(
            [
                "report",
                "decision",
                "--data",
                str(demo / "data"),
                "--customer",
                customer,
                "--product",
                r1,
                "--initiated-by",
                "platform",
                "--out",
                str(pdf_path),
                "--json",
            ]
        )
    )
    assert record["decision"]["decision"] in {"allow", "reassess"}  # R1 is within every category
    assert record["artifact"] == "reports/d.pdf"
    text = _pdf_text(pdf_path)
    assert "适当性决定说明" in text and "风险承受能力等级" in text and customer in text
    assert record["rule_version"] in text
    _ok(
        [
            "report",
            "decision",
            "--data",
            str(demo / "data"),
            "--customer",
            customer,
            "--product",
            r1,
            "--out",
            str(html_path),
            "--lang",
            "en",
            "--no-log",
        ]
    )
    html = html_path.read_text(encoding="utf-8")
    HTMLParser().feed(html)
    assert (
        "Suitability decision report" in html and "https://" not in html and "<script" not in html
    )
    for value in _raw_pii(demo):
        assert value not in html and value not in text


def test_model_dossier_has_slices_fairness_explanations_and_history(store, tmp_path):
    path = tmp_path / "risk.html"
    _ok(["report", "model", "risk-level", "--out", str(path), "--lang", "en"])
    html = path.read_text(encoding="utf-8")
    for needle in (
        "Model dossier",
        "Purpose",
        "Data digests",
        "Recall per category",
        "Confusion matrix",
        "Age band",
        "65+",
        "Gender",
        "Preferred channel",
        "Segment",
        "Quadratic weighted kappa (QWK)",
        "Split method",
        "Gaps between groups",
        "Most important features",
        "Planted-driver check",
        "Alias history",
        "Limitations",
        "SR-2026.2",
        "data:image/png;base64,",
    ):
        assert needle in html, needle
    pdf = tmp_path / "churn.pdf"
    _ok(["report", "model", "churn@1", "--out", str(pdf), "--no-log"])
    text = _pdf_text(pdf)
    assert "模型档案" in text and "分人群指标与公平性" in text and "suitability-churn" in text


def _shown_text(path: Path) -> str:
    """A report's text as a reader sees it: no markup, no embedded images or fonts."""
    page = re.sub(r"<style.*?</style>", " ", path.read_text("utf-8"), flags=re.S)
    return re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]+"', "", page))


def _code_names(specs) -> list[str]:
    """Names from the code a Chinese report must word: features, model kinds and baselines,
    planted drivers, product categories, promotion reasons."""
    from suitability.data.synth import PLANTED_DRIVERS

    return [
        *specs.feature_names,
        *(driver for drivers in PLANTED_DRIVERS.values() for driver in drivers),
        *specs.behaviour.product_categories,
        "lightgbm", "logistic_regression", "best_possible", "questionnaire_band", "recency",
        "no champion yet", "higher is better", "champion", "challenger", "elderly", "vulnerable",
    ]  # fmt: skip


def _assert_no_code_names(text: str, names: list[str]) -> None:
    for raw in names:
        end = r"(?!\w)" if raw[-1].isalnum() else ""  # whole names, not parts of others
        assert not re.search(rf"(?<![\w.-]){re.escape(raw)}{end}", text), raw


@pytest.mark.parametrize("model", ["risk-level", "churn"])
def test_the_chinese_dossier_words_every_technical_name(store, tmp_path, model, specs):
    """A compliance officer reading zh sees metrics, baselines, split fields, slices, groups,
    features, planted drivers, the model's description, promotion reasons and charts in
    Chinese, not the code's names."""
    path = tmp_path / f"{model}.zh.html"
    _ok(["report", "model", model, "--out", str(path), "--lang", "zh", "--no-log"])
    text = _shown_text(path)
    _assert_no_code_names(text, _code_names(specs))
    for raw in (
        "roc_auc", "qwk", "accuracy", "log_loss", "ece", "observed_rate", "mean_predicted",
        "calibration_gap", "level_bias", "share_predicted_c4_plus", "logistic_regression",
        "mean_predicted_level", "mean_confirmed_level",
        "questionnaire_band", "recency", "age_band", "embargo_days", "train_rows",
        "dropped_rows", "out_of_time_grouped", "source.path", "effective_from", "plots/",
        "explanations/", "mean |SHAP|", "female", "unknown",
    ):  # fmt: skip
        end = r"(?!\w)" if raw[-1].isalnum() else ""  # whole names, not parts of others
        assert not re.search(rf"(?<![\w.]){re.escape(raw)}{end}", text), raw
    described = load_model_spec(model, specs).description
    assert described.zh in text and described.en not in text
    assert "此前尚无在用版本" in text  # the demo's promotion: no champion before it
    for worded in (
        "切分方法",
        "训练集行数",
        "隔离期（天）",
        "年龄段",
        "性别",
        "女",
        "偏好渠道",
        "生效日期",
    ):
        assert worded in text, worded
    metric = "二次加权 Kappa（QWK）" if model == "risk-level" else "ROC AUC（排序区分能力）"
    assert metric in text


def test_the_chinese_decision_report_words_every_technical_name(store, demo, tmp_path, specs):
    """Product category, models, aliases and the facts' details in Chinese."""
    customer = sorted((demo / "reports").glob("decision-*.zh.html"))[0].name.split("-")[1]
    products = pd.read_parquet(demo / "data" / "products.parquet")
    product = products.iloc[0]
    path = tmp_path / "d.zh.html"
    _ok(
        [
            "report",
            "decision",
            "--data",
            str(demo / "data"),
            "--customer",
            customer,
            "--product",
            str(product["product_id"]),
            "--out",
            str(path),
            "--no-log",
        ]
    )
    text = _shown_text(path)
    _assert_no_code_names(text, [*_code_names(specs), "risk-level", "churn", "365d"])
    category = specs.behaviour.product_categories[product["category"]]
    assert f"（{product['risk_level']}，{category.zh}）" in text
    assert "风险等级模型" in text and "流失模型" in text and "在用版本" in text


def test_dossier_charts_are_drawn_from_what_the_version_logged(store, specs):
    """The dossier redraws its charts in its language from the version's logged numbers:
    the binary model's test predictions beside its baselines' and the best possible, and the
    same SHAP values the run logged."""
    from suitability import tracking
    from suitability.explain.importance import global_explanation

    data = tracking.dossier_data("churn")
    assert data.test_predictions is not None and len(data.test_predictions) == len(data.test)
    assert set(data.test_predictions) == {
        "model",
        "logistic_regression",
        "recency",
        "best_possible",
    }
    proba = data.loaded.model.predict_proba(data.test)
    assert np.allclose(data.test_predictions["model"], proba)
    again = global_explanation(data.loaded.model, data.test, specs)
    logged = pd.DataFrame(data.global_explanation["by_feature"])
    assert list(again.by_feature["feature"]) == list(logged["feature"])
    assert np.allclose(again.by_feature["mean_abs_shap"], logged["mean_abs_shap"])


def test_unworded_names_are_shown_as_they_are():
    from suitability.explain.reports import term

    assert term("roc_auc", "en") == "ROC AUC" and term("train_rows", "zh") == "训练集行数"
    assert term("a_metric_added_later", "zh") == "a_metric_added_later"


def test_batch_explanations_from_the_cli(store, demo, tmp_path):
    out = tmp_path / "explained.parquet"
    record = _last_json(
        _ok(
            [
                "explain",
                "--features",
                str(demo / "churn_training.parquet"),
                "--out",
                str(out),
                "--model",
                "churn",
                "--json",
            ]
        )
    )
    frame = pd.read_parquet(out)
    assert record["rows"] == len(frame) == len(pd.read_parquet(demo / "churn_training.parquet"))
    assert {"customer_id", "as_of", "p_churn", "base_p_churn", "reason_1"} <= set(frame.columns)


def test_user_mistakes_get_messages_not_tracebacks(store, demo, tmp_path):
    data = str(demo / "data")
    _fails(["explain"], 2, "--data")
    _fails(["explain", "--data", data], 2, "--customer")
    _fails(["explain", "--data", data, "--customer", "NOPE"], 2, "'NOPE' is not in")
    _fails(
        ["explain", "--data", data, "--customer", "C0000001", "--risk-model", "risk-level@gold"],
        2,
        "no 'gold' alias",
    )
    _fails(["explain", "--features", str(demo / "churn_training.parquet")], 2, "--out")
    _fails(
        [
            "report",
            "decision",
            "--data",
            data,
            "--customer",
            "C0000001",
            "--product",
            "P99999",
            "--out",
            str(tmp_path / "x.pdf"),
        ],
        2,
        "P99999",
    )
    _fails(["report", "model", "churn", "--out", str(tmp_path / "x.docx")], 2, "x.docx")
    _fails(
        ["report", "model", "nothing", "--out", str(tmp_path / "x.pdf")], 2, "no registered model"
    )
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_arguments_are_checked_before_the_models_load(demo, tmp_path, monkeypatch):
    """A wrong customer, as-of time, product or output path fails on its own message even with
    an empty model store: nothing waits for models to load before saying the argument is wrong."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    data = str(demo / "data")
    customer = ["--data", data, "--customer", "C0000001"]
    _fails(["explain", "--data", data, "--customer", "NOPE"], 2, "'NOPE' is not in")
    _fails(["explain", *customer, "--as-of", "2026-13-45"], 2, "--as-of '2026-13-45'")
    _fails(["explain", *customer, "--as-of", "yesterday"], 2, "--as-of 'yesterday'")
    _fails(["explain", *customer, "--as-of", "2026-03-01T09:30+08:00"], 2, "time zone")
    _fails(["explain", *customer, "--as-of", "1990-01-01"], 2, "before the customer registered")
    decision = ["report", "decision", *customer, "--product", "P00001"]
    _fails([*decision, "--product", "P99999", "--out", str(tmp_path / "r.html")], 2, "P99999")
    folder = tmp_path / "reports.html"
    folder.mkdir()
    _fails([*decision, "--out", str(folder)], 2, "is a folder")
    (tmp_path / "file").write_text("x")
    _fails([*decision, "--out", str(tmp_path / "file" / "r.html")], 2, "cannot write in")
    _fails(["report", "model", "churn", "--out", str(folder)], 2, "is a folder")
    # with valid arguments the models are what is missing
    _fails([*decision, "--out", str(tmp_path / "r.html")], 2, "no registered model")
    assert not (tmp_path / "r.html").exists()
