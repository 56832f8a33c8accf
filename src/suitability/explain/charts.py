"""Charts in the reader's language: every title, legend, axis and tick label is a word from a
catalogue (this module's, `terms`, or the feature catalogue's descriptions), never a code name.

Each chart is drawn from numbers, so a report draws its own in its language from what a model
version logged (its test split, its predictions, its model) rather than reusing the PNGs training
logged; training draws the English ones with the same functions for the MLflow UI. Chinese needs
a CJK font, and this machine may have none: every figure is built and rendered inside
`drawing()`, which uses the Noto Sans SC the package ships (`render.figure_font`).
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from suitability.explain.importance import GlobalExplanation
from suitability.explain.reasons import SOURCE_LABELS, Lang, Reason, category_label
from suitability.explain.render import figure_font, wrap_text
from suitability.explain.terms import term
from suitability.models import plots
from suitability.models.estimators import median_level
from suitability.models.metrics import confusion
from suitability.specs import Specs

#: key -> (zh, en); `{model}` is the model's name in words.
_WORDS: dict[str, tuple[str, str]] = {
    "contribution_axis": ("SHAP 值（对数几率）", "SHAP (log-odds)"),
    "shap_axis": ("SHAP 值（对数几率）", "SHAP value (log-odds)"),
    "shap_axis_level": ("SHAP 值（各分界对数几率之和）", "SHAP value (sum of the cut log-odds)"),
    "feature_value": ("特征取值", "Feature value"),
    "low": ("低", "Low"),
    "high": ("高", "High"),
    "share_axis": ("占比（%）", "Share (%)"),
    "beeswarm_title": ("{model}：测试集样本的 SHAP 值", "{model}: SHAP values, test sample"),
    "source_title": (
        "{model}：各数据来源的平均|SHAP|占比",
        "{model}: share of mean |SHAP| by source",
    ),
    "confusion_title": (
        "{model}：测试集混淆矩阵（预测等级取中位数）",
        "{model}: test confusion matrix (median level)",
    ),
    "level_calibration_title": (
        "{model}：各等级的校准（测试集）",
        "{model}: calibration per level (test)",
    ),
    "roc_pr_title": ("{model}：测试集", "{model}: test"),
    "calibration_title": ("{model}：校准（测试集）", "{model}: calibration (test)"),
}

_PLOT_WORDS: dict[Lang, plots.PlotWords] = {
    "zh": plots.PlotWords(
        predicted="预测等级",
        true="复核等级",
        share_of_true="占该复核等级的比例",
        chance="随机猜测",
        no_curve="{name}（只有一类，无曲线）",
        with_auc="{name}（AUC {value:.3f}）",
        with_ap="{name}（AP {value:.3f}）",
        base_rate="实际发生率 {value:.3f}",
        false_positive_rate="假阳性率",
        true_positive_rate="真阳性率（召回率）",
        roc="ROC 曲线",
        recall="召回率",
        precision="精确率",
        precision_recall="精确率-召回率曲线",
        perfectly_calibrated="完全校准",
        mean_predicted="平均预测概率",
        observed_rate="实际发生率",
    ),
    "en": plots.PlotWords(
        predicted="predicted level",
        true="confirmed level",
        share_of_true="share of the confirmed level",
        chance="chance",
        no_curve="{name} (one class, no curve)",
        with_auc="{name} (AUC {value:.3f})",
        with_ap="{name} (AP {value:.3f})",
        base_rate="base rate {value:.3f}",
        false_positive_rate="false positive rate",
        true_positive_rate="true positive rate (recall)",
        roc="ROC",
        recall="recall",
        precision="precision",
        precision_recall="precision-recall",
        perfectly_calibrated="perfectly calibrated",
        mean_predicted="mean predicted probability",
        observed_rate="observed rate",
    ),
}
#: Width of a wrapped label, in Latin characters (a Chinese one counts two): a bar label, and a
#: feature's description beside a beeswarm or above a dependence plot.
_BAR_WIDTH = {"zh": 32, "en": 34}
_LABEL_WIDTH = 44


def words(key: str, lang: Lang) -> str:
    zh, en = _WORDS[key]
    return zh if lang == "zh" else en


def plot_words(lang: Lang) -> plots.PlotWords:
    """The fixed words of the evaluation figures (`models.plots`) in `lang`."""
    return _PLOT_WORDS[lang]


@contextmanager
def drawing() -> Iterator[None]:
    """Build and render figures inside this: their text uses Noto Sans SC (Chinese, Latin and
    digits alike), whatever fonts the machine has. Tick labels are laid out when a figure is
    drawn, so saving (or logging) a figure belongs inside it too."""
    with matplotlib.rc_context({"font.family": [figure_font(), "DejaVu Sans"]}):
        yield


def png(figure: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes."""
    with drawing():
        FigureCanvasAgg(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def text_width(text: str) -> int:
    """How wide `text` is, in Latin characters: a wide (Chinese) character counts two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def wrap(text: str, width: int) -> str:
    """`text` on lines at most `width` Latin characters wide, broken as each language breaks
    lines (between Chinese characters, at spaces, never inside a Latin word or before a
    closing bracket; `render.wrap_text`)."""
    return wrap_text(text, width, text_width)


def bar_labels(texts: Sequence[str], lang: Lang) -> list[str]:
    """Chart labels for `texts`: numbered as the table beside the chart numbers them, and
    wrapped rather than cut, so two long descriptions that differ near their end stay apart."""
    return [wrap(f"{i}. {text}", _BAR_WIDTH[lang]) for i, text in enumerate(texts, 1)]


def feature_label(name: str, specs: Specs | None, lang: Lang) -> str:
    """A feature as readers know it: its catalogue description (the words reason codes use);
    a feature outside the catalogue (a user's own column) by its name."""
    info = specs.features_by_name.get(name) if specs is not None else None
    return getattr(info, lang) if info is not None else name


# --- the decision report ------------------------------------------------------------------------


def contribution_figure(reasons: Sequence[Reason], lang: Lang, title: str) -> Figure:
    """Horizontal bars of the reasons' contributions (red: pushes up, blue: pushes down)."""
    labels = bar_labels([r.description[lang] for r in reasons], lang)
    lines = sum(label.count("\n") + 1 for label in labels)
    with drawing():
        figure = Figure(figsize=(7.5, 0.3 * max(lines, 2) + 0.35 * len(reasons) + 1.3))
        ax = figure.add_subplot()
        values = [r.contribution for r in reasons]
        y = np.arange(len(reasons))[::-1]
        colors = ["#C0392B" if v > 0 else "#2E86C1" for v in values]
        ax.barh(y, values, color=colors)
        ax.set_yticks(y, labels, fontsize=8)
        ax.axvline(0, color="#555555", linewidth=0.8)
        ax.set_xlabel(words("contribution_axis", lang), fontsize=8)
        ax.set_title(title, fontsize=10)
        figure.tight_layout()
    return figure


# --- evaluation ---------------------------------------------------------------------------------


def evaluation_figures(
    task: str,
    model: str,
    classes: Sequence[str],
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    lang: Lang,
) -> dict[str, Figure]:
    """A version's evaluation charts on its test rows, by artifact path. `y` holds the label
    codes; `predictions` the probabilities of the model (`model`) and, when known, of its
    baselines and the best possible, each named as the metrics name them. Ordinal: the
    confusion matrix of the median level and per-level calibration of the model; binary: ROC
    and precision-recall curves and calibration of every prediction."""
    name = term(model, lang)
    pw = plot_words(lang)
    with drawing():
        if task == "ordinal":
            proba = np.asarray(predictions["model"], dtype=np.float64)
            matrix = confusion(y, median_level(proba), len(classes))
            return {
                "plots/confusion_matrix.png": plots.confusion_matrix_figure(
                    matrix,
                    classes,
                    words("confusion_title", lang).format(model=name),
                    words=pw,
                ),
                "plots/calibration.png": plots.ordinal_calibration_figure(
                    y,
                    proba,
                    classes,
                    words("level_calibration_title", lang).format(model=name),
                    words=pw,
                ),
            }
        curves = {
            term(label, lang): (y, np.asarray(p, dtype=np.float64))
            for label, p in predictions.items()
        }
        return {
            "plots/roc_pr.png": plots.roc_pr_figure(
                curves, words("roc_pr_title", lang).format(model=name), words=pw
            ),
            "plots/calibration.png": plots.calibration_figure(
                curves, words("calibration_title", lang).format(model=name), words=pw
            ),
        }


# --- global explanations ------------------------------------------------------------------------


def explanation_figures(
    explanation: GlobalExplanation,
    specs: Specs | None,
    model: str,
    categories: Mapping[str, Sequence[str]],
    lang: Lang,
) -> dict[str, Figure]:
    """A version's global-explanation charts, by file name under `explanations/`: the beeswarm,
    the share by source, and the dependence of the three most important features (`categories`:
    the model's vocabulary of each categorical feature, to name its codes)."""
    name = term(model, lang)
    with drawing():
        return {
            "beeswarm.png": beeswarm_figure(explanation, specs, name, lang),
            "by_source.png": source_figure(explanation, name, lang),
            **{
                f"dependence_{feature}.png": figure
                for feature, figure in dependence_figures(
                    explanation, specs, categories, lang
                ).items()
            },
        }


def _shap_axis(explanation: GlobalExplanation, lang: Lang) -> str:
    return words("shap_axis_level" if explanation.output == "level_score" else "shap_axis", lang)


def _shap_values(explanation: GlobalExplanation, names: Sequence[str]):  # -> shap.Explanation
    import shap  # heavy; only these charts need it

    values, base = explanation.contributions.of(explanation.output)
    return shap.Explanation(
        values=values,
        base_values=base,
        data=explanation.contributions.data,
        feature_names=list(names),
    )


def beeswarm_figure(
    explanation: GlobalExplanation,
    specs: Specs | None,
    model_name: str,
    lang: Lang,
    max_display: int = 15,
) -> Figure:
    """shap's beeswarm of the sample, one dot per row and feature, coloured by the feature's
    value; the most important `max_display` features, each by its description."""
    import shap

    names = explanation.contributions.feature_names
    labels = [wrap(feature_label(n, specs, lang), _LABEL_WIDTH) for n in names]
    with drawing():
        figure = Figure(figsize=(9, 0.45 * max_display + 1.6))
        ax = figure.add_subplot()
        shap.plots.beeswarm(
            _shap_values(explanation, labels),
            max_display=max_display,
            ax=ax,
            show=False,
            plot_size=None,
            color_bar=False,
            group_remaining_features=False,
        )
        ax.tick_params("y", labelsize=8)
        ax.tick_params("x", labelsize=8)
        ax.set_xlabel(_shap_axis(explanation, lang), fontsize=9)
        ax.set_title(words("beeswarm_title", lang).format(model=model_name), fontsize=10)
        mappable = ScalarMappable(cmap=shap.plots.colors.red_blue)
        mappable.set_array([0, 1])
        bar = figure.colorbar(mappable, ax=ax, ticks=[0, 1], aspect=80)
        bar.set_ticklabels([words("low", lang), words("high", lang)])
        bar.set_label(words("feature_value", lang), fontsize=9, labelpad=0)
        bar.ax.tick_params(labelsize=8, length=0)
        bar.outline.set_visible(False)
        figure.tight_layout()
    return figure


def dependence_figures(
    explanation: GlobalExplanation,
    specs: Specs | None,
    categories: Mapping[str, Sequence[str]],
    lang: Lang,
    top: int = 3,
) -> dict[str, Figure]:
    """shap's dependence (scatter) plot for each of the `top` features: its value against its
    contribution, titled by its description; a categorical feature's codes by their words."""
    import shap

    names = explanation.contributions.feature_names
    shap_values = _shap_values(explanation, names)
    figures = {}
    with drawing():
        for name in explanation.by_feature["feature"].head(top):
            figure = Figure(figsize=(5.5, 3.8))
            ax = figure.add_subplot()
            shap.plots.scatter(shap_values[:, name], ax=ax, show=False, hist=False)
            if name in categories:
                codes = range(len(categories[name]))
                shown = [
                    category_label(name, c, specs, lang) if specs is not None else c
                    for c in categories[name]
                ]
                ax.set_xticks(list(codes), shown)
            ax.tick_params(labelsize=8)
            ax.set_xlabel(words("feature_value", lang), fontsize=9)
            ax.set_ylabel(_shap_axis(explanation, lang), fontsize=9)
            ax.set_title(wrap(feature_label(name, specs, lang), _LABEL_WIDTH), fontsize=10)
            figure.tight_layout()
            figures[name] = figure
    return figures


def source_figure(explanation: GlobalExplanation, model_name: str, lang: Lang) -> Figure:
    """Share of mean |SHAP| per source of facts, as horizontal bars."""
    table = explanation.by_source
    with drawing():
        figure = Figure(figsize=(6, 0.5 * len(table) + 1.2))
        ax = figure.add_subplot()
        y = np.arange(len(table))[::-1]
        ax.barh(y, table["share"].to_numpy() * 100, color="#4C72B0")
        ax.set_yticks(
            y,
            [getattr(SOURCE_LABELS.get(s, SOURCE_LABELS["other"]), lang) for s in table["source"]],
        )
        ax.set_xlabel(words("share_axis", lang))
        ax.set_title(words("source_title", lang).format(model=model_name), fontsize=10)
        for yi, share in zip(y, table["share"], strict=True):
            ax.text(share * 100, yi, f" {share:.0%}", va="center", fontsize=8)
        ax.set_xlim(0, max(100.0, float(table["share"].max()) * 115))
        figure.tight_layout()
    return figure
