"""Compliance reports as format-neutral `Document`s, in Chinese or English: the decision report
(one customer, one product, one decision) and the model dossier (one registered model version).
`render.write_report` turns either into a self-contained HTML file or a PDF."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from suitability.data.synth import PLANTED_DRIVERS
from suitability.explain import charts
from suitability.explain.assessment import CustomerCase, ModelRef, SourceUse
from suitability.explain.document import (
    Bullets,
    Callout,
    Document,
    Figure,
    KeyValues,
    Paragraph,
    Section,
    Table,
)
from suitability.explain.fairness import slice_metrics
from suitability.explain.importance import global_explanation
from suitability.explain.reasons import SOURCE_LABELS, Lang, Reason, category_label
from suitability.explain.terms import term
from suitability.models.metrics import greater_is_better
from suitability.models.promotion import GIVEN, reason_text
from suitability.models.rules import ELDERLY, VULNERABLE, RuleTable
from suitability.models.spec import ModelSpec
from suitability.models.train import label_codes
from suitability.specs import Specs

_T: dict[str, tuple[str, str]] = {
    "decision_title": ("适当性决定说明", "Suitability decision report"),
    "dossier_title": ("模型档案", "Model dossier"),
    "customer": ("客户", "Customer"),
    "as_of": ("评估时点", "As of"),
    "generated": ("生成时间", "Generated"),
    "rule_version": ("规则版本", "Rule version"),
    "product": ("产品", "Product"),
    "initiated_by": ("发起方", "Initiated by"),
    "investor": ("投资者主动申请", "the investor"),
    "platform": ("平台推荐", "the platform (recommendation)"),
    "decision": ("决定", "Decision"),
    "allow": ("允许", "Allow"),
    "allow_with_warning": (
        "风险警示后允许（须投资者书面确认）",
        "Allow with warning (investor must confirm in writing)",
    ),
    "deny": ("拒绝", "Deny"),
    "reassess": ("需重新评估", "Re-assess first"),
    "why_decision": ("决定依据", "Why"),
    "warnings": ("风险提示", "Warnings"),
    "notes": ("备注", "Notes"),
    "care_flags": ("特别关注", "Care flags"),
    ELDERLY: ("高龄投资者", "elderly investor"),
    VULNERABLE: ("需特别关注的投资者", "investor needing extra care"),
    "risk_section": ("风险承受能力等级", "Risk category"),
    "stated": ("问卷等级（法定依据）", "Stated by questionnaire (the legal basis)"),
    "predicted": ("模型预测等级", "Predicted by the model"),
    "no_questionnaire": ("无问卷", "no questionnaire"),
    "probabilities": ("各等级概率", "Probability of each category"),
    "expected_level": ("期望等级", "Expected level"),
    "mismatch": ("问卷与预测是否一致", "Stated vs predicted"),
    "none": ("一致", "consistent"),
    "understated": ("问卷低估了风险偏好", "questionnaire understates the appetite"),
    "overstated": ("问卷高估了风险偏好", "questionnaire overstates the appetite"),
    "confidence": ("置信度", "confidence"),
    "flagged": ("已标记", "flagged"),
    "not_flagged": ("未达标记阈值", "below the flagging threshold"),
    "action_understated": ("匹配前应进行风险教育。", "Give risk education before matching."),
    "action_overstated": (
        "在匹配任何高于预测等级的产品前应重新评估。",
        "Re-assess before any product above the predicted category.",
    ),
    "reasons": ("主要原因", "Principal reasons"),
    "reasons_intro": (
        "以下为对模型结果影响最大的因素（最多四项），每项均为模型实际使用的特征；贡献值为对数几率空间的SHAP值。",
        "The factors that moved the model's answer most (at most four), each a feature the model used; contributions are SHAP values in log-odds.",
    ),
    "stated_reasons": (
        "与问卷等级不一致的原因",
        "Why the prediction differs from the questionnaire",
    ),
    "source": ("来源", "Source"),
    "factor": ("因素", "Factor"),
    "value": ("取值", "Value"),
    "direction": ("方向", "Direction"),
    "contribution": ("贡献", "Contribution"),
    "up": ("↑ 推高", "↑ up"),
    "down": ("↓ 拉低", "↓ down"),
    "by_source": ("各来源合计贡献", "Contribution by source"),
    "chart_caption": (
        "主要因素的贡献（SHAP，对数几率）",
        "Contributions of the main factors (SHAP, log-odds)",
    ),
    "churn_section": ("流失风险", "Churn risk"),
    "p_churn": ("未来90天不再投资的概率", "Probability of no investment in the next 90 days"),
    "sources_section": ("使用的数据及其时间", "Facts used and when they became known"),
    "facts": ("条数", "Facts"),
    "latest": ("最近一条的时间", "Latest"),
    "detail": ("说明", "Detail"),
    "questionnaire_detail": ("问卷版本 {detail}", "questionnaire {detail}"),
    "behaviour_detail": ("近{days}天的事件", "events of the last {days} days"),
    "interview_detail": ("访谈次数：{detail}", "interviews: {detail}"),
    "models_section": ("模型与规则", "Models and rules"),
    "model": ("模型", "Model"),
    "registered": ("注册名", "Registered name"),
    "version": ("版本", "Version"),
    "alias": ("别名", "Alias"),
    "run": ("MLflow 运行", "MLflow run"),
    "feature_hash": ("特征向量哈希", "Feature-vector hash"),
    "method": (
        "说明：模型不会降低法定门槛，只能增加风险提示、触发重新评估或阻止主动推荐。",
        "The model never lowers the legal bar: it can only add warnings, trigger a re-assessment or block active recommendations.",
    ),
    "signature": (
        "合规审核人签字：__________    日期：__________",
        "Compliance officer: __________    Date: __________",
    ),
    "confirmation": ("需投资者书面确认", "Investor's written confirmation required"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    # dossier
    "purpose": ("用途", "Purpose"),
    "intended_use": ("适用范围", "Intended use"),
    "identity": ("版本信息", "Version"),
    "created": ("注册时间", "Registered"),
    "aliases": ("当前别名", "Current aliases"),
    "git": ("代码版本", "Code commit"),
    "package": ("工具包版本", "suitability"),
    "data_section": ("数据与时点", "Data and point-in-time cutoffs"),
    "digests": ("数据摘要（sha256）", "Data digests (sha256)"),
    "split": ("切分", "Split"),
    "metrics_section": ("整体指标", "Overall metrics"),
    "metric": ("指标", "Metric"),
    "model_col": ("模型", "Model"),
    "best": ("理论最优", "Best possible"),
    "ratio": ("模型/最优", "Model / best"),
    "per_class": ("各等级召回率", "Recall per category"),
    "confusion": (
        "混淆矩阵（行：复核等级，列：预测等级）",
        "Confusion matrix (rows: confirmed, columns: predicted)",
    ),
    "calibration": ("校准", "Calibration"),
    "before_calibration": ("校准前", "Before calibration"),
    "after": ("校准后", "After"),
    "ordinal_calibration": (
        "概率校准（在验证集上拟合的累积 logit 模型）：预测等级不变，只调整各等级的概率",
        "Probability calibration (a cumulative-logit model fitted on the validation split): "
        "the predicted levels are unchanged, only the level probabilities",
    ),
    "slices_section": ("分人群指标与公平性", "Metrics by slice and fairness"),
    "gaps": ("人群间差距（样本≥30的组）", "Gaps between groups (groups of 30 or more)"),
    "group": ("组", "Group"),
    "dimension": ("维度", "Dimension"),
    "gap": ("差距", "Gap"),
    "lowest": ("最低", "Lowest"),
    "highest": ("最高", "Highest"),
    "global_section": ("全局解释", "Global explanations"),
    "top_features": ("最重要的特征（平均|SHAP|）", "Most important features (mean |SHAP|)"),
    "share": ("占比", "Share"),
    "rank": ("排名", "Rank"),
    "planted_section": ("合成数据驱动因素检查", "Planted-driver check (synthetic data)"),
    "dependence": ("SHAP 依赖图：{feature}", "SHAP dependence: {feature}"),
    "driver": ("驱动因素", "Driver"),
    "best_feature": ("排名最高的特征", "Best-ranked feature"),
    "passed": ("通过", "Passed"),
    "history_section": ("别名变更历史", "Alias history"),
    "when": ("时间", "When"),
    "from_to": ("版本变化", "Version change"),
    "promoted": ("是否晋升", "Promoted"),
    "by": ("操作人", "By"),
    "reason": ("理由", "Reason"),
    "rules_section": ("适当性规则表", "Suitability rule table"),
    "limitations": ("局限性", "Limitations"),
    "no_history": ("尚无晋升记录。", "No promotion decisions yet."),
    "not_logged": ("该版本的运行未记录此项。", "The version's run did not log this."),
}

_DECISION_TONE = {
    "allow": "ok",
    "allow_with_warning": "warning",
    "deny": "danger",
    "reassess": "warning",
}


def t(key: str, lang: Lang) -> str:
    zh, en = _T[key]
    return zh if lang == "zh" else en


def _figure_caption(path: str, specs: Specs, lang: Lang) -> str:
    """A logged chart's caption: its term, or for a dependence plot the feature's description."""
    stem = path.rsplit("/", 1)[-1].removesuffix(".png")
    if stem.startswith("dependence_"):
        described = charts.feature_label(stem.removeprefix("dependence_"), specs, lang)
        return t("dependence", lang).format(feature=described)
    return term(path, lang)


def _group(dimension: str, group: Any, specs: Specs, lang: Lang) -> str:
    """A slice's group in words (`gender` `F` -> 女 / female; `unknown` -> 未知)."""
    text = str(group)
    if text == "unknown":
        return term(text, lang)
    return category_label(dimension, text, specs, lang)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _reason_table(reasons: Sequence[Reason], lang: Lang) -> Table:
    return Table(
        columns=[
            "#",
            t("source", lang),
            t("factor", lang),
            t("value", lang),
            t("direction", lang),
            t("contribution", lang),
        ],
        rows=[
            [
                str(i),
                getattr(SOURCE_LABELS.get(r.source, SOURCE_LABELS["other"]), lang),
                r.description[lang],
                r.value_text[lang],
                t(r.direction, lang),
                f"{r.contribution:+.3f}",
            ]
            for i, r in enumerate(reasons, 1)
        ],
        numeric=[True, False, False, False, False, True],
    )


def _source_table(by_source: Mapping[str, float], lang: Lang) -> Table:
    return Table(
        columns=[t("source", lang), t("contribution", lang)],
        rows=[
            [getattr(SOURCE_LABELS.get(s, SOURCE_LABELS["other"]), lang), f"{v:+.3f}"]
            for s, v in by_source.items()
        ],
        caption=t("by_source", lang),
        numeric=[False, True],
    )


def _source_detail(source: SourceUse, lang: Lang) -> str:
    """What a source's detail says, in words: the questionnaire's version, the events' window
    (`365d`), the number of interviews."""
    if not source.detail:
        return ""
    if source.source == "behaviour" and source.detail.endswith("d"):
        return t("behaviour_detail", lang).format(days=source.detail.removesuffix("d"))
    if source.source in ("questionnaire", "interview"):
        return t(f"{source.source}_detail", lang).format(detail=source.detail)
    return source.detail


def _model_table(models: Mapping[str, ModelRef], lang: Lang) -> Table:
    return Table(
        columns=[
            t("model", lang),
            t("registered", lang),
            t("version", lang),
            t("alias", lang),
            t("run", lang),
        ],
        rows=[
            [
                term(key, lang),
                ref.name,
                str(ref.version or "–"),
                term(ref.alias, lang) if ref.alias else "–",
                ref.run_id or "–",
            ]
            for key, ref in models.items()
        ],
    )


def _mismatch_text(case: CustomerCase, lang: Lang) -> str:
    m = case.mismatch
    if m.direction == "none":
        return t("none", lang)
    flag = t("flagged", lang) if m.flagged else t("not_flagged", lang)
    text = f"{t(m.direction, lang)}（{t('confidence', lang)} {m.confidence:.0%}，{flag}）"
    if lang == "en":
        text = f"{t(m.direction, lang)} ({t('confidence', lang)} {m.confidence:.0%}, {flag})"
    if m.flagged:
        return sentences([text, t(f"action_{m.direction}", lang)], lang)
    return text


def _listed(items: Sequence[str], lang: Lang) -> str:
    """Items in a row, as each language lists them (甲、乙 / a, b)."""
    return ("、" if lang == "zh" else ", ").join(items)


def sentences(parts: Sequence[str], lang: Lang) -> str:
    """Text parts as sentences: each ended with a full stop unless it ends with one already
    (。！？ in Chinese, . ! ? in English), joined as each language writes them."""
    stops, stop, space = ("。！？", "。", "") if lang == "zh" else (".!?", ".", " ")
    done = []
    for part in (p.strip() for p in parts):
        if part:
            done.append(part if part[-1] in stops else part + stop)
    return space.join(done)


def decision_report(case: CustomerCase, specs: Specs, lang: Lang) -> Document:
    """The decision report: who, when, what was decided and why, from which facts and models."""
    if case.decision is None or case.product is None:
        raise ValueError("a decision report needs a product and its decision")
    decision, product, risk, churn = case.decision, case.product, case.risk, case.churn
    customer = "  ".join(f"{v}" for v in case.customer.values())
    about = [product.risk_level]
    if product.category:
        about.append(category_label("product_category", product.category, specs, lang))
    meta = [
        (t("customer", lang), customer),
        (t("as_of", lang), case.as_of),
        (
            t("product", lang),
            f"{product.product_id}（{'，'.join(about)}）"
            if lang == "zh"
            else f"{product.product_id} ({', '.join(about)})",
        ),
        (t("initiated_by", lang), t(case.initiated_by or "investor", lang)),
        (t("rule_version", lang), case.rule_version),
        (t("generated", lang), _now()),
    ]
    decision_blocks: list[Any] = [
        Callout(
            f"{t('decision', lang)}：{t(decision.decision, lang)}"
            if lang == "zh"
            else f"{t('decision', lang)}: {t(decision.decision, lang)}",
            _DECISION_TONE[decision.decision],
        ),
        Bullets([getattr(r, lang) for r in decision.reasons]),
    ]
    if decision.confirmation_required:
        decision_blocks.append(Callout(t("confirmation", lang), "warning"))
    for warning in decision.warnings:
        decision_blocks.append(Callout(getattr(warning, lang), "warning"))
    if decision.care_flags:
        flags = _listed([t(f, lang) for f in decision.care_flags], lang)
        decision_blocks.append(KeyValues([(t("care_flags", lang), flags)]))
    if decision.notes:
        decision_blocks.append(Bullets([getattr(n, lang) for n in decision.notes]))
    decision_blocks.append(Paragraph(t("method", lang)))

    probabilities = Table(
        columns=list(risk.probabilities),
        rows=[[f"{p:.0%}" for p in risk.probabilities.values()]],
        caption=t("probabilities", lang),
        numeric=[True] * len(risk.probabilities),
    )
    risk_blocks: list[Any] = [
        KeyValues(
            [
                (t("stated", lang), risk.stated_level or t("no_questionnaire", lang)),
                (t("predicted", lang), risk.predicted_level),
                (t("expected_level", lang), f"{risk.expected_level:.2f}"),
                (t("mismatch", lang), _mismatch_text(case, lang)),
            ]
        ),
        probabilities,
    ]
    sections = [
        Section(t("decision", lang), decision_blocks),
        Section(t("risk_section", lang), risk_blocks),
        Section(
            f"{t('reasons', lang)} — {t('risk_section', lang)}",
            [
                Paragraph(t("reasons_intro", lang)),
                _reason_table(risk.reasons, lang),
                Figure(
                    charts.png(
                        charts.contribution_figure(risk.reasons, lang, t("chart_caption", lang))
                    ),
                    caption=t("chart_caption", lang),
                    width=0.9,
                ),
                Bullets([r.text[lang] for r in risk.reasons]),
                _source_table(risk.by_source, lang),
            ],
        ),
    ]
    if risk.stated_reasons:
        sections.append(
            Section(
                t("stated_reasons", lang),
                [
                    _reason_table(risk.stated_reasons, lang),
                    Bullets([r.text[lang] for r in risk.stated_reasons]),
                ],
            )
        )
    sections += [
        Section(
            t("churn_section", lang),
            [
                KeyValues([(t("p_churn", lang), f"{churn.p_churn:.1%}")]),
                _reason_table(churn.reasons, lang),
                Bullets([r.text[lang] for r in churn.reasons]),
            ],
        ),
        Section(
            t("sources_section", lang),
            [
                Table(
                    columns=[
                        t("source", lang),
                        t("facts", lang),
                        t("latest", lang),
                        t("detail", lang),
                    ],
                    rows=[
                        [
                            getattr(SOURCE_LABELS.get(s.source, SOURCE_LABELS["other"]), lang),
                            str(s.facts),
                            s.latest or "–",
                            _source_detail(s, lang),
                        ]
                        for s in case.sources
                    ],
                    numeric=[False, True, False, False],
                )
            ],
        ),
        Section(
            t("models_section", lang),
            [
                _model_table(case.models, lang),
                KeyValues(
                    [
                        (t("rule_version", lang), case.rule_version),
                        (t("feature_hash", lang), case.feature_hash),
                    ]
                ),
                Paragraph(t("signature", lang)),
            ],
        ),
    ]
    return Document(
        title=t("decision_title", lang),
        lang=lang,
        subtitle=f"{case.customer.get('customer_id', '')} · {product.product_id} · {t(decision.decision, lang)}",
        meta=meta,
        sections=sections,
        footer=f"suitability · {case.rule_version}",
    )


# --- model dossier ---------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _frame_table(
    frame: pd.DataFrame, columns: Mapping[str, str], digits: int = 3, caption: str = ""
) -> Table:
    keys = list(columns)
    numeric = [pd.api.types.is_numeric_dtype(frame[k]) for k in keys]
    return Table(
        columns=[columns[k] for k in keys],
        rows=[
            [_fmt(row[k], digits) if isinstance(row[k], float) else _fmt(row[k]) for k in keys]
            for _, row in frame.iterrows()
        ],
        numeric=numeric,
        caption=caption,
    )


def _metric_rows(metrics: Mapping[str, float], names: Sequence[str], lang: Lang) -> list[list[str]]:
    baselines = sorted(
        {
            k.removeprefix("baseline_").split("_test_")[0]
            for k in metrics
            if k.startswith("baseline_")
        }
    )
    rows = []
    for name in names:
        row = [term(name, lang), _fmt(metrics.get(f"test_{name}"))]
        row += [_fmt(metrics.get(f"baseline_{b}_test_{name}")) for b in baselines]
        row += [
            _fmt(metrics.get(f"best_possible_test_{name}")),
            _fmt(metrics.get(f"ratio_to_best_{name}"), 3),
        ]
        rows.append(row)
    return rows


#: A flat-table model's kind, as the dossier names it (zh, en).
_TABLE_KIND = {
    "lightgbm": ("LightGBM 模型", "LightGBM model"),
    "logistic_regression": ("正则化逻辑回归模型", "regularised logistic regression"),
}


def _aliases(aliases: Sequence[str], lang: Lang) -> str:
    """A version's aliases in words (`champion` -> 在用版本); an alias of a user's own as it is."""
    return _listed([term(a, lang) for a in aliases], lang) or "–"


def _promotion_reason(entry: Mapping[str, Any], lang: Lang) -> str:
    """Why a promotion decision was taken, in the report's language; a person's own reason
    (`promote --reason`) as they wrote it."""
    code = entry.get("reason_code") or GIVEN
    if code == GIVEN:
        return str(entry.get("reason", ""))
    return reason_text(
        code,
        lang,
        metric=term(entry["metric"], lang),
        challenger=entry["challenger_value"],
        champion=entry["champion_value"],
        higher=greater_is_better(entry["metric"]),
    )


def _test_predictions(
    data: Any, predictions: pd.DataFrame, classes: Sequence[str]
) -> dict[str, np.ndarray]:
    """The probabilities a version's evaluation charts are drawn from: the logged ones of the
    model, its baselines and the best possible (binary), else the model's own on the test rows."""
    if data.test_predictions is not None and len(data.test_predictions) == len(data.test):
        return {c: data.test_predictions[c].to_numpy() for c in data.test_predictions.columns}
    if data.labels["task"] == "ordinal":
        return {"model": predictions[[f"p_{c}" for c in classes]].to_numpy()}
    return {"model": predictions.iloc[:, 0].to_numpy()}


def model_dossier(
    data: Any,  # tracking.DossierData (typed loosely: this module never imports mlflow)
    spec: ModelSpec,
    specs: Specs,
    rules: RuleTable,
    lang: Lang,
) -> Document:
    """The model dossier: purpose, data and cutoffs, metrics overall / per class / per slice,
    fairness gaps, calibration, confusion matrix, global explanations, the planted-driver check,
    alias history, the rule-table version and limitations."""
    ref = data.loaded.ref
    model = data.loaded.model
    labels = data.labels
    task = labels["task"]
    classes = list(labels["classes"])
    sections: list[Section] = []

    intro: list[Any] = []
    # A model trained on a user's table (`train --table`) is not the platform model its spec
    # describes: its own kind and target instead of the spec's purpose, use and limitations.
    on_table = data.tags.get("suitability.mode") == "table"
    described = getattr(spec.description, lang) if spec.description else data.description
    if on_table:
        kind = data.params.get("model_kind", "lightgbm")
        names = _TABLE_KIND.get(kind, (kind, kind))
        finalised = data.params.get("finalize") == "True"
        described = (
            f"在用户提供的表上训练的{names[0]}（目标列 {labels['label']}）"
            + ("，以训练集与验证集重新训练" if finalised else "")
            + "；不用于在线服务。"
            if lang == "zh"
            else f"A {names[1]} trained on a user's table (target "
            f"{labels['label']})"
            + (", finalised on train + validation" if finalised else "")
            + "; not served."
        )
    if spec.dossier is not None and not on_table:
        intro += [
            KeyValues(
                [
                    (t("purpose", lang), getattr(spec.dossier.purpose, lang)),
                    (t("intended_use", lang), getattr(spec.dossier.intended_use, lang)),
                ]
            )
        ]
    intro.append(
        KeyValues(
            [
                (t("registered", lang), ref.name),
                (t("version", lang), str(ref.version)),
                (t("aliases", lang), _aliases(data.aliases, lang)),
                (t("created", lang), data.created or "–"),
                (t("run", lang), ref.run_id or "–"),
                (t("git", lang), data.tags.get("suitability.git_commit", "–")),
                (t("package", lang), data.tags.get("suitability.version", "–")),
                (term("spec", lang), described),
            ]
        )
    )
    sections.append(Section(t("identity", lang), intro))

    p = data.params
    split_rows = [  # in the order the split wrote them: method, cutoffs, then each part
        (term(k, lang), term(v, lang) if k == "method" else str(v)) for k, v in data.split.items()
    ]
    sections.append(
        Section(
            t("data_section", lang),
            [
                KeyValues(
                    [
                        (term(k, lang), term(v, lang) if k == "source.mode" else v)
                        for k, v in sorted(p.items())
                        if k.startswith("source.")
                    ]
                ),
                Table(
                    columns=[t("split", lang), "sha256"],
                    rows=[
                        [term(k.removeprefix("digest."), lang), v]
                        for k, v in sorted(p.items())
                        if k.startswith("digest.")
                    ],
                    caption=t("digests", lang),
                ),
                KeyValues(split_rows),
            ],
        )
    )

    names = (
        ["qwk", "accuracy", "macro_f1", "within_one_accuracy", "log_loss", "ece"]
        if task == "ordinal"
        else ["roc_auc", "pr_auc", "brier", "top_decile_lift", "log_loss", "ece", "base_rate"]
    )
    baselines = sorted(
        {
            k.removeprefix("baseline_").split("_test_")[0]
            for k in data.metrics
            if k.startswith("baseline_")
        }
    )
    metric_blocks: list[Any] = [
        Table(
            columns=[
                t("metric", lang),
                t("model_col", lang),
                *(term(b, lang) for b in baselines),
                t("best", lang),
                t("ratio", lang),
            ],
            rows=_metric_rows(data.metrics, names, lang),
            numeric=[False] + [True] * (3 + len(baselines)),
        )
    ]
    if task == "ordinal":
        metric_blocks.append(
            Table(
                columns=classes,
                rows=[[_fmt(data.metrics.get(f"test_recall_{c}"), 3) for c in classes]],
                caption=t("per_class", lang),
                numeric=[True] * len(classes),
            )
        )
        calibrated = data.artifacts.get("evaluation/calibration.json")
        if calibrated:
            before, after = calibrated["test_before"], calibrated["test_after"]
            shown = [k for k in ("log_loss", "ece", "brier", "qwk") if k in before and k in after]
            metric_blocks.append(
                Table(
                    columns=[t("metric", lang), t("before_calibration", lang), t("after", lang)],
                    rows=[[term(k, lang), _fmt(before[k], 4), _fmt(after[k], 4)] for k in shown],
                    caption=t("ordinal_calibration", lang),
                    numeric=[False, True, True],
                )
            )
        matrix = data.artifacts.get("evaluation/confusion_matrix.json")
        if matrix:
            metric_blocks.append(
                Table(
                    columns=["", *matrix["labels"]],
                    rows=[
                        [c, *map(str, row)]
                        for c, row in zip(
                            matrix["labels"], matrix["rows_true_columns_predicted"], strict=True
                        )
                    ],
                    caption=t("confusion", lang),
                    numeric=[False] + [True] * len(matrix["labels"]),
                )
            )
    else:
        curves = data.artifacts.get("evaluation/calibration_curves.json", {}).get("model")
        if curves:
            frame = pd.DataFrame(curves)
            metric_blocks.append(
                Table(
                    columns=[term(c, lang) for c in frame.columns],
                    rows=[
                        [_fmt(v, 3) if isinstance(v, float) else str(v) for v in row]
                        for row in frame.itertuples(index=False)
                    ],
                    caption=t("calibration", lang),
                    numeric=[True] * len(frame.columns),
                )
            )
    predictions = model.predict_frame(data.test)
    y = label_codes(data.test[labels["label"]], classes, labels["label"])
    figures = charts.evaluation_figures(
        task, spec.name, classes, y, _test_predictions(data, predictions, classes), lang
    )
    for path in ("plots/confusion_matrix.png", "plots/roc_pr.png", "plots/calibration.png"):
        if path in figures:
            metric_blocks.append(
                Figure(
                    charts.png(figures[path]),
                    caption=_figure_caption(path, specs, lang),
                    width=0.75,
                )
            )
    sections.append(Section(t("metrics_section", lang), metric_blocks))

    report = slice_metrics(
        data.test, predictions, labels["label"], task, classes, rules.elderly_age
    )
    groups = report.groups.copy()
    groups["group"] = [
        _group(d, g, specs, lang) for d, g in zip(groups["dimension"], groups["group"], strict=True)
    ]
    groups["dimension"] = [term(d, lang) for d in groups["dimension"]]
    group_columns = {
        "dimension": t("dimension", lang),
        "group": t("group", lang),
        "n": term("n", lang),
    }
    group_columns |= {c: term(c, lang) for c in groups.columns if c not in group_columns}
    gaps = report.gaps.copy()
    for end in ("lowest", "highest"):
        gaps[end] = [
            f"{_group(d, g, specs, lang)} ({v:.3f})"
            for d, g, v in zip(
                gaps["dimension"], gaps[f"{end}_group"], gaps[f"{end}_value"], strict=True
            )
        ]
    gaps["dimension"] = [term(d, lang) for d in gaps["dimension"]]
    gaps["metric"] = [term(m, lang) for m in gaps["metric"]]
    sections.append(
        Section(
            t("slices_section", lang),
            [
                _frame_table(groups, group_columns),
                Paragraph(t("gaps", lang)),
                _frame_table(
                    gaps,
                    {
                        "dimension": t("dimension", lang),
                        "metric": t("metric", lang),
                        "gap": t("gap", lang),
                        "lowest": t("lowest", lang),
                        "highest": t("highest", lang),
                    },
                ),
            ],
        )
    )

    global_blocks: list[Any] = []
    if data.global_explanation:
        by_source = pd.DataFrame(data.global_explanation["by_source"])
        by_source["source"] = [
            getattr(SOURCE_LABELS.get(s, SOURCE_LABELS["other"]), lang) for s in by_source["source"]
        ]
        global_blocks.append(
            _frame_table(
                by_source,
                {
                    "source": t("source", lang),
                    "mean_abs_shap": term("mean_abs_shap", lang),
                    "share": t("share", lang),
                },
            )
        )
        top = pd.DataFrame(data.global_explanation["by_feature"]).head(15)
        top["description"] = [charts.feature_label(n, specs, lang) for n in top["feature"]]
        # Chinese readers get the description alone; English ones keep the feature's name
        # beside it, as before, for finding it in the code and the catalogue.
        columns = {"rank": t("rank", lang), "description": t("factor", lang)}
        if lang == "en":
            columns = {"rank": t("rank", lang), "feature": t("factor", lang), "description": ""}
        global_blocks.append(
            _frame_table(
                top,
                {
                    **columns,
                    "mean_abs_shap": term("mean_abs_shap", lang),
                    "share": t("share", lang),
                },
                caption=t("top_features", lang),
            )
        )
        # Drawn again in the report's language from the version's test rows: the same seeded
        # sample and values as the logged explanation.
        explanation = global_explanation(model, data.test, specs)
        categories = model.layout.categories
        for path, figure in sorted(
            charts.explanation_figures(explanation, specs, spec.name, categories, lang).items()
        ):
            global_blocks.append(
                Figure(
                    charts.png(figure),
                    caption=_figure_caption(f"explanations/{path}", specs, lang),
                    width=0.8,
                )
            )
    else:
        global_blocks.append(Paragraph(t("not_logged", lang)))
    sections.append(Section(t("global_section", lang), global_blocks))

    if data.planted_check:
        planted = pd.DataFrame(data.planted_check["drivers"])
        planted["passed"] = [t("yes", lang) if v else t("no", lang) for v in planted["passed"]]
        drivers = PLANTED_DRIVERS.get(spec.name, {})
        planted["driver"] = [
            getattr(drivers[d].label, lang) if d in drivers else d for d in planted["driver"]
        ]
        planted["best_feature"] = [
            charts.feature_label(f, specs, lang) if isinstance(f, str) else "–"
            for f in planted["best_feature"]
        ]
        sections.append(
            Section(
                t("planted_section", lang),
                [
                    Paragraph(term("top_k", lang).format(k=data.planted_check["top_k"])),
                    _frame_table(
                        planted,
                        {
                            "driver": t("driver", lang),
                            "best_feature": t("best_feature", lang),
                            "rank": t("rank", lang),
                            "passed": t("passed", lang),
                        },
                    ),
                ],
            )
        )

    if data.history:
        history = Table(
            columns=[
                t("when", lang),
                t("from_to", lang),
                t("promoted", lang),
                t("metric", lang),
                t("by", lang),
                t("reason", lang),
            ],
            rows=[
                [
                    h["at"],
                    f"{h['from_version'] or '–'} → {h['to_version'] or '–'}",
                    t("yes", lang) if h["promoted"] else t("no", lang),
                    f"{term(h['metric'], lang)} {_fmt(h['challenger_value'])} / "
                    f"{_fmt(h['champion_value'])}",
                    h["by"],
                    _promotion_reason(h, lang),
                ]
                for h in data.history
            ],
        )
        sections.append(Section(t("history_section", lang), [history]))
    else:
        sections.append(Section(t("history_section", lang), [Paragraph(t("no_history", lang))]))

    sections.append(
        Section(
            t("rules_section", lang),
            [
                KeyValues(
                    [
                        (t("rule_version", lang), rules.version),
                        (term("effective_from", lang), str(rules.effective_from)),
                    ]
                )
            ],
        )
    )
    if spec.dossier is not None and spec.dossier.limitations and not on_table:
        sections.append(
            Section(
                t("limitations", lang),
                [Bullets([getattr(x, lang) for x in spec.dossier.limitations])],
            )
        )
    return Document(
        title=t("dossier_title", lang),
        lang=lang,
        subtitle=f"{ref.name} v{ref.version}",
        meta=[
            (t("registered", lang), ref.name),
            (t("version", lang), str(ref.version)),
            (t("aliases", lang), _aliases(data.aliases, lang)),
            (t("generated", lang), _now()),
        ],
        sections=sections,
        footer=f"suitability · {ref.name} v{ref.version}",
    )
