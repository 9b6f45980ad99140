"""`workbench prevalence`: how much of the pool violates a policy, and the champion's recall,
measured on a stratified sample that reviewers label."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.services.audit import Actor
from workbench.services.evaluate.prevalence import (
    DEFAULT_STRATA,
    PlanRequest,
    estimate_prevalence,
    plan_prevalence,
)

app = typer.Typer(
    help=(
        "Prevalence measurement: a stratified random sample of the pool by the champion's score "
        "(Neyman allocation), reviewed as measurement reviews, and a design-weighted estimate "
        "of the policy's prevalence and of the champion's recall, with intervals. The sample "
        "is queued under the strategy `prevalence`, apart from the selection mix's `random` "
        "share (which stays a simple random sample)."
    ),
    no_args_is_help=True,
)

PolicyOpt = Annotated[str, typer.Option("--policy", help="Policy code of the current taxonomy.")]


@app.command()
def plan(
    project: ProjectOpt,
    policy: PolicyOpt,
    n: Annotated[int, typer.Option("--n", help="Items to sample.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="CSV to write: external_id,stratum,inclusion_probability per item."
        ),
    ],
    strata: Annotated[
        int, typer.Option("--strata", help="Quantile buckets of the champion's score.")
    ] = DEFAULT_STRATA,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draw.")] = 0,
    json_mode: JsonFlag = False,
) -> None:
    """Draw a stratified sample for POLICY, record it and queue it for review.

    The pool (every embedded item) is cut into --strata quantile buckets of the champion's
    score for the policy; the n draws are split by Neyman allocation (N_h S_h, S_h guessed as
    sqrt(p(1-p)) of the bucket's mean score, at least 2 per bucket) and drawn without
    replacement within each bucket. Items that already have a reviewer's label are recorded
    but not queued again. All or nothing: on an error no plan, no entry and no file.
    """
    with database(json_mode) as db:
        result = plan_prevalence(
            db,
            PlanRequest(project, policy, n, out, strata=strata, seed=seed),
            Actor.system(),
        )
        say(f"wrote {out}")
        emit(result, json_mode, lambda: _print_plan(result))


def _print_plan(r: dict[str, Any]) -> None:
    print(
        f"plan {r['plan']}: {r['n']} of {r['population']} items for {r['policy']!r} by model "
        f"v{r['model_version']}'s score; {r['queued']} queued, {r['already_labelled']} "
        "labelled already"
    )
    for st in r["strata"]:
        print(
            f"  stratum {st['stratum']}: score {st['score_low']:.4f}-{st['score_high']:.4f}  "
            f"N {st['population']}  n {st['allocated']}  (prior sd {st['prior_sd']:.3f})"
        )


@app.command()
def estimate(
    project: ProjectOpt,
    policy: PolicyOpt,
    confidence: Annotated[
        float, typer.Option("--confidence", help="Confidence level of the intervals.")
    ] = 0.95,
    plan_id: Annotated[
        int | None, typer.Option("--plan", help="Plan id (default: the policy's latest plan).")
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Prevalence of POLICY and the plan model's recall at its threshold, from the labels the
    plan's items have now (stratified estimator with the finite population correction, Wilson
    interval on the effective sample size; recall as a ratio estimate, logit delta-method
    interval). Items without a verdict yet are left out; each stratum needs two."""
    with database(json_mode) as db, db.sessions() as s:
        result = estimate_prevalence(s, project, policy, confidence=confidence, plan_id=plan_id)
        if result.get("note"):
            say(result["note"])
        emit(result, json_mode, lambda: _print_estimate(result))


def _print_estimate(r: dict[str, Any]) -> None:
    if r["estimate"] is None:
        print(f"{r['policy']}: no estimate yet ({r['n_reviewed']} of {r['n_sampled']} reviewed)")
        return
    lo, hi = r["ci"]
    print(
        f"{r['policy']}: prevalence {r['estimate']:.4f} [{lo:.4f}, {hi:.4f}] "
        f"({r['confidence']:.0%}, {r['n_reviewed']} reviewed of {r['n_sampled']})"
    )
    rec = r["recall"]
    if rec and rec["estimate"] is not None:
        lo, hi = rec["ci"]
        print(
            f"recall of model v{rec['model_version']} at {rec['threshold']:.3f}: "
            f"{rec['estimate']:.3f} [{lo:.3f}, {hi:.3f}]"
        )
    print(f"method: {r['method']}")
