"""The monitoring report, in Chinese or English: the verdict, the drifted features (by their
catalogue descriptions, never their code names), charts of the shifts, prediction drift and
realised performance. A format-neutral `Document`; `explain.render.write_report` writes it as one
self-contained HTML file (font and charts embedded) or a PDF, like every other report."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.patches import Patch

from suitability.explain.charts import bar_labels
from suitability.explain.document import (
    Block,
    Bullets,
    Callout,
    Document,
    Figure,
    KeyValues,
    Paragraph,
    Section,
    Table,
)
from suitability.explain.reasons import SOURCE_LABELS, Lang, category_label
from suitability.explain.render import figure_font
from suitability.explain.reports import sentences
from suitability.explain.terms import term
from suitability.monitoring.drift import Bin, ColumnDrift
from suitability.monitoring.performance import PerformanceCheck
from suitability.monitoring.reference import LEVEL
from suitability.monitoring.result import MonitoringResult
from suitability.monitoring.status import worst
from suitability.specs import Specs

#: Features in the PSI chart, and features whose distributions are drawn.
CHART_FEATURES = 15
DISTRIBUTION_FEATURES = 3
#: Features listed when none drifted (the largest PSI first).
LISTED_WHEN_STABLE = 10

_T: dict[str, tuple[str, str]] = {
    "title": ("模型监控报告", "Model monitoring report"),
    "model": ("模型", "Model"),
    "version": ("版本", "Version"),
    "as_of": ("监控时点", "As of"),
    "generated": ("生成时间", "Generated"),
    "spec_version": ("监控阈值版本", "Thresholds version"),
    "verdict_section": ("结论", "Verdict"),
    "verdict_alert": ("告警：需要处理。", "Alert: action needed."),
    "verdict_warn": (
        "关注：有偏移，暂不需处理。",
        "Warning: shifts to watch, no action needed yet.",
    ),
    "verdict_ok": ("正常：未发现显著偏移。", "OK: no material shift found."),
    "verdict_insufficient": (
        "样本不足：当前数据太少，无法得出结论。",
        "Too few rows: the current data are too few for a verdict.",
    ),
    "verdict_not_logged": (
        "无法比较：训练运行没有记录可比较的数值。",
        "Nothing to compare: the training run logged no values to compare with.",
    ),
    "features_alert": (
        "{n} 个特征的分布偏移达到告警线",
        "{n} {features} shifted past the alert line",
    ),
    "features_warn": (
        "{n} 个特征的分布偏移达到关注线",
        "{n} {features} shifted past the watch line",
    ),
    "predictions_status": ("预测分布：{status}", "Prediction distribution: {status}"),
    "performance_status": ("实际表现：{status}", "Realised performance: {status}"),
    "no_labels": ("标签尚未成熟", "labels not yet matured"),
    "current_rows": ("当前样本数", "Current rows"),
    "reference_rows": ("训练参考样本数", "Reference rows"),
    "reference_source": ("训练参考来源", "Reference taken from"),
    "features_checked": ("检查的特征数", "Features checked"),
    "feature_section": ("特征漂移", "Feature drift"),
    "feature_intro": (
        "每个特征的当前分布与训练时记录的参考分布相比较（参考分布按训练数据的分位数分箱，缺失值单独成箱）。"
        "群体稳定性指数（PSI）不低于 {warn} 为关注，不低于 {alert} 为告警，且须统计检验显著（p < {alpha}）。",
        "Each feature's current distribution is compared with the reference recorded at training "
        "(quantile bins of the training data, missing values in a bin of their own). A "
        "population stability index (PSI) of {warn} or more warns, {alert} or more alerts, "
        "provided the statistical test is significant (p < {alpha}).",
    ),
    "drifted_caption": (
        "发生偏移的特征（按 PSI 从大到小）",
        "Features that shifted (largest PSI first)",
    ),
    "stable_caption": (
        "没有特征达到关注线；以下为 PSI 最大的特征",
        "No feature reached the watch line; the largest PSIs are listed",
    ),
    "feature": ("特征", "Feature"),
    "source": ("来源", "Source"),
    "psi": ("PSI", "PSI"),
    "js": ("JS 距离", "JS distance"),
    "p_value": ("检验 p 值", "Test p-value"),
    "test": ("检验", "Test"),
    "ks": ("KS", "KS"),
    "chi2": ("卡方", "χ²"),
    "ok_or_chance": ("正常，或检验不显著", "ok, or the test not significant"),
    "run": ("训练运行", "Training run"),
    "mean": ("均值（训练 → 当前）", "Mean (training → current)"),
    "status": ("状态", "Status"),
    "psi_chart": ("PSI 最大的特征", "Features with the largest PSI"),
    "psi_axis": ("群体稳定性指数 PSI", "Population stability index (PSI)"),
    "distribution_caption": ("分布对比：{name}", "Distribution: {name}"),
    "share_axis": ("占比", "Share of rows"),
    "reference": ("训练参考", "Training reference"),
    "current": ("当前", "Current"),
    "prediction_section": ("预测漂移", "Prediction drift"),
    "prediction_intro": (
        "模型在当前数据上的预测与其在训练参考数据上的预测相比较：PSI 不低于 {warn} 为关注，不低于 {alert} 为告警。",
        "The model's predictions on the current data against its predictions on the reference "
        "rows: a PSI of {warn} or more warns, {alert} or more alerts.",
    ),
    "prediction": ("预测", "Prediction"),
    "prediction_chart": ("预测分布对比", "Prediction distributions"),
    "probability": ("预测概率", "Predicted probability"),
    "level": ("预测等级", "Predicted category"),
    "expected_level": ("期望等级", "Expected category"),
    "performance_section": ("实际表现", "Realised performance"),
    "performance_none": (
        "自训练以来尚无成熟的标签（流失观察期未满或没有新的风险复核），本次不评估实际表现。",
        "No labels have matured since training (the churn horizon has not passed or there are "
        "no new risk reviews), so realised performance is not assessed this time.",
    ),
    "performance_intro": (
        "在 {rows} 条已成熟的标签上计算的指标，与训练时在测试集上记录的数值相比较。变差超过阈值、且 {level} 置信区间整体落在更差一侧时才关注或告警。",
        "Metrics on {rows} matured labels against the values the training run logged on its "
        "test split. A worsening past a threshold warns or alerts only when the {level} "
        "interval lies wholly on the worse side.",
    ),
    "metric": ("指标", "Metric"),
    "logged": ("训练时测试值", "Logged at training (test)"),
    "realised": ("实际值", "Realised"),
    "interval": ("置信区间", "Interval"),
    "worsening": ("变差", "Worsening"),
    "thresholds": ("关注 / 告警阈值", "Warn / alert at"),
    "method_section": ("方法说明", "Method"),
    "method_reference": (
        "训练参考只保存分箱边界、各箱计数和少数分位数，不保存任何客户记录。",
        "The training reference keeps bin edges, counts per bin and a few quantiles, never a "
        "customer's record.",
    ),
    "method_effect": (
        "是否告警由效应量（PSI）决定：数据量很大时任何微小差异都会显著，检验只用来排除小样本下的偶然波动。",
        "The effect size (PSI) decides: at large volumes every tiny difference is significant, "
        "so the test only rules out chance in small samples.",
    ),
    "method_tests": (
        "数值特征使用分箱后的 Kolmogorov–Smirnov 检验，类别特征使用卡方齐性检验；JS 距离（0 到 1）作为第二个效应量供参考。",
        "Numeric features use a Kolmogorov–Smirnov test on the bins, categorical ones a "
        "chi-square test of homogeneity; the Jensen–Shannon distance (0 to 1) is a second "
        "effect size for reference.",
    ),
    "method_rows": (
        "当前样本少于 {rows} 条时不给出漂移结论；成熟标签少于 {labels} 条时不给出表现结论。",
        "Fewer than {rows} current rows give no drift verdict; fewer than {labels} matured "
        "labels give no performance verdict.",
    ),
    "ok": ("正常", "ok"),
    "warn": ("关注", "warning"),
    "alert": ("告警", "alert"),
    "insufficient": ("样本不足", "too few rows"),
    "not_logged": ("无训练记录", "not logged"),
    "report_only": ("（预期漂移，不告警）", " (expected drift, never alerts)"),
    "missing": ("缺失", "missing"),
    "all_values": ("全部取值", "all values"),
    "unseen": ("训练中未见的类别", "unseen in training"),
}
_TONE = {
    "alert": "danger",
    "warn": "warning",
    "ok": "ok",
    "insufficient": "info",
    "not_logged": "info",
}
_COLOURS = {
    "alert": "#C0392B",
    "warn": "#D68910",
    "ok": "#5D6D7E",
    "insufficient": "#BFC5CC",
    "not_logged": "#BFC5CC",
}
_REFERENCE_COLOUR = "#8FA9C8"
_CURRENT_COLOUR = "#184678"


def t(key: str, lang: Lang) -> str:
    zh, en = _T[key]
    return zh if lang == "zh" else en


def feature_label(name: str, specs: Specs, lang: Lang) -> str:
    """A feature as readers know it: its catalogue description (the name itself for a feature
    outside the catalogue, as a flat-table model's columns are)."""
    info = specs.features_by_name.get(name)
    return getattr(info, lang) if info is not None else name


def _column_label(column: ColumnDrift, prediction: bool, specs: Specs, lang: Lang) -> str:
    return t(column.name, lang) if prediction else feature_label(column.name, specs, lang)


def _source_label(name: str, specs: Specs, lang: Lang) -> str:
    info = specs.features_by_name.get(name)
    source = info.source if info is not None else "other"
    return getattr(SOURCE_LABELS.get(source, SOURCE_LABELS["other"]), lang)


def _status(column: ColumnDrift | None, status: str, lang: Lang) -> str:
    text = t(status, lang)
    if column is not None and column.report_only:
        text += t("report_only", lang)
    return text


def _number(value: float | None) -> str:
    """A value as a reader wants it: thousands separated, three significant digits below."""
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _p_value(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def bin_label(column: str, bin_: Bin, specs: Specs, lang: Lang) -> str:
    """A bin as a chart label: an interval, a value, a category's wording, unseen or missing."""
    match bin_.kind:
        case "missing" | "unseen":
            return t(bin_.kind, lang)
        case "category":
            code = str(bin_.category)
            return code if column == LEVEL else category_label(column, code, specs, lang)
        case "value":
            return _number(bin_.high)
    if bin_.low is None and bin_.high is None:
        return t("all_values", lang)
    if bin_.low is None:
        return f"≤ {_number(bin_.high)}"
    if bin_.high is None:
        return f"> {_number(bin_.low)}"
    # (low, high] written low–high: a comma would clash with the thousands separators.
    return f"{_number(bin_.low)}–{_number(bin_.high)}"


# --- charts --------------------------------------------------------------------------------------


def _png(figure: MplFigure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=150)
    return buffer.getvalue()


def psi_chart(
    columns: Sequence[ColumnDrift], warn: float, alert: float, labels: Sequence[str], lang: Lang
) -> bytes:
    """Horizontal PSI bars of `columns` (coloured by status) with the warn and alert lines."""
    wrapped = bar_labels(labels, lang)
    label_lines = sum(label.count("\n") + 1 for label in wrapped)
    with matplotlib.rc_context({"font.family": [figure_font(), "DejaVu Sans"]}):
        figure = MplFigure(figsize=(7.5, 0.22 * max(label_lines, 3) + 0.2 * len(columns) + 1.2))
        ax = figure.add_subplot()
        y = np.arange(len(columns))[::-1]
        ax.barh(y, [c.psi for c in columns], color=[_COLOURS[c.status] for c in columns])
        ax.set_yticks(y, wrapped, fontsize=7.5)
        thresholds = [
            ax.axvline(
                level, color=_COLOURS[name], linestyle="--", linewidth=1, label=t(name, lang)
            )
            for name, level in (("warn", warn), ("alert", alert))
        ]
        # The bars' colours too: a long grey bar past the lines is a shift the test could not
        # tell from chance (a small sample).
        patches = [
            Patch(color=_COLOURS[status], label=f"PSI: {t(label, lang)}")
            for status, label in (("alert", "alert"), ("warn", "warn"), ("ok", "ok_or_chance"))
        ]
        ax.set_xlabel(t("psi_axis", lang), fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.legend(handles=[*thresholds, *patches], fontsize=7, loc="lower right")
        figure.tight_layout()
        return _png(figure)


def distribution_chart(
    columns: Sequence[ColumnDrift], titles: Sequence[str], specs: Specs, lang: Lang
) -> bytes:
    """Side-by-side bars of each column's reference and current shares per bin (bins that are
    empty on both sides left out), one panel per column."""
    with matplotlib.rc_context({"font.family": [figure_font(), "DejaVu Sans"]}):
        figure = MplFigure(figsize=(7.5, 2.9 * len(columns) + 0.3))
        for i, (column, title) in enumerate(zip(columns, titles, strict=True)):
            ax = figure.add_subplot(len(columns), 1, i + 1)
            reference = np.asarray(column.reference_shares)
            current = np.asarray(column.current_shares)
            used = (reference > 0) | (current > 0)
            x = np.arange(int(used.sum()))
            ax.bar(
                x - 0.2, reference[used], 0.4, color=_REFERENCE_COLOUR, label=t("reference", lang)
            )
            ax.bar(x + 0.2, current[used], 0.4, color=_CURRENT_COLOUR, label=t("current", lang))
            ticks = [
                bin_label(column.name, b, specs, lang)
                for b, keep in zip(column.bins, used, strict=True)
                if keep
            ]
            ax.set_xticks(x, ticks, fontsize=7, rotation=30, ha="right")
            ax.set_ylabel(t("share_axis", lang), fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{title}  (PSI {column.psi:.3f})", fontsize=9)
            ax.legend(fontsize=7)
        figure.tight_layout()
        return _png(figure)


# --- sections ------------------------------------------------------------------------------------


def _verdict_section(result: MonitoringResult, lang: Lang) -> Section:
    counts = result.counts()
    parts = [t(f"verdict_{result.verdict}", lang)]
    for status in ("alert", "warn"):
        if counts[status]:
            n = counts[status]
            features = "feature" if n == 1 else "features"
            parts.append(t(f"features_{status}", lang).format(n=n, features=features))
    prediction_status = worst(c.status for c in result.predictions)
    parts.append(t("predictions_status", lang).format(status=t(prediction_status, lang)))
    performance = result.performance
    parts.append(
        t("performance_status", lang).format(
            status=t(performance.status, lang) if performance is not None else t("no_labels", lang)
        )
    )
    return Section(
        t("verdict_section", lang),
        [
            Callout(sentences(parts, lang), _TONE[result.verdict]),  # type: ignore[arg-type]
            KeyValues(
                [
                    (t("current_rows", lang), f"{result.rows:,}"),
                    (t("reference_rows", lang), f"{result.reference.rows:,}"),
                    *_source_rows(result.reference.source, lang),
                    (t("features_checked", lang), str(len(result.features))),
                ]
            ),
        ],
    )


def _source_rows(source: dict[str, str], lang: Lang) -> list[tuple[str, str]]:
    """Where the reference came from, in the reader's words (`split: test` -> 测试集)."""
    labels = {"run": t("run", lang), "split": t("reference_source", lang)}
    rows = [
        (labels.get(key) or term(key, lang), term(value, lang) if key == "split" else value)
        for key, value in source.items()
    ]
    return rows or [(t("reference_source", lang), "–")]


def _drift_table(
    columns: Sequence[ColumnDrift], prediction: bool, specs: Specs, lang: Lang, caption: str = ""
) -> Table:
    first = [t("prediction", lang)] if prediction else [t("feature", lang), t("source", lang)]
    rows = []
    for i, column in enumerate(columns, 1):
        label = _column_label(column, prediction, specs, lang)
        cells = (
            [label] if prediction else [f"{i}. {label}", _source_label(column.name, specs, lang)]
        )
        mean = (
            f"{_number(column.reference_mean)} → {_number(column.current_mean)}"
            if column.current_mean is not None
            else "–"
        )
        rows.append(
            [
                *cells,
                f"{column.psi:.3f}",
                f"{column.js_distance:.3f}",
                f"{t(column.test, lang)} {_p_value(column.p_value)}",
                mean,
                _status(column, column.status, lang),
            ]
        )
    columns_ = [*first, t("psi", lang), t("js", lang), t("p_value", lang), t("mean", lang)]
    return Table(
        columns=[*columns_, t("status", lang)],
        rows=rows,
        caption=caption,
        numeric=[False] * len(first) + [True, True, True, True, False],
    )


def _feature_section(result: MonitoringResult, specs: Specs, lang: Lang) -> Section:
    settings = result.spec.features
    drifted = result.drifted_features()
    by_psi = sorted(result.features, key=lambda c: c.psi, reverse=True)
    listed = drifted or by_psi[:LISTED_WHEN_STABLE]
    caption = t("drifted_caption" if drifted else "stable_caption", lang)
    charted = by_psi[:CHART_FEATURES]
    blocks: list[Block] = [
        Paragraph(
            t("feature_intro", lang).format(
                warn=settings.psi.warn, alert=settings.psi.alert, alpha=settings.significance
            )
        ),
        _drift_table(listed, False, specs, lang, caption),
        Figure(
            psi_chart(
                charted,
                settings.psi.warn,
                settings.psi.alert,
                [feature_label(c.name, specs, lang) for c in charted],
                lang,
            ),
            caption=t("psi_chart", lang),
            width=0.95,
        ),
    ]
    for column in drifted[:DISTRIBUTION_FEATURES]:
        name = feature_label(column.name, specs, lang)
        blocks.append(
            Figure(
                distribution_chart([column], [name], specs, lang),
                caption=t("distribution_caption", lang).format(name=name),
                width=0.85,
            )
        )
    return Section(t("feature_section", lang), blocks)


def _prediction_section(result: MonitoringResult, specs: Specs, lang: Lang) -> Section:
    settings = result.spec.predictions
    columns = list(result.predictions)
    return Section(
        t("prediction_section", lang),
        [
            Paragraph(
                t("prediction_intro", lang).format(warn=settings.psi.warn, alert=settings.psi.alert)
            ),
            _drift_table(columns, True, specs, lang),
            Figure(
                distribution_chart(columns, [t(c.name, lang) for c in columns], specs, lang),
                caption=t("prediction_chart", lang),
                width=0.85,
            ),
        ],
    )


def _performance_section(
    performance: PerformanceCheck | None, result: MonitoringResult, lang: Lang
) -> Section:
    if performance is None:
        return Section(t("performance_section", lang), [Paragraph(t("performance_none", lang))])
    settings = result.spec.performance
    limits = settings.binary if performance.task == "binary" else settings.ordinal
    rows = []
    for check in performance.checks:
        interval = (
            f"{check.low:.4f} … {check.high:.4f}"
            if check.low is not None and check.high is not None
            else "–"
        )
        rows.append(
            [
                term(check.metric, lang),
                _fixed(check.logged),
                _fixed(check.realised),
                interval,
                "–" if check.worsening is None else f"{check.worsening:+.4f}",
                f"{limits[check.metric].warn:g} / {limits[check.metric].alert:g}",
                _status(None, check.status, lang),
            ]
        )
    return Section(
        t("performance_section", lang),
        [
            Paragraph(
                t("performance_intro", lang).format(
                    rows=f"{performance.rows:,}", level=f"{settings.confidence:.0%}"
                )
            ),
            Table(
                columns=[
                    t("metric", lang),
                    t("logged", lang),
                    t("realised", lang),
                    t("interval", lang),
                    t("worsening", lang),
                    t("thresholds", lang),
                    t("status", lang),
                ],
                rows=rows,
                numeric=[False, True, True, True, True, True, False],
            ),
        ],
    )


def _fixed(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _method_section(result: MonitoringResult, lang: Lang) -> Section:
    spec = result.spec
    return Section(
        t("method_section", lang),
        [
            Bullets(
                [
                    t("method_reference", lang),
                    t("method_effect", lang),
                    t("method_tests", lang),
                    t("method_rows", lang).format(
                        rows=spec.min_rows, labels=spec.performance.min_labels
                    ),
                ]
            )
        ],
    )


def monitoring_report(result: MonitoringResult, specs: Specs, lang: Lang) -> Document:
    """The monitoring report of one run, in `lang`."""
    sections: list[Any] = [
        _verdict_section(result, lang),
        _feature_section(result, specs, lang),
        _prediction_section(result, specs, lang),
        _performance_section(result.performance, result, lang),
        _method_section(result, lang),
    ]
    return Document(
        title=t("title", lang),
        lang=lang,
        subtitle=f"{result.model} v{result.version} · {result.as_of} · {t(result.verdict, lang)}",
        meta=[
            (t("model", lang), result.model),
            (t("version", lang), result.version),
            (t("as_of", lang), result.as_of),
            (t("spec_version", lang), result.spec.version),
            (t("generated", lang), datetime.now(UTC).isoformat(timespec="seconds")),
        ],
        sections=sections,
        footer=f"suitability · {result.model} v{result.version} · {result.spec.version}",
    )
