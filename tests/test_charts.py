"""Charts in the reader's language: every title, legend, axis and tick label of a zh chart is
Chinese (a few proper nouns aside) and of an en chart English, never a code name; and Chinese
renders with the shipped font, not as boxes."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from suitability.explain import charts
from suitability.explain.contributions import Contributions
from suitability.explain.importance import GlobalExplanation
from suitability.explain.reasons import Reason

#: Latin words a Chinese chart may show: proper nouns and the names of measures.
PROPER = {"SHAP", "AUC", "ROC", "AP", "PR", "App"} | {f"{x}{i}" for x in "CR" for i in range(1, 6)}
#: Code names that must never reach a reader (as whole names, case and all).
CODES = (
    "logistic_regression",
    "best_possible",
    "questionnaire_band",
    "recency",
    "risk-level",
    "churn",
    "churned",
    "level_score",
    "n_invest_90d",
    "days_since_invest",
    "q_total_score",
    "channel_preference",
    "share of true class",
    "Sum of",
)
FEATURES = ["n_invest_90d", "days_since_invest", "channel_preference", "q_total_score"]
CHANNELS = ("app", "web", "branch", "advisor", "phone")


def chart_texts(figure: Figure) -> list[str]:
    """Every text a figure shows once drawn: titles, axis labels, ticks, legends, colour bars."""
    with charts.drawing():
        FigureCanvasAgg(figure).draw()
    return [t.get_text() for t in figure.findobj(Text) if t.get_visible() and t.get_text()]


def _flat(texts: list[str], lang: str) -> str:
    """The texts as one line: wrapped labels joined back as each language wraps them."""
    return " ".join(t.replace("\n", "" if lang == "zh" else " ") for t in texts)


def _assert_worded(texts: list[str], lang: str) -> None:
    joined = "\n".join(texts)
    for code in CODES:
        assert not re.search(rf"(?<![\w-]){re.escape(code)}(?![\w-])", joined), (code, joined)
    if lang == "zh":
        assert re.search(r"[\u4e00-\u9fff]", joined)
        latin = set(re.findall(r"[A-Za-z][A-Za-z0-9]+", joined)) - PROPER
        assert not latin, f"English in a Chinese chart: {sorted(latin)}"
    else:
        assert not re.search(r"[\u4e00-\u9fff]", joined), joined


@pytest.fixture(scope="module")
def explanation() -> GlobalExplanation:
    """A global explanation of four catalogue features (one categorical) with made-up SHAP
    values: what the charts draw, without training a model."""
    rng = np.random.default_rng(3)
    n = 300
    data = np.column_stack(
        [
            rng.poisson(3, n).astype(float),
            np.where(rng.random(n) < 0.1, np.nan, rng.exponential(40, n)),
            rng.integers(0, len(CHANNELS), n).astype(float),
            rng.integers(10, 40, n).astype(float),
        ]
    )
    values = np.column_stack(
        [
            -0.2 * data[:, 0],
            0.01 * np.nan_to_num(data[:, 1]),
            0.1 * data[:, 2],
            rng.normal(0, 0.05, n),
        ]
    )[:, None, :]
    mean_abs = np.abs(values[:, 0, :]).mean(axis=0)
    by_feature = pd.DataFrame(
        {
            "feature": FEATURES,
            "source": ["behaviour", "behaviour", "profile", "questionnaire"],
            "mean_abs_shap": mean_abs,
            "share": mean_abs / mean_abs.sum(),
        }
    ).sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    by_feature["rank"] = np.arange(1, 5)
    by_source = by_feature.groupby("source", sort=False)[["mean_abs_shap", "share"]].sum()
    return GlobalExplanation(
        output="churned",
        rows=n,
        by_feature=by_feature,
        by_source=by_source.reset_index(),
        contributions=Contributions(
            values=values,
            base=np.full((n, 1), -1.2),
            feature_names=tuple(FEATURES),
            output_names=("churned",),
            data=data,
        ),
        frame=pd.DataFrame(data, columns=FEATURES),
    )


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_explanation_charts_name_features_by_their_descriptions(explanation, specs, lang):
    figures = charts.explanation_figures(
        explanation, specs, "churn", {"channel_preference": CHANNELS}, lang
    )
    assert set(figures) == {
        "beeswarm.png",
        "by_source.png",
        *(f"dependence_{f}.png" for f in explanation.by_feature["feature"].head(3)),
    }
    for name, figure in figures.items():
        texts = chart_texts(figure)
        _assert_worded(texts, lang)
        if name.startswith("dependence_"):
            feature = name.removeprefix("dependence_").removesuffix(".png")
            described = getattr(specs.features_by_name[feature], lang)
            assert described in _flat(texts, lang), name
    beeswarm = _flat(chart_texts(figures["beeswarm.png"]), lang)
    for feature in FEATURES:
        assert getattr(specs.features_by_name[feature], lang) in beeswarm
    # a categorical feature's codes are shown by their words (`app` -> 手机App)
    channels = " ".join(chart_texts(figures["dependence_channel_preference.png"]))
    assert getattr(specs.behaviour.channels["app"], lang) in channels
    assert ("流失模型" if lang == "zh" else "Churn model") in beeswarm


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_evaluation_charts_word_the_model_its_baselines_and_the_best(lang):
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.02, 0.6, 400)
    y = (rng.uniform(size=400) < truth).astype(int)
    predictions = {
        "model": np.clip(truth + rng.normal(0, 0.1, 400), 0, 1),
        "logistic_regression": np.clip(truth + rng.normal(0, 0.2, 400), 0, 1),
        "recency": rng.uniform(size=400),
        "best_possible": truth,
    }
    figures = charts.evaluation_figures("binary", "churn", ["0", "1"], y, predictions, lang)
    assert set(figures) == {"plots/roc_pr.png", "plots/calibration.png"}
    for figure in figures.values():
        _assert_worded(chart_texts(figure), lang)
    legend = " ".join(chart_texts(figures["plots/roc_pr.png"]))
    for expected in (
        ("逻辑回归基线", "理论最优", "最近投资间隔基线", "本模型")
        if lang == "zh"
        else ("Logistic-regression baseline", "Best possible", "Recency baseline", "This model")
    ):
        assert expected in legend

    proba = rng.dirichlet(np.ones(5), 300)
    levels = np.array([rng.choice(5, p=row) for row in proba])
    classes = ["C1", "C2", "C3", "C4", "C5"]
    figures = charts.evaluation_figures(
        "ordinal", "risk-level", classes, levels, {"model": proba}, lang
    )
    assert set(figures) == {"plots/confusion_matrix.png", "plots/calibration.png"}
    for figure in figures.values():
        _assert_worded(chart_texts(figure), lang)
    title = " ".join(chart_texts(figures["plots/confusion_matrix.png"]))
    assert ("风险等级模型" if lang == "zh" else "Risk-level model") in title


def _reasons() -> list[Reason]:
    return [
        Reason(
            feature="n_invest_90d",
            source="behaviour",
            direction="down",
            contribution=-0.8,
            value=9.0,
            value_text={"zh": "9", "en": "9"},
            description={"zh": "近90天投资次数", "en": "Number of investments in the last 90 days"},
            text={"zh": "", "en": ""},
        )
    ]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_decision_chart_is_in_the_report_language(lang):
    title = "主要因素的贡献" if lang == "zh" else "Contributions of the main factors"
    texts = chart_texts(charts.contribution_figure(_reasons(), lang, title))
    _assert_worded(texts, lang)
    assert ("SHAP 值（对数几率）" if lang == "zh" else "SHAP (log-odds)") in texts


def test_chinese_charts_render_with_the_shipped_font(explanation, specs):
    """No glyph is missing: matplotlib would warn and draw boxes where the font lacks one."""
    figures = {
        **charts.explanation_figures(
            explanation, specs, "risk-level", {"channel_preference": CHANNELS}, "zh"
        ),
        "chart": charts.contribution_figure(_reasons(), "zh", "主要因素的贡献"),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for figure in figures.values():
            assert charts.png(figure, dpi=40).startswith(b"\x89PNG")
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing
