"""Explanations and compliance reports for one customer or a model version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    pass

from suitability.cli.common import (
    AsOfOption,
    ChurnModelOption,
    ClusterOption,
    Command,
    Initiator,
    JsonFlag,
    Lang,
    LangOption,
    ReportFormat,
    RiskModelOption,
    app,
    check_writable,
    console,
    on_cluster,
    progress_bar,
    report_app,
    track,
    user_errors,
)

# --- explanations and reports -------------------------------------------------------------------


def _print_reasons(title: str, reasons: list, lang: str) -> None:
    table = Table(title=escape(title), title_justify="left")
    for column in ("#", "source", "factor", "value", "direction", "SHAP"):
        table.add_column(column, justify="right" if column in {"#", "SHAP"} else "left")
    for i, r in enumerate(reasons, 1):
        arrow = "↑" if r.direction == "up" else "↓"
        table.add_row(
            str(i),
            r.source,
            escape(r.description[lang]),
            escape(r.value_text[lang]),
            arrow,
            f"{r.contribution:+.3f}",
        )
    console.print(table)
    for r in reasons:
        console.print("  • " + escape(r.text[lang]), highlight=False)


def _print_case(case, lang: str) -> None:  # CustomerCase
    risk, churn, m = case.risk, case.churn, case.mismatch
    console.print(
        f"[bold]{escape(case.customer.get('customer_id', ''))}[/] as of {case.as_of}   "
        + "  ".join(escape(v) for k, v in case.customer.items() if k != "customer_id")
    )
    probabilities = "  ".join(f"{c} {p:.0%}" for c, p in risk.probabilities.items())
    console.print(
        f"[bold]risk level[/] {risk.predicted_level} (stated {risk.stated_level or 'none'}; "
        f"{probabilities})   mismatch: {m.direction}"
        + (
            f" ({m.confidence:.0%}{', flagged' if m.flagged else ''})"
            if m.direction != "none"
            else ""
        )
    )
    _print_reasons("why this category", risk.reasons, lang)
    if risk.stated_reasons:
        _print_reasons(
            f"why not {risk.stated_level}, the questionnaire's", risk.stated_reasons, lang
        )
    console.print(f"[bold]churn[/] p = {churn.p_churn:.1%} within the horizon")
    _print_reasons("why this churn risk", churn.reasons, lang)
    if case.decision is not None and case.product is not None:
        d = case.decision
        console.print(
            f"[bold]decision[/] {d.decision} for {escape(case.product.product_id)} "
            f"({case.product.risk_level}, initiated by {case.initiated_by})"
        )
        for note in [*d.reasons, *d.warnings, *d.notes]:
            console.print("  • " + escape(getattr(note, lang)), highlight=False)
    models = ", ".join(f"{r.name} v{r.version}" for r in case.models.values())
    console.print(f"models: {escape(models)}; rules {escape(case.rule_version)}", highlight=False)


def load_explainers(risk_model: str, churn_model: str, specs):
    from suitability import tracking

    tracking.use_store()
    return tracking.load_explainer(risk_model, specs), tracking.load_explainer(churn_model, specs)


@app.command("explain", cls=Command)
def explain(
    data: Annotated[
        Path | None, typer.Option("--data", help="Data folder holding the customer's facts.")
    ] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Customer id (with --data).")
    ] = None,
    as_of: AsOfOption = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="Batch mode: a parquet feature table to explain row by row (with --out); a "
            "path or an fsspec URL.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Batch mode: parquet file for the explanations.")
    ] = None,
    model: Annotated[
        str,
        typer.Option("--model", help="Batch mode: which model to explain, NAME[@alias|@version]."),
    ] = "risk-level",
    lang: LangOption = Lang.zh,
    risk_model: RiskModelOption = "risk-level@champion",
    churn_model: ChurnModelOption = "churn@champion",
    as_json: JsonFlag = False,
    cluster: ClusterOption = None,
) -> None:
    """Explain both models' answers for one customer (--data, --customer), or stream SHAP
    contributions for a whole feature table (--features, --out; --cluster to spread it over a
    Dask cluster's workers)."""
    from suitability.specs import load_specs

    with user_errors():
        if (features is None) == (data is None):
            raise ValueError("give either --data with --customer, or --features with --out")
        specs = load_specs()
        if features is not None:
            from suitability import tracking
            from suitability.explain.batch import explain_table

            if out is None:
                raise ValueError("--features needs --out (a parquet file)")
            tracking.use_store()
            explainer = tracking.load_explainer(model, specs)
            with on_cluster(cluster) as client, progress_bar() as bar:
                rows = explain_table(
                    explainer.model,
                    features,
                    out,
                    progress=track(bar, "explaining"),
                    cluster=client,
                )
            console.print(
                f"explained {rows:,} rows with {escape(explainer.ref.name)} "
                f"v{explainer.ref.version} → {escape(str(out))}"
            )
            if as_json:
                print(json.dumps({"rows": rows, "out": str(out), "model": explainer.ref.to_json()}))
            return
        if customer is None:
            raise ValueError("--data needs --customer")
        from suitability.explain.cases import assess_case, read_case
        from suitability.models.rules import load_rules

        # The arguments and the customer's facts are checked before the models load.
        inputs = read_case(data, customer, specs, as_of=as_of)
        rules = load_rules()
        risk, churn = load_explainers(risk_model, churn_model, specs)
        case = assess_case(inputs, risk, churn, specs, rules)
    _print_case(case, lang.value)
    if as_json:
        print(json.dumps(case.to_json(), ensure_ascii=False, default=str))


def _report_path(out: Path, fmt: ReportFormat | None) -> str:
    from suitability.explain.render import report_format

    return report_format(out, fmt.value if fmt else None)


@report_app.command("decision", cls=Command)
def report_decision(
    data: Annotated[Path, typer.Option("--data", help="Data folder holding the customer's facts.")],
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    product: Annotated[
        str, typer.Option("--product", help="Product id (from the products table).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Report file (.html or .pdf).")],
    initiated_by: Annotated[
        Initiator, typer.Option("--initiated-by", help="Who proposed the product.")
    ] = Initiator.investor,
    as_of: AsOfOption = None,
    lang: LangOption = Lang.zh,
    fmt: Annotated[
        ReportFormat | None,
        typer.Option("--format", help="html or pdf (default: from the --out extension)."),
    ] = None,
    risk_model: RiskModelOption = "risk-level@champion",
    churn_model: ChurnModelOption = "churn@champion",
    log: Annotated[
        bool,
        typer.Option("--log/--no-log", help="Also attach the report to the risk model's run."),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Write the decision report for one customer and one product: the decision, the stated
    and predicted category, churn risk, the reasons, the facts used, models and rule version."""
    from suitability import tracking
    from suitability.explain.cases import assess_case, read_case
    from suitability.explain.render import write_report
    from suitability.explain.reports import decision_report
    from suitability.models.rules import load_rules
    from suitability.specs import load_specs

    with user_errors():
        chosen = _report_path(out, fmt)
        check_writable(out, "--out")
        specs = load_specs()
        # The arguments, the customer's facts and the product are checked before the models load.
        inputs = read_case(
            data,
            customer,
            specs,
            as_of=as_of,
            product_id=product,
            initiated_by=initiated_by.value,
        )
        rules = load_rules()
        risk, churn = load_explainers(risk_model, churn_model, specs)
        case = assess_case(inputs, risk, churn, specs, rules)
        path = write_report(decision_report(case, specs, lang.value), out, chosen)
        artifact = tracking.log_report(risk.ref.run_id, path) if log and risk.ref.run_id else None
    assert case.decision is not None
    console.print(
        f"{case.decision.decision}: {escape(customer)} × {escape(product)} → {escape(str(path))}"
        + (f" (logged to run {risk.ref.run_id} as {artifact})" if artifact else "")
    )
    if as_json:
        print(
            json.dumps(
                {"path": str(path), "artifact": artifact, **case.to_json()},
                ensure_ascii=False,
                default=str,
            )
        )


@report_app.command("model", cls=Command)
def report_model(
    model: Annotated[
        str,
        typer.Argument(help="NAME[@alias|@version], e.g. risk-level, churn@2 (default: champion)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Report file (.html or .pdf).")],
    lang: LangOption = Lang.zh,
    fmt: Annotated[
        ReportFormat | None,
        typer.Option("--format", help="html or pdf (default: from the --out extension)."),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Also attach the dossier to the model's run.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Write a model version's dossier: purpose, data and cutoffs, metrics overall, per class and
    per slice, fairness gaps, calibration, global explanations, alias history, limitations."""
    from suitability import tracking
    from suitability.explain.render import write_report
    from suitability.explain.reports import model_dossier
    from suitability.models.rules import load_rules
    from suitability.models.spec import MODEL_NAMES, load_model_spec
    from suitability.specs import load_specs

    with user_errors():
        chosen = _report_path(out, fmt)
        check_writable(out, "--out")
        specs = load_specs()
        tracking.use_store()
        data = tracking.dossier_data(model)
        if data.loaded.spec_name not in MODEL_NAMES:
            raise ValueError(f"{data.loaded.ref.name} is not a risk-level or churn model")
        spec = load_model_spec(data.loaded.spec_name, specs)
        path = write_report(model_dossier(data, spec, specs, load_rules(), lang.value), out, chosen)
        ref = data.loaded.ref
        artifact = tracking.log_report(ref.run_id, path) if log and ref.run_id else None
    console.print(
        f"{escape(ref.name)} v{ref.version} dossier → {escape(str(path))}"
        + (f" (logged to run {ref.run_id} as {artifact})" if artifact else "")
    )
    if as_json:
        print(json.dumps({"path": str(path), "artifact": artifact, "model": ref.to_json()}))
