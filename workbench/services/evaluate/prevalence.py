"""Prevalence of a policy in the pool, and the champion's recall, from a stratified sample.

`plan_prevalence` stratifies the pool by the champion's score (quantile buckets), allocates the
sample by Neyman allocation, draws it, records each item's inclusion probability and queues the
items as measurement reviews (strategy `prevalence`, never `random`: the random share of the
selection mix stays the unbiased sample that calibration and evaluation use, and this sample is
not simple random). `estimate_prevalence` weighs whatever labels those items have by the design.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import (
    Decision,
    EntryStatus,
    Item,
    PrevalencePlan,
    PrevalenceSample,
    Project,
    QueueEntry,
    Role,
)
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.evaluate.champion_scores import (
    champion_scores,
    check_policy,
    operating_threshold,
    require_class,
)
from workbench.services.evaluate.sampling import (
    MIN_PER_STRATUM,
    PREVALENCE_METHOD,
    RECALL_METHOD,
    bernoulli_prior_sd,
    draw_stratified,
    neyman_allocation,
    quantile_strata,
    stratified_interval,
    stratified_proportion,
    stratified_recall,
)
from workbench.services.labels.current import HUMAN_SOURCES, current_labels
from workbench.services.projects import get_project
from workbench.services.quality.adjudication import training_overrides
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.train.train import counted_labels

STRATEGY = "prevalence"  # the queue entries' strategy: a measurement, not active learning
DEFAULT_STRATA = 10
ALLOCATION_NOTE = (
    "Neyman allocation n_h ~ N_h S_h, with S_h guessed as sqrt(p (1 - p)) of the stratum's mean "
    "score (a prior: exact only if the scores are calibrated; a wrong guess costs precision, "
    "never bias); at least 2 per stratum"
)


@dataclass(frozen=True)
class PlanRequest:
    project: str
    policy: str
    n: int
    out: Path
    strata: int = DEFAULT_STRATA
    seed: int = 0


def plan_prevalence(db: Database, req: PlanRequest, actor: Actor) -> dict[str, Any]:
    """Draw, record and queue a stratified sample for `req.policy`; write `req.out` as CSV
    (`external_id,stratum,inclusion_probability`). All or nothing: on any error no plan, no
    queue entry and no file."""
    require_role(actor, Role.engineer, Role.lead, Role.admin, action="plan a prevalence sample")
    if req.n < 1:
        raise WorkbenchError(f"--n must be at least 1, got {req.n}")
    if req.strata < 1:
        raise WorkbenchError(f"--strata must be at least 1, got {req.strata}")
    if req.out.is_dir():
        raise WorkbenchError(f"--out {req.out} is a folder; give a file name")
    if not req.out.parent.is_dir():
        raise WorkbenchError(f"--out {req.out}: folder {req.out.parent} does not exist")
    tmp = req.out.with_name(f".{req.out.name}.tmp")
    try:
        with db.sessions.begin() as s:
            result = _plan(s, db, req, actor, tmp)
            os.replace(tmp, req.out)  # last step before the commit
        return result
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _plan(s: Session, db: Database, req: PlanRequest, actor: Actor, tmp: Path) -> dict[str, Any]:
    project = get_project(s, req.project)
    check_policy(s, project, req.policy)
    pool = champion_scores(s, db.settings, project)
    require_class(pool, req.policy)
    scores = pool.column(req.policy).astype(np.float64)
    if req.n > len(scores):
        raise WorkbenchError(
            f"--n {req.n} is larger than the pool: project {req.project!r} has {len(scores)} "
            "scored (embedded) items"
        )
    strata, bounds = quantile_strata(scores, req.strata)
    k = len(bounds) - 1 if len(bounds) > 1 else 1
    sizes = np.bincount(strata, minlength=k)
    means = np.bincount(strata, weights=scores, minlength=k) / sizes
    sds = bernoulli_prior_sd(means)
    try:
        allocation = neyman_allocation(sizes, sds, req.n)
    except ValueError as exc:
        raise WorkbenchError(f"cannot allocate the sample: {exc}") from exc
    rng = np.random.default_rng(req.seed)
    picked = draw_stratified(strata, allocation, rng)
    model = pool.model
    threshold, threshold_source = operating_threshold(model, req.policy)
    strata_info = [
        {
            "stratum": h,
            "score_low": float(bounds[h]) if len(bounds) > 1 else float(scores.min()),
            "score_high": float(bounds[h + 1]) if len(bounds) > 1 else float(scores.max()),
            "population": int(sizes[h]),
            "mean_score": round(float(means[h]), 6),
            "prior_sd": round(float(sds[h]), 6),
            "allocated": int(allocation[h]),
        }
        for h in range(k)
    ]
    plan = PrevalencePlan(
        project_id=project.id,
        policy=req.policy,
        model_version_id=model.id,
        model_version=model.version,
        threshold=threshold,
        threshold_source=threshold_source,
        n_requested=req.n,
        seed=req.seed,
        population=len(scores),
        strata=strata_info,
        created_by=actor.name,
    )
    s.add(plan)
    s.flush()
    item_ids = pool.item_ids[picked]
    incl = allocation[strata[picked]] / sizes[strata[picked]]
    s.add_all(
        PrevalenceSample(
            plan_id=plan.id,
            item_id=int(i),
            stratum=int(strata[r]),
            inclusion_probability=float(p),
            score=float(scores[r]),
        )
        for i, r, p in zip(item_ids, picked, incl, strict=True)
    )
    s.flush()
    # Items with a verdict already (a reviewer's label, an adjudication, a gold answer) count
    # with it and are not queued: gold in particular reaches reviewers only by its own path.
    labelled = {
        lab.item_id
        for lab in current_labels(s, project, item_ids=item_ids.tolist(), sources=HUMAN_SOURCES)
    } | (set(training_overrides(s, project)) & {int(i) for i in item_ids})
    open_ids = set(
        s.scalars(
            select(QueueEntry.item_id).where(
                QueueEntry.item_id.in_(item_ids.tolist()), QueueEntry.status == EntryStatus.pending
            )
        )
    )
    # Queued in random order at one priority: leases go by (priority, id), so if the reviews
    # stop half way, the reviewed part is still a random subsample of every stratum.
    order = rng.permutation(len(picked))
    entries = [
        NewEntry(
            item_id=int(item_ids[j]),
            strategy=STRATEGY,
            score=float(scores[picked[j]]),
            reason=(
                f"prevalence measurement of {req.policy!r} (plan {plan.id}): stratum "
                f"{int(strata[picked[j]])} of {k}, score {scores[picked[j]]:.3f}, inclusion "
                f"probability {incl[j]:.4g}"
            ),
        )
        for j in order
        if int(item_ids[j]) not in labelled
    ]
    queued = enqueue(s, project, entries, actor, model_version_id=model.id)
    names = {
        i: ext
        for i, ext in s.execute(
            select(Item.id, Item.external_id).where(Item.id.in_(item_ids.tolist()))
        )
    }
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "stratum", "inclusion_probability"])
        for i, r, p in zip(item_ids, picked, incl, strict=True):
            w.writerow([names[int(i)], int(strata[r]), f"{p:.10g}"])
    record_event(
        s,
        actor,
        "prevalence.planned",
        project_id=project.id,
        entity_type="prevalence_plan",
        entity_id=plan.id,
        details={
            "policy": req.policy,
            "n": req.n,
            "strata": k,
            "model_version": model.version,
            "seed": req.seed,
            "queued": len(queued),
        },
    )
    return {
        "plan": plan.id,
        "project": req.project,
        "policy": req.policy,
        "model_version": model.version,
        "population": len(scores),
        "n": int(allocation.sum()),
        "threshold": threshold,
        "threshold_source": threshold_source,
        "allocation": ALLOCATION_NOTE,
        "strata": strata_info,
        "queued": len(queued),
        "already_labelled": len(labelled),
        "already_queued": len(open_ids - labelled),
        "out": str(req.out),
    }


def item_outcomes(
    session: Session, project: Project, item_ids: list[int], policy: str
) -> dict[int, bool]:
    """Whether each item violates `policy`, by its current labels; items without a verdict
    (not reviewed yet, only `unsure`, or a tie) are left out.

    An adjudicated final decision, then an active gold answer, outrank the reviewers (as for
    training); otherwise the majority of the reviewers' counted labels (their latest word),
    where a label is positive when it is `violating` and names the policy among its codes."""
    wanted = set(item_ids)
    overrides = training_overrides(session, project)
    votes: dict[int, Counter[bool]] = {}
    for lab in counted_labels(session, project):
        if lab.item_id in wanted and lab.decision != Decision.unsure:
            positive = lab.decision == Decision.violating and policy in (lab.policies or [])
            votes.setdefault(lab.item_id, Counter())[positive] += 1
    out: dict[int, bool] = {}
    for item_id in wanted:
        if item_id in overrides:
            answer = overrides[item_id].answer
            if answer.decision != Decision.unsure:
                out[item_id] = answer.decision == Decision.violating and policy in answer.policies
            continue
        c = votes.get(item_id)
        if c and c[True] != c[False]:
            out[item_id] = c[True] > c[False]
    return out


def get_plan(
    session: Session, project: Project, policy: str, plan_id: int | None
) -> PrevalencePlan:
    if plan_id is not None:
        plan = session.get(PrevalencePlan, plan_id)
        if plan is None or plan.project_id != project.id or plan.policy != policy:
            raise NotFoundError(
                f"no prevalence plan {plan_id} for policy {policy!r} in project {project.name!r}"
            )
        return plan
    plan = session.scalar(
        select(PrevalencePlan)
        .where(PrevalencePlan.project_id == project.id, PrevalencePlan.policy == policy)
        .order_by(PrevalencePlan.id.desc())
        .limit(1)
    )
    if plan is None:
        raise NotFoundError(
            f"no prevalence plan for policy {policy!r} in project {project.name!r}: draw one "
            f"first (`workbench prevalence plan -p {project.name} --policy {policy} --n N "
            "--out FILE`)"
        )
    return plan


def estimate_prevalence(
    session: Session,
    project_name: str,
    policy: str,
    *,
    confidence: float = 0.95,
    plan_id: int | None = None,
) -> dict[str, Any]:
    """The design-weighted prevalence of `policy` and the plan model's recall at its threshold,
    each with an interval, from the current labels of the plan's items."""
    if not 0.0 < confidence < 1.0:
        raise WorkbenchError(f"--confidence must be between 0 and 1 (exclusive), got {confidence}")
    project = get_project(session, project_name)
    check_policy(session, project, policy)
    plan = get_plan(session, project, policy, plan_id)
    samples = list(
        session.scalars(select(PrevalenceSample).where(PrevalenceSample.plan_id == plan.id))
    )
    outcome = item_outcomes(session, project, [smp.item_id for smp in samples], policy)
    k = len(plan.strata)
    population = np.array([st["population"] for st in plan.strata], dtype=np.int64)
    reviewed = [smp for smp in samples if smp.item_id in outcome]
    h = np.array([smp.stratum for smp in reviewed], dtype=np.int64)
    y = np.array([outcome[smp.item_id] for smp in reviewed], dtype=bool)
    flagged = np.array([smp.score >= plan.threshold for smp in reviewed], dtype=bool)
    n_h = np.bincount(h, minlength=k)
    y_h = np.bincount(h, weights=y.astype(float), minlength=k).astype(np.int64)
    sampled = np.bincount([smp.stratum for smp in samples], minlength=k)
    strata = [
        {
            "stratum": st["stratum"],
            "score_range": [st["score_low"], st["score_high"]],
            "population": int(population[i]),
            "sampled": int(sampled[i]),
            "reviewed": int(n_h[i]),
            "positives": int(y_h[i]),
            "p": round(float(y_h[i] / n_h[i]), 6) if n_h[i] else None,
        }
        for i, st in enumerate(plan.strata)
    ]
    result: dict[str, Any] = {
        "policy": policy,
        "plan": plan.id,
        "model_version": plan.model_version,
        "confidence": confidence,
        "estimate": None,
        "ci": None,
        "n_reviewed": len(reviewed),
        "n_sampled": len(samples),
        "population": int(plan.population),
        "strata": strata,
        "method": PREVALENCE_METHOD,
        "recall": None,
    }
    short = [st["stratum"] for st in strata if st["reviewed"] < MIN_PER_STRATUM]
    if short:
        result["note"] = (
            f"not enough reviewed items yet: strata {short} have fewer than {MIN_PER_STRATUM} "
            "items with a verdict (unsure labels and ties do not count)"
        )
        return result
    est = stratified_proportion(population, n_h, y_h)
    lo, hi = stratified_interval(est, confidence)
    result |= {
        "estimate": round(est.estimate, 6),
        "ci": [round(lo, 6), round(hi, 6)],
        "standard_error": round(float(np.sqrt(est.variance)), 6),
        "effective_n": round(est.effective_n, 1),
        "estimated_count": round(est.estimate * plan.population, 1),
    }
    rec = stratified_recall(population, h, y, flagged, confidence)
    result["recall"] = {
        "model_version": plan.model_version,
        "threshold": plan.threshold,
        "threshold_source": plan.threshold_source,
        "estimate": None if rec.estimate is None else round(rec.estimate, 6),
        "ci": None if rec.ci is None else [round(rec.ci[0], 6), round(rec.ci[1], 6)],
        "positives_reviewed": rec.positives_reviewed,
        "method": RECALL_METHOD,
    }
    if rec.estimate is None:
        result["recall"]["note"] = "no reviewed positive yet: recall is undefined"
    return result


def planned_policies(session: Session, project: Project) -> list[str]:
    """The policies of the project that have a prevalence plan, in code order."""
    return sorted(
        set(
            session.scalars(
                select(PrevalencePlan.policy).where(PrevalencePlan.project_id == project.id)
            )
        )
    )


def prevalence_overview(
    session: Session, project_name: str, *, confidence: float = 0.95
) -> list[dict[str, Any]]:
    """`estimate_prevalence` of the latest plan of every planned policy; a policy whose estimate
    cannot be made (e.g. its policy was retired since) carries `error` instead."""
    project = get_project(session, project_name)
    out: list[dict[str, Any]] = []
    for policy in planned_policies(session, project):
        try:
            out.append(estimate_prevalence(session, project_name, policy, confidence=confidence))
        except WorkbenchError as exc:
            out.append({"policy": policy, "error": str(exc)})
    return out
