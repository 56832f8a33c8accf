"""The demo: a synthetic world, both models trained, promoted and reported."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

if TYPE_CHECKING:
    pass

from suitability.cli.common import (
    Command,
    app,
    console,
    progress_bar,
    track,
    user_errors,
)
from suitability.cli.explain import load_explainers
from suitability.cli.models import print_promotion, print_result

# --- demo -----------------------------------------------------------------------------------------


@app.command("demo", cls=Command)
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for everything the demo writes.")
    ] = Path("demo-out"),
    customers: Annotated[
        int, typer.Option("--customers", min=1000, help="Number of synthetic customers.")
    ] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 7,
) -> None:
    """Run the main job: synthesise, build features, train, register and promote both models.

    Everything (data, training tables, the MLflow store) stays under --out."""
    from suitability import tracking
    from suitability.data.synth import generate
    from suitability.models.sources import write_table
    from suitability.models.spec import MODEL_NAMES, load_model_spec
    from suitability.models.train import train_on_features
    from suitability.models.training_table import build_training_table
    from suitability.specs import load_specs

    data_dir = out / "data"
    began = time.perf_counter()
    with user_errors():
        if data_dir.exists() and any(data_dir.iterdir()):
            raise FileExistsError(
                f"{data_dir} already holds data; choose another --out or remove it"
            )
        out.mkdir(parents=True, exist_ok=True)
        specs = load_specs()
        uri = tracking.use_store(
            f"sqlite:///{(out / 'mlflow.db').resolve()}", artifacts=(out / "mlartifacts").resolve()
        )
        results, promotions = [], []
        with progress_bar() as bar:
            summary = generate(data_dir, customers, seed, progress=track(bar, "synthesising data"))
            for name in MODEL_NAMES:
                spec = load_model_spec(name, specs)
                with tempfile.TemporaryDirectory(prefix="suitability-") as scratch:
                    table = build_training_table(
                        spec, data_dir, specs, scratch, progress=track(bar, f"{name}: features")
                    )
                path = out / f"{name.replace('-', '_')}_training.parquet"
                write_table(table.frame, path)
                result = train_on_features(
                    table.frame, spec, specs, mode="data", progress=track(bar, f"{name}: training")
                )
                source = {
                    "mode": "data",
                    "path": str(data_dir.resolve()),
                    "table": str(path.resolve()),
                }
                logged = tracking.log_training(result, source=source)
                promotions.append(tracking.promote(spec.registered_name, by="demo"))
                results.append((result, logged, path))
    console.print(
        f"[bold]data[/]      {escape(str(data_dir))}  ({summary.rows.get('events', 0):,} events, "
        f"{customers:,} customers)"
    )
    for (result, logged, path), promotion in zip(results, promotions, strict=True):
        console.print(f"[bold]training table[/] {escape(str(path))}  ({len(result.table):,} rows)")
        print_result(result, logged)
        print_promotion(promotion)
    with user_errors():
        written = _demo_reports(out, data_dir, specs)
    console.print("[bold]reports[/]")
    for path in written:
        console.print("  " + escape(str(path)), soft_wrap=True, highlight=False)
    console.print(f"done in {time.perf_counter() - began:.0f}s. Next:")
    # Commands stay on one line, whatever the terminal width: they are meant to be pasted.
    for command in (
        f"mlflow ui --backend-store-uri {uri}",
        f"MLFLOW_TRACKING_URI={uri} suitability models list",
        f"MLFLOW_TRACKING_URI={uri} suitability train churn --features {results[-1][2]}",
        f"MLFLOW_TRACKING_URI={uri} suitability evaluate suitability-churn@challenger",
        f"MLFLOW_TRACKING_URI={uri} suitability promote churn",
        f"MLFLOW_TRACKING_URI={uri} suitability explain --data {data_dir} --customer "
        f"{written_customer(written)} --lang en",
    ):
        console.print("  " + escape(command), soft_wrap=True, highlight=False)
    keys = out / "keys.json"
    console.print("Serve both champions over HTTP (127.0.0.1:3000):")
    for command in (
        f"KEY=$(suitability keys add --role matching --keys {keys})",
        f"MLFLOW_TRACKING_URI={uri} suitability serve --keys {keys} "
        f"--audit-db {out / 'serving-audit.sqlite'}",
        'curl -s -X POST localhost:3000/suitability -H "Authorization: Bearer $KEY" '
        "-H 'Content-Type: application/json' --data-binary @serving/examples/suitability.json",
    ):
        console.print("  " + escape(command), soft_wrap=True, highlight=False)


def written_customer(paths: list[Path]) -> str:
    """The customer id a demo decision report is named after (decision-<id>-<product>.<lang>)."""
    for path in paths:
        if path.name.startswith("decision-"):
            return path.name.split("-")[1]
    return "C0000001"


def _demo_reports(out: Path, data_dir: Path, specs) -> list[Path]:
    """One decision report and both model dossiers, in zh and en, as HTML and PDF. The decision
    is about a customer whose questionnaire the model disagrees with, for a product one level
    above their stated category that they asked for themselves: the richest case to read."""
    import pandas as pd

    from suitability import tracking
    from suitability.explain.cases import customer_case, default_as_of
    from suitability.explain.render import write_report
    from suitability.explain.reports import decision_report, model_dossier
    from suitability.models.rules import load_rules
    from suitability.models.spec import load_model_spec

    rules = load_rules()
    risk, churn = load_explainers("risk-level@champion", "churn@champion", specs)
    as_of = default_as_of(data_dir)
    reviews = pd.read_parquet(
        out / "risk_level_training.parquet", columns=["customer_id", "q_level"]
    )
    candidates = reviews.dropna(subset=["q_level"])["customer_id"].drop_duplicates().head(40)
    case = None
    for customer in candidates:
        case = customer_case(data_dir, customer, risk, churn, specs, rules, as_of=as_of)
        if case.mismatch.flagged and case.risk.stated_level not in (None, "C5"):
            break
    assert case is not None, "the demo data has reviewed customers with a questionnaire"
    stated = case.risk.stated_level or "C1"
    allowed = rules.matrix[stated]
    products = pd.read_parquet(data_dir / "products.parquet")
    above = products[~products["risk_level"].isin(allowed)]
    product = str((above if len(above) else products)["product_id"].iloc[0])
    customer = case.customer["customer_id"]
    case = customer_case(
        data_dir,
        customer,
        risk,
        churn,
        specs,
        rules,
        as_of=as_of,
        product_id=product,
        initiated_by="investor",
    )
    folder = out / "reports"
    written = []
    for lang in ("zh", "en"):
        document = decision_report(case, specs, lang)
        for fmt in ("html", "pdf"):
            written.append(
                write_report(document, folder / f"decision-{customer}-{product}.{lang}.{fmt}", fmt)
            )
    for short in ("risk-level", "churn"):
        data = tracking.dossier_data(f"{short}@champion")
        spec = load_model_spec(short, specs)
        for lang in ("zh", "en"):
            document = model_dossier(data, spec, specs, rules, lang)
            for fmt in ("html", "pdf"):
                path = write_report(document, folder / f"dossier-{short}.{lang}.{fmt}", fmt)
                tracking.log_report(data.loaded.ref.run_id, path)
                written.append(path)
    for path in written[:4]:
        tracking.log_report(risk.ref.run_id, path)
    return written
