"""Every morning in operation (DESIGN §6): score the whole population, hand advisors their
worklists."""

from __future__ import annotations

import json
import time
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from suitability.cli.common import (
    ChurnModelOption,
    ClusterOption,
    Command,
    JsonFlag,
    Lang,
    LangOption,
    RiskModelOption,
    app,
    check_writable,
    console,
    on_cluster,
    progress_bar,
    user_errors,
)


class WorklistKind(StrEnum):
    reassess = "reassess"
    retention = "retention"


@app.command("score", cls=Command)
def score(
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Folder with the raw tables: a path, or an fsspec URL the workers can read too.",
        ),
    ],
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="Score as of this date or time (platform-local, e.g. 2026-10-01: the start "
            "of that day).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Score file to write: .parquet (with provenance) or .csv.")
    ],
    risk_model: RiskModelOption = "risk-level@champion",
    churn_model: ChurnModelOption = "churn@champion",
    cluster: ClusterOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Score every customer registered at --as-of with both models: stated and predicted
    category with probabilities, the mismatch and its confidence, the churn probability, each
    model's two principal reasons (zh and en), the re-assessment triggers and care flags of the
    rule table, and what the retention list needs. One row per customer; the numbers are the
    ones `explain` gives. With --cluster, features and scores are computed on Dask workers
    (which must be able to read --data and the folder of --out)."""
    from suitability import tracking
    from suitability.data.io import locate_table
    from suitability.explain.cases import parse_as_of
    from suitability.models.rules import load_rules
    from suitability.scoring.population import Scorers, score_population
    from suitability.specs import load_specs

    with user_errors():
        when = parse_as_of(as_of, "--as-of")
        if out.suffix.lower() not in (".parquet", ".csv"):
            raise ValueError(f"--out {out}: the scores are written as .parquet or .csv")
        check_writable(out, "--out")
        locate_table(data, "customers")  # a wrong folder fails before the models load
        specs = load_specs()
        rules = load_rules()
        tracking.use_store()
        scorers = Scorers(
            tracking.load_explainer(risk_model, specs),
            tracking.load_explainer(churn_model, specs),
            rules,
            specs,
        )
        began = time.perf_counter()
        with on_cluster(cluster) as client, progress_bar() as bar:
            tasks: dict[str, object] = {}

            def progress(stage: str, done: int, total: int) -> None:
                label = "building features" if stage == "features" else "scoring"
                if stage not in tasks:
                    tasks[stage] = bar.add_task(label, total=None)
                bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

            summary = score_population(data, when, scorers, out, progress=progress, cluster=client)
    seconds = time.perf_counter() - began
    models = summary.provenance["models"]
    console.print(
        f"scored {summary.rows:,} customers as of {when} in {seconds:.0f}s: "
        f"{summary.reassess:,} to re-assess → {escape(str(out))}\n"
        f"models: {escape(models['risk-level']['name'])} v{models['risk-level']['version']}, "
        f"{escape(models['churn']['name'])} v{models['churn']['version']}; rules "
        f"{escape(summary.provenance['rule_version'])}",
        highlight=False,
    )
    if as_json:
        print(
            json.dumps(
                {
                    "rows": summary.rows,
                    "reassess": summary.reassess,
                    "out": str(out),
                    "seconds": round(seconds, 1),
                    **summary.provenance,
                }
            )
        )


@app.command("worklist", cls=Command)
def worklist(
    kind: Annotated[
        WorklistKind,
        typer.Argument(
            metavar="reassess|retention",
            help="reassess: who must be re-assessed, why, since when, by priority. retention: "
            "active investors by expected loss, with reasons and preferred channel."
        ),
    ],
    scores: Annotated[
        Path, typer.Option("--scores", help="A score file from `suitability score`.")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="The list: .csv, .xlsx or .html (one self-contained page)."),
    ],
    lang: LangOption = Lang.zh,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Only the first N customers of the list."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Turn a score file into an advisor worklist, worded in --lang by models/worklists.yaml.
    Customers are named by their id only."""
    from suitability.scoring.population import read_scores, score_provenance
    from suitability.scoring.worklists import (
        load_worklist_spec,
        reassess_list,
        retention_list,
        worklist_format,
        write_worklist,
    )
    from suitability.specs import load_specs

    with user_errors():
        worklist_format(out)
        check_writable(out, "--out")
        spec = load_worklist_spec()
        channels = load_specs().behaviour.channels
        frame = read_scores(scores)
        make = reassess_list if kind == WorklistKind.reassess else retention_list
        listed = make(frame, spec, channels, lang.value)
        total = len(listed)
        if limit is not None:
            listed = listed.head(limit)
        meta = _meta(frame, score_provenance(scores), spec.version, lang.value)
        write_worklist(listed, out, kind.value, lang.value, meta, total=total)
    console.print(
        f"{kind.value}: {len(listed):,} of {total:,} customers → {escape(str(out))}",
        highlight=False,
    )
    if as_json:
        print(
            json.dumps({"kind": kind.value, "rows": len(listed), "total": total, "out": str(out)})
        )


def _meta(frame, provenance, version: str, lang: str) -> list[tuple[str, str]]:
    """Where a list comes from: the scores' as-of time, models and rules, and the list spec."""
    zh = lang == "zh"
    if provenance is not None:
        models = provenance["models"]
        as_of = provenance["as_of"]
        named = ", ".join(f"{m['name']} v{m['version']}" for m in models.values())
        rules = provenance["rule_version"]
    else:  # a CSV score file: every row names them
        first = frame.iloc[0] if len(frame) else None
        as_of = str(first["as_of"]) if first is not None else ""
        named = f"{first['risk_model']}, {first['churn_model']}" if first is not None else ""
        rules = str(first["rule_version"]) if first is not None else ""
    return [
        ("评分基准时间" if zh else "scored as of", str(as_of).replace("T", " ")),
        ("模型" if zh else "models", named),
        ("适当性规则" if zh else "rules", rules),
        ("清单规则" if zh else "list spec", version),
        ("生成时间" if zh else "made", datetime.now().strftime("%Y-%m-%d %H:%M")),
    ]
