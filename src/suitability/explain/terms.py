"""What reports and charts call the technical names they show (metrics, baselines, models,
split fields, slices, aliases, charts), in Chinese and English, so a reader of either language
need not know the code's names."""

from __future__ import annotations

from suitability.explain.reasons import Lang

#: name -> (zh, en). A name without an entry is shown as it is.
_TERMS: dict[str, tuple[str, str]] = {
    # metrics, overall and per slice
    "roc_auc": ("ROC AUC（排序区分能力）", "ROC AUC"),
    "pr_auc": ("PR AUC（精确率-召回率曲线下面积）", "PR AUC"),
    "brier": ("Brier 分数（越低越好）", "Brier score (lower is better)"),
    "top_decile_lift": ("预测最高10%人群的提升度", "Top-decile lift"),
    "log_loss": ("对数损失（越低越好）", "Log loss (lower is better)"),
    "ece": ("期望校准误差 ECE（越低越好）", "Expected calibration error (lower is better)"),
    "base_rate": ("实际发生率", "Observed rate"),
    "qwk": ("二次加权 Kappa（QWK）", "Quadratic weighted kappa (QWK)"),
    "accuracy": ("准确率", "Accuracy"),
    "macro_f1": ("宏平均 F1", "Macro-averaged F1"),
    "within_one_accuracy": ("相差不超过一级的比例", "Within one category"),
    "observed_rate": ("实际发生率", "Observed rate"),
    "mean_predicted": ("平均预测概率", "Mean predicted probability"),
    "calibration_gap": ("校准偏差（预测−实际）", "Calibration gap (predicted − observed)"),
    "mean_predicted_level": ("平均预测等级", "Mean predicted category"),
    "mean_confirmed_level": ("平均复核等级", "Mean confirmed category"),
    "level_bias": ("等级偏差（预测−复核）", "Category bias (predicted − confirmed)"),
    "share_predicted_c4_plus": ("预测为C4及以上的比例", "Share predicted C4 or higher"),
    "bin": ("分组", "Bin"),
    "count": ("样本数", "Count"),
    "n": ("样本数", "n"),
    "mean_abs_shap": ("平均|SHAP|", "Mean |SHAP|"),
    # the model, its baselines and the best possible score (metric keys and chart curves)
    "model": ("本模型", "This model"),
    "logistic_regression": ("逻辑回归基线", "Logistic-regression baseline"),
    "recency": ("最近投资间隔基线", "Recency baseline"),
    "questionnaire_band": ("问卷分数档基线", "Questionnaire-band baseline"),
    "best_possible": ("理论最优（生成器真值）", "Best possible (generator truth)"),
    # models (spec names) and registry aliases
    "risk-level": ("风险等级模型", "Risk-level model"),
    "churn": ("流失模型", "Churn model"),
    "champion": ("在用版本", "champion"),
    "challenger": ("候选版本", "challenger"),
    # slices
    "age_band": ("年龄段", "Age band"),
    "gender": ("性别", "Gender"),
    "channel_preference": ("偏好渠道", "Preferred channel"),
    "segment": ("客户分层", "Segment"),
    "unknown": ("未知", "unknown"),
    # data and split
    "source.mode": ("数据来源方式", "Source"),
    "source.path": ("原始数据位置", "Raw data"),
    "source.table": ("训练表", "Training table"),
    "data": ("原始数据表", "raw tables"),
    "table": ("训练表", "training table"),
    "full": ("全部", "All rows"),
    "train": ("训练集", "Training"),
    "validation": ("验证集", "Validation"),
    "test": ("测试集", "Test"),
    "method": ("切分方法", "Split method"),
    "out_of_time_grouped": ("按时间外推、按客户分组", "out of time, grouped by customer"),
    "time_grouped_by_id": ("按时间、按编号分组", "by time, grouped by id"),
    "random_grouped_by_id": ("随机、按编号分组", "random, grouped by id"),
    "time": ("按时间", "by time"),
    "stratified_random": ("分层随机", "stratified random"),
    "random": ("随机", "random"),
    "first_time": ("最早观察时点", "First observation time"),
    "last_time": ("最晚观察时点", "Last observation time"),
    "train_end": ("训练数据截止", "Training rows end"),
    "evaluation_start_after": ("评估数据起始（不含）", "Evaluation rows start after"),
    "embargo_days": ("隔离期（天）", "Embargo (days)"),
    "later_share": ("评估时段占比", "Share of times for evaluation"),
    "validation_customer_share": ("验证客户占比", "Validation customer share"),
    "test_customer_share": ("测试客户占比", "Test customer share"),
    "seed": ("随机种子", "Seed"),
    "dropped_rows": ("未使用的行数", "Rows not used"),
    "train_rows": ("训练集行数", "Training rows"),
    "train_customers": ("训练集客户数", "Training customers"),
    "train_from": ("训练集起", "Training from"),
    "train_to": ("训练集止", "Training to"),
    "validation_rows": ("验证集行数", "Validation rows"),
    "validation_customers": ("验证集客户数", "Validation customers"),
    "validation_from": ("验证集起", "Validation from"),
    "validation_to": ("验证集止", "Validation to"),
    "test_rows": ("测试集行数", "Test rows"),
    "test_customers": ("测试集客户数", "Test customers"),
    "test_from": ("测试集起", "Test from"),
    "test_to": ("测试集止", "Test to"),
    # charts
    "plots/confusion_matrix.png": ("混淆矩阵", "Confusion matrix"),
    "plots/roc_pr.png": ("ROC 曲线与 PR 曲线", "ROC and precision-recall curves"),
    "plots/calibration.png": ("校准曲线", "Calibration curve"),
    "explanations/beeswarm.png": (
        "SHAP 蜂群图（每点一位客户）",
        "SHAP beeswarm (one dot per customer)",
    ),
    "explanations/by_source.png": ("各数据来源的贡献", "Contributions by source of facts"),
    # rules and the planted-driver check
    "effective_from": ("生效日期", "Effective from"),
    "spec": ("模型说明", "Specification"),
    "top_k": ("前{k}名以内算通过", "passed when ranked in the top {k}"),
}


def term(name: str, lang: Lang) -> str:
    """The reader's word for a technical name (`roc_auc`, `train_rows`, `age_band`, …); the
    name itself when there is none."""
    words = _TERMS.get(name)
    if words is None:
        return name
    return words[0] if lang == "zh" else words[1]
