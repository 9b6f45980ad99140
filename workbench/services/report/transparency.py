"""The EU DSA transparency report: the parts of the harmonised templates of Implementing
Regulation (EU) 2024/2835 that the workbench's decisions, appeals and labels can fill, as CSV
rows with the template's columns, and a draft of the qualitative description of accuracy.

Parts 7 (internal complaints) and 8 (automated means) use the Commission's CSV templates'
Applicability, Section, Indicator and Scope wording exactly, as shipped in
github.com/johnou/dsa-transparency-report-generator (commit 338c3d5a,
src/main/resources/4_EN_Annex_I__Templates_for_Transparency_Reports_CSV_Part_7_appeals_and_
recidivism.csv, ..._Part_8_automated_means.csv; the draft's headings from ..._Part_11_
qualitative.csv). Rows the template does not have (complaints
decided, share reversed) keep the workbench's own wording. The own-initiative section (Parts 5
and 6 are wide tables, one row per category and one column per restriction) is still given as
long rows in the workbench's own wording, headed as in the regulation's table of contents
(https://lexaris.io/library/tableofcontents/6269055), and must be checked before filing.

Accuracy, precision and recall come from the evaluation framework's unbiased samples, in order
of preference: a frozen evaluation set sampled from the pool, a prevalence plan's sample (both
design-weighted), the random share of the selection mix; only failing all of them a label-file
evaluation set, whose Contextual Information says it is not a sample of the pool.

Reproducible: the same period gives the same bytes (rows sorted, no timestamps but the period).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from statsmodels.stats.proportion import proportion_confint

from workbench.db.models import (
    AppealStatus,
    AuditEvent,
    EnforcementDecision,
    EvaluationMember,
    EvaluationSet,
    EvaluationSetKind,
    EvaluationSetStatus,
    Item,
    ModelStatus,
    ModelVersion,
    PrevalencePlan,
    PrevalenceSample,
    Project,
    Role,
    Scan,
    ScanDecision,
)
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.evaluate.registry import PROMOTING, ROLLBACK
from workbench.services.evaluate.sampling import wilson_effective
from workbench.services.membership import require_project_role
from workbench.services.report.appeals import appeals_between
from workbench.services.report.decisions import (
    AUTOMATED_DECISIONS,
    CONTENT_TYPES,
    RESTRICTIONS,
    decisions_between,
)
from workbench.services.report.statements import content_language, write_atomic
from workbench.services.train.train import (
    counted_labels,
    label_class,
    majority_training_labels,
    random_sampled_items,
)

COLUMNS = (
    "Applicability",
    "Service",
    "Reporting period (YYYY-MM-DD/YYYY-MM-DD)",
    "Section",
    "Indicator",
    "Scope",
    "Value",
    "Contextual Information",
)
SECTION_OWN_INITIATIVE = (
    "1.4 Article 15(1)(c). Meaningful and comprehensible information on own-initiative "
    "content moderation"
)
# Parts 7 and 8 of Annex I's CSV templates, word for word (see the module docstring), trailing
# blanks included where the template has them.
SECTION_COMPLAINTS = "Internal complaints mechanism"
SECTION_AUTOMATED = "Use of automated means for content moderation"
ALL = "All"
PLATFORMS = "Only for providers of online platforms"
VLOPS = "Only for VLOPs"
TOTAL = "Total number"
COMPLAINTS = "Number of complaints submitted to the internal-complaints mechanism"
SOLELY_AUTOMATED = "Number of measures solely taken by automated means "
NOT_AUTOMATED = "Number of measures not taken by automated means"
ACCURACY = "Accuracy of the automated means - "  # + Accuracy, Precision or Recall
ALL_PROVIDERS = "Providers of intermediary services"
CONFIDENCE = 0.95
# Per-language figures only where the unbiased sample holds at least this many items.
MIN_LANGUAGE_SAMPLE = 20

FILES = {
    SECTION_OWN_INITIATIVE: "own_initiative.csv",
    SECTION_COMPLAINTS: "complaints.csv",
    SECTION_AUTOMATED: "automated_means.csv",
}


def parse_period(period: str) -> tuple[str, str]:
    """`YYYY-MM-DD/YYYY-MM-DD` -> (start, end), checked; an error naming the problem."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})/(\d{4}-\d{2}-\d{2})", period.strip())
    if not match:
        raise WorkbenchError(f"period {period!r}: expected YYYY-MM-DD/YYYY-MM-DD")
    try:
        start, end = (date.fromisoformat(match.group(i)) for i in (1, 2))
    except ValueError as exc:
        raise WorkbenchError(f"period {period!r}: {exc}") from None
    if end < start:
        raise WorkbenchError(f"period {period!r}: the end is before the start")
    return start.isoformat(), end.isoformat()


def parse_day(value: str, what: str) -> str:
    """A YYYY-MM-DD date, checked; an error naming `what` otherwise."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("expected YYYY-MM-DD")
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise WorkbenchError(f"{what} {value!r}: {exc}") from None


@dataclass(frozen=True)
class Row:
    applicability: str
    section: str
    indicator: str
    scope: str
    value: str
    context: str = ""


@dataclass(frozen=True)
class Estimate:
    """A proportion from a sample, with its Wilson interval; `value` None when the
    denominator is zero (nothing to estimate). `weighted` and `n_eff` are set when the
    sample's design weights are unequal: the design-weighted (Hajek) estimate and the Kish
    effective sample size its Wilson interval is taken on."""

    successes: int
    n: int
    low: float | None
    high: float | None
    weighted: float | None = None
    n_eff: float | None = None

    @property
    def value(self) -> float | None:
        if self.weighted is not None:
            return self.weighted
        return self.successes / self.n if self.n else None

    @classmethod
    def of(cls, successes: int, n: int) -> Estimate:
        if n == 0:
            return cls(0, 0, None, None)
        low, high = proportion_confint(successes, n, alpha=1 - CONFIDENCE, method="wilson")
        return cls(successes, n, float(low), float(high))

    @classmethod
    def design(cls, hits: list[bool], weights: list[float]) -> Estimate:
        """sum w_i hit_i / sum w_i over the sample; with equal weights exactly `of`."""
        n = len(hits)
        w = np.asarray(weights, dtype=np.float64)
        successes = int(sum(hits))
        if n == 0 or np.allclose(w, w[0]):
            return cls.of(successes, n)
        p = float(w[np.asarray(hits, dtype=bool)].sum() / w.sum())
        n_eff = float(w.sum() ** 2 / (w**2).sum())
        low, high = wilson_effective(p, n_eff, CONFIDENCE)
        return cls(successes, n, low, high, p, n_eff)

    def text(self) -> str:
        return "" if self.value is None else f"{self.value:.4f}"

    def context(self, what: str, method: str) -> str:
        if self.value is None:
            return f"Not estimable: no {what} in the sample. {method}"
        if self.weighted is not None:
            return (
                f"{self.successes}/{self.n} {what} before weighting; design-weighted estimate; "
                f"{int(CONFIDENCE * 100)}% Wilson interval on the effective sample size "
                f"{self.n_eff:.1f} [{self.low:.4f}, {self.high:.4f}]; sample size {self.n}. "
                f"{method}"
            )
        return (
            f"{self.successes}/{self.n} {what}; {int(CONFIDENCE * 100)}% Wilson interval "
            f"[{self.low:.4f}, {self.high:.4f}]; sample size {self.n}. {method}"
        )


@dataclass(frozen=True)
class MeansEvaluation:
    """One automated means compared with human labels on the unbiased sample."""

    name: str
    purpose: str
    accuracy: Estimate
    precision: Estimate
    recall: Estimate
    sample_size: int
    by_language: dict[str, tuple[Estimate, Estimate, Estimate]]
    method: str


def _fmt_days(seconds: float) -> str:
    return f"{seconds / 86400:.2f}"


# --------------------------------------------------------------------------------------------
# Own-initiative measures


def _own_initiative(session: Session, project: Project, start: str, end: str) -> list[Row]:
    rows = [d for d in decisions_between(session, project, start, end)]
    own = [d for d in rows if d.source_type == "voluntary"]
    s = SECTION_OWN_INITIATIVE
    out = [
        Row(ALL_PROVIDERS, s, "Number of own-initiative content moderation measures (Art. "
            "15(1)(c))", "Total", str(len(own)),
            "Every enforcement decision applied in the period, reversed ones included "
            f"({sum(1 for d in own if d.revoked_at is not None)} reversed since)."),
    ]  # fmt: skip
    by_category = Counter(f"STATEMENT_CATEGORY_{d.category}" for d in own)
    by_type = Counter(CONTENT_TYPES.get(t, t) for d in own for t in d.content_types)
    by_detection = Counter("Yes" if d.automated_detection else "No" for d in own)
    by_decision = Counter(AUTOMATED_DECISIONS.get(d.automated_decision, "") for d in own)
    by_restriction = Counter(RESTRICTIONS[d.restriction][1] for d in own)
    groups = [
        ("by category", "category", by_category, ""),
        ("by content type", "content_type", by_type,
         "An item with several content types counts once under each."),
        ("by automated detection", "automated_detection", by_detection,
         "Yes: a model ranked the item into review, or a scan matched it."),
        ("by automated decision", "automated_decision", by_decision, ""),
        ("by type of restriction", "restriction", by_restriction, ""),
    ]  # fmt: skip
    for label, key, counts, note in groups:
        for value, n in sorted(counts.items()):
            out.append(
                Row(ALL_PROVIDERS, s, f"Number of own-initiative measures {label}",
                    f"{key}={value}", str(n), note)
            )  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Complaints


def _complaints(session: Session, project: Project, start: str, end: str) -> list[Row]:
    appeals = appeals_between(session, project, start, end)
    decided = [a for a in appeals if a.status != AppealStatus.open and a.decided_at]
    reversed_ = [a for a in decided if a.status == AppealStatus.reversed]
    s = SECTION_COMPLAINTS
    waits = [(a.decided_at - a.filed_at).total_seconds() for a in decided if a.decided_at]
    share = Estimate.of(len(reversed_), len(decided))
    out = [
        Row(ALL, s, COMPLAINTS, TOTAL, str(len(appeals)),
            "Complaints filed in the period against enforcement decisions."),
        Row(PLATFORMS, s, COMPLAINTS, "Decisions upheld", str(len(decided) - len(reversed_)),
            ""),
        Row(PLATFORMS, s, COMPLAINTS, "Decisions partially reversed", "0",
            "The workbench's re-review upholds or reverses a decision; it has no partial "
            "outcome."),
        Row(PLATFORMS, s, COMPLAINTS, "Decisions reversed", str(len(reversed_)), ""),
        Row(PLATFORMS, s, COMPLAINTS, "Median time", _fmt_days(median(waits)) if waits else "",
            "In days, from filing to the re-review's outcome." if waits
            else "Not estimable: no complaint decided."),
        # Not in the template: the workbench's own rows.
        Row(PLATFORMS, s, "Number of complaints decided", TOTAL, str(len(decided)),
            f"{len(appeals) - len(decided)} still open at the time of the report."),
        Row(PLATFORMS, s, "Share of complaints where the decision was reversed", TOTAL,
            share.text(), share.context("decided complaints reversed",
                                        "Decimal between 0 and 1.")),
    ]  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# Automated means and their accuracy


def _classifier_predictions(
    model: ModelVersion,
) -> dict[int, bool] | None:
    """Item -> the model's call (violating: its top class is not "none"), from the scores it
    wrote when trained; None when the files are gone."""
    if not model.scores_path:
        return None
    scores = Path(model.scores_path)
    ids = scores.parent / "item_ids.npy"
    if not scores.is_file() or not ids.is_file():
        return None
    proba = np.load(scores)
    item_ids = np.load(ids)
    classes = list(model.classes)
    top = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=int)
    return {int(i): classes[int(c)] != "none" for i, c in zip(item_ids.tolist(), top, strict=True)}


@dataclass(frozen=True)
class Sample:
    """Items with a human verdict (violating or not) and each one's design weight (1 / its
    inclusion probability, up to a constant), and the words that say where they came from."""

    truth: dict[int, bool]
    weights: dict[int, float]
    method: str


def _majority_truth(
    session: Session, project: Project, items: set[int], start: str | None, end: str
) -> dict[int, bool]:
    """Items' majority class by people's labels made by `end` (from `start`, when given;
    ties and unsure-only left out), violating or not."""
    labels = [
        lab
        for lab in counted_labels(session, project)
        if lab.item_id in items
        and lab.created_at.date().isoformat() <= end
        and (start is None or start <= lab.created_at.date().isoformat())
    ]
    majority = majority_training_labels([lab for lab in labels if label_class(lab) is not None])
    return {item_id: cls != "none" for item_id, (cls, _share) in majority.items()}


def _set_sample(session: Session, es: EvaluationSet, method: str) -> Sample:
    members = list(
        session.scalars(
            select(EvaluationMember).where(
                EvaluationMember.set_id == es.id, EvaluationMember.reference.is_not(None)
            )
        )
    )
    # A sampled set records each stratum's pool size (sets.py `stratum_sizes`); weight N_h/n_h.
    # Older sets do not: their allocation is proportional, so the sample is self-weighting
    # (up to rounding) and equal weights are the design's.
    sizes = (es.source or {}).get("stratum_sizes") or {}
    drawn = Counter(m.stratum for m in members)
    weights = {
        m.item_id: float(sizes[m.stratum]) / drawn[m.stratum] if m.stratum in sizes else 1.0
        for m in members
    }
    truth = {m.item_id: m.reference != "none" for m in members}
    return Sample(truth, weights, method)


def unbiased_sample(session: Session, project: Project, start: str, end: str) -> Sample | None:
    """The sample the accuracy figures come from, in order of preference:

    1. the newest frozen evaluation set sampled from the pool (`evalset sample`: stratified
       random, design-weighted), frozen by the period's end;
    2. the newest prevalence plan drawn by the period's end (stratified by score, weighted by
       1 / inclusion probability), its items' human verdicts by the period's end;
    3. the random share of the selection mix (uniform), labelled in the period;
    4. failing all, the newest frozen label-file set: NOT a sample of the pool, said so.
    """
    end_at = datetime.fromisoformat(end + "T23:59:59.999999+00:00")
    frozen = [
        es
        for es in session.scalars(
            select(EvaluationSet)
            .where(
                EvaluationSet.project_id == project.id,
                EvaluationSet.status == EvaluationSetStatus.frozen,
            )
            .order_by(EvaluationSet.frozen_at.desc(), EvaluationSet.id.desc())
        )
        if es.frozen_at is not None and es.frozen_at <= end_at
    ]
    sampled = [es for es in frozen if es.kind == EvaluationSetKind.sample]
    if sampled:
        es = sampled[0]
        weighted = "weighted by N_h / n_h per stratum" if (es.source or {}).get(
            "stratum_sizes") else "proportional allocation, so self-weighting"  # fmt: skip
        return _set_sample(session, es, (
            f"Method: evaluation set '{es.name}' v{es.version}, a stratified random sample "
            f"(language x modality; {weighted}) of the pool's unlabelled items, drawn by "
            "`workbench evalset sample` and frozen once reviewed; each member's final label "
            "is compared with the means' call (violating or not)."
        ))  # fmt: skip
    plan = session.scalar(
        select(PrevalencePlan)
        .where(PrevalencePlan.project_id == project.id, PrevalencePlan.created_at <= end_at)
        .order_by(PrevalencePlan.created_at.desc(), PrevalencePlan.id.desc())
        .limit(1)
    )
    if plan is not None:
        drawn = {
            int(i): float(pi)
            for i, pi in session.execute(
                select(PrevalenceSample.item_id, PrevalenceSample.inclusion_probability).where(
                    PrevalenceSample.plan_id == plan.id
                )
            )
        }
        truth = _majority_truth(session, project, set(drawn), None, end)
        if truth:
            return Sample(truth, {i: 1.0 / drawn[i] for i in truth}, (
                f"Method: prevalence plan {plan.id} (policy {plan.policy}), a random sample "
                "of the pool stratified by the champion's score, each item weighted by 1 / "
                "its inclusion probability; reviewed items' human labels by the period's end "
                "(majority, ties left out) are compared with the means' call (violating or "
                "not); items not reviewed yet are left out."
            ))  # fmt: skip
    random_items = random_sampled_items(session, project)
    truth = _majority_truth(session, project, random_items, start, end)
    if truth:
        return Sample(truth, dict.fromkeys(truth, 1.0), METHOD)
    files = [es for es in frozen if es.kind == EvaluationSetKind.labels_file]
    if files:
        es = files[0]
        return _set_sample(session, es, (
            f"Method: evaluation set '{es.name}' v{es.version}, made from a label file. It is "
            "NOT an unbiased sample of the pool (no evaluation set sampled with `workbench "
            "evalset sample`, prevalence plan or random-strategy labels exist for the "
            "period): these figures describe that set only. Each member's reference label is "
            "compared with the means' call (violating or not)."
        ))  # fmt: skip
    return None


def _estimates(
    pairs: list[tuple[bool, bool]], weights: list[float]
) -> tuple[Estimate, Estimate, Estimate]:
    flagged = [(t, w) for (p, t), w in zip(pairs, weights, strict=True) if p]
    violating = [(p, w) for (p, t), w in zip(pairs, weights, strict=True) if t]
    return (
        Estimate.design([p == t for p, t in pairs], weights),
        Estimate.design([t for t, _ in flagged], [w for _, w in flagged]),
        Estimate.design([p for p, _ in violating], [w for _, w in violating]),
    )


def champion_at(session: Session, project: Project, at: datetime) -> ModelVersion | None:
    """The champion at `at`: the promotions and rollbacks audited by then replayed as
    `registry.champion_history` does; without any, the current champion if trained by then,
    else the newest version trained by then (a project whose models predate the audit)."""
    stack: list[int] = []
    for ev in session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.project_id == project.id,
            AuditEvent.action.in_([*PROMOTING, ROLLBACK]),
            AuditEvent.entity_type == "model_version",
            AuditEvent.at <= at,
        )
        .order_by(AuditEvent.id)
    ):
        if ev.action == ROLLBACK:
            if stack:
                stack.pop()
        elif ev.details.get("promoted") and ev.entity_id is not None:
            stack.append(int(ev.entity_id))
    models = [
        m
        for m in session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project.id)
            .order_by(ModelVersion.version.desc())
        )
        if m.created_at <= at
    ]
    if stack:
        return next((m for m in models if m.version == stack[-1]), None)
    current = [m for m in models if m.status == ModelStatus.champion]
    return (current or models)[0] if (current or models) else None


def evaluate_automated_means(
    session: Session, project: Project, start: str, end: str
) -> list[MeansEvaluation]:
    """Each automated means in use at the period's end, against the unbiased sample.

    The means here is the classifier head: the champion at the period's end (its calls rank
    items into review). The scan's blocks are not evaluated yet: their negatives (items scanned
    and let through) are not recorded in this database.
    """
    end_at = datetime.fromisoformat(end + "T23:59:59.999999+00:00")
    model = champion_at(session, project, end_at)
    if model is None:
        return []
    predictions = _classifier_predictions(model)
    if predictions is None:
        return []
    sample = unbiased_sample(session, project, start, end)
    if sample is None:
        return []
    scored = [i for i in sorted(sample.truth) if i in predictions]
    pairs = {i: (predictions[i], sample.truth[i]) for i in scored}
    languages = {
        item_id: language
        for item_id, language in session.execute(
            select(Item.id, Item.language).where(Item.id.in_(list(pairs)))
        )
    }
    by_language: dict[str, list[int]] = {}
    for item_id in pairs:
        code = content_language(languages.get(item_id))
        if code:
            by_language.setdefault(code, []).append(item_id)
    method = sample.method
    if len(scored) < len(sample.truth):
        method += (
            f" {len(sample.truth) - len(scored)} sampled item(s) without a score from the "
            "model are left out."
        )

    def of(ids: list[int]) -> tuple[Estimate, Estimate, Estimate]:
        return _estimates([pairs[i] for i in ids], [sample.weights[i] for i in ids])

    acc, prec, rec = of(scored)
    return [
        MeansEvaluation(
            name=f"classifier v{model.version} ({model.head})",
            purpose="ranks content into human review (detection); takes no action alone",
            accuracy=acc,
            precision=prec,
            recall=rec,
            sample_size=len(pairs),
            by_language={
                code: of(ids)
                for code, ids in sorted(by_language.items())
                if len(ids) >= MIN_LANGUAGE_SAMPLE
            },
            method=method,
        )
    ]


METHOD = (
    "Method: the random share of the selection mix (queue entries of strategy 'random') is a "
    "uniform sample of the pool; each sampled item's human labels in the period (majority, "
    "ties left out) are compared with the means' call (violating or not)."
)


def uncategorised_blocks(session: Session, project: Project, start: str, end: str) -> int:
    """Catalogue-sweep blocks in the period that made no enforcement decision: hash-bank
    matches name no policy (sweep.py `blocks_without_policy`), so they have no category."""
    recorded = set(
        session.scalars(
            select(EnforcementDecision.scan_ref).where(
                EnforcementDecision.project_id == project.id,
                EnforcementDecision.scan_ref.is_not(None),
            )
        )
    )
    start_at = datetime.fromisoformat(start + "T00:00:00+00:00")
    end_at = datetime.fromisoformat(end + "T23:59:59.999999+00:00")
    blocks = session.scalars(
        select(Scan.id).where(
            Scan.project_id == project.id,
            Scan.source == "sweep",
            Scan.decision == ScanDecision.block,
            Scan.created_at >= start_at,
            Scan.created_at <= end_at,
        )
    )
    return sum(1 for scan_id in blocks if f"scan-{scan_id}" not in recorded)


def _automated(session: Session, project: Project, start: str, end: str) -> list[Row]:
    decisions = decisions_between(session, project, start, end)
    solely = sum(1 for d in decisions if d.automated_decision == "fully")
    bank = uncategorised_blocks(session, project, start, end)
    s = SECTION_AUTOMATED
    out = [
        Row(ALL, s, SOLELY_AUTOMATED, TOTAL, str(solely + bank),
            f"Decisions whose automated_decision is fully automated ({solely}), plus catalogue-"
            f"sweep blocks on a hash-bank match ({bank}): those name no policy, so they make no "
            "enforcement decision and have no category in the own-initiative counts."),
        Row(ALL, s, NOT_AUTOMATED, TOTAL, str(len(decisions) - solely),
            "Partially automated or not automated decisions (a person decided)."),
    ]  # fmt: skip
    for ev in evaluate_automated_means(session, project, start, end):
        estimates = (("Accuracy", ev.accuracy, "sampled items classified correctly"),
                     ("Precision", ev.precision, "flagged items that people judged violating"),
                     ("Recall", ev.recall, "violating items that the means flagged"))  # fmt: skip
        for what, est, unit in estimates:
            context = f"Automated means: {ev.name}. " + est.context(unit, ev.method)
            out.append(Row(ALL, s, ACCURACY + what, TOTAL, est.text(), context))
        for code, (acc, prec, rec) in ev.by_language.items():
            for what, est, unit in zip(("Accuracy", "Precision", "Recall"), (acc, prec, rec),
                                       (u for _, _, u in estimates), strict=True):  # fmt: skip
                out.append(Row(VLOPS, s, ACCURACY + what, code.lower(), est.text(),
                               f"Automated means: {ev.name}; content language {code}. "
                               + est.context(unit, ev.method)))  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# The report


@dataclass
class Report:
    service: str
    period: str
    rows: list[Row]
    means: list[MeansEvaluation]

    def csv_files(self) -> dict[str, bytes]:
        """File name -> CSV bytes: one file per section plus `all_sections.csv`."""
        out: dict[str, bytes] = {}
        for section, name in sorted(FILES.items(), key=lambda kv: kv[1]):
            out[name] = self._csv([r for r in self.rows if r.section == section])
        out["all_sections.csv"] = self._csv(self.rows)
        return out

    def _csv(self, rows: list[Row]) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow(
                [r.applicability, self.service, self.period, r.section, r.indicator, r.scope,
                 r.value, r.context]
            )  # fmt: skip
        return buf.getvalue().encode()

    def value(self, indicator_start: str, scope: str | None = None) -> str:
        """The first row's value whose indicator starts so, in `scope` (the total by default)."""
        scopes = (scope,) if scope is not None else ("Total", TOTAL)
        for r in self.rows:
            if r.indicator.startswith(indicator_start) and r.scope in scopes:
                return r.value
        return ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "period": self.period,
            "rows": [
                {"section": r.section, "indicator": r.indicator, "scope": r.scope,
                 "value": r.value, "context": r.context}
                for r in self.rows
            ],
        }  # fmt: skip


def build_report(
    session: Session, project: Project, period: str, service: str | None = None
) -> Report:
    start, end = parse_period(period)
    rows = [
        *_own_initiative(session, project, start, end),
        *_complaints(session, project, start, end),
        *_automated(session, project, start, end),
    ]
    means = evaluate_automated_means(session, project, start, end)
    return Report(service or project.name, f"{start}/{end}", rows, means)


def qualitative_draft(report: Report) -> str:
    """A draft of the qualitative description of accuracy indicators and error rates, with the
    figures filled in, for the team to edit (Markdown)."""
    lines = [
        f"# Use of automated means: accuracy and possible rate of error — {report.service}",
        "",
        f"Reporting period: {report.period}. DRAFT generated by the workbench; edit before "
        "publishing.",
        "",
        # Headings: Part 11 (qualitative template) indicators, word for word (module docstring).
        "## Qualitative description of the automated means",
        "",
    ]
    if not report.means:
        lines.append(
            "No automated means could be evaluated for this period (no model version trained "
            "by its end, or no scores on file)."
        )
    for ev in report.means:
        err = 1 - ev.accuracy.value if ev.accuracy.value is not None else None
        lines += [
            f"- **{ev.name}**: {ev.purpose}.",
            f"  - Accuracy {ev.accuracy.text() or 'not estimable'}"
            + (f" (95% Wilson interval {ev.accuracy.low:.4f}–{ev.accuracy.high:.4f})"
               if ev.accuracy.low is not None else "")
            + (f"; possible rate of error {err:.4f}." if err is not None else "."),
            f"  - Precision {ev.precision.text() or 'not estimable'}; recall "
            f"{ev.recall.text() or 'not estimable'}; on {ev.sample_size} items.",
        ]  # fmt: skip
        if ev.by_language:
            langs = ", ".join(
                f"{code} {acc.text()} (n={acc.n})" for code, (acc, _p, _r) in ev.by_language.items()
            )
            lines.append(f"  - Accuracy per language: {langs}.")
    lines += [
        "",
        "## Qualitative description of indicators of accuracy and possible rate of error of "
        "automated means",
        "",
        *([ev.method for ev in report.means] or [METHOD]),
        f"Intervals are {int(CONFIDENCE * 100)}% Wilson score intervals "
        "(statsmodels `proportion_confint`); a design-weighted figure (a stratified sample "
        "whose items had unequal chances) takes its interval on Kish's effective sample size "
        "(sum w)^2 / sum w^2. Languages with fewer than "
        f"{MIN_LANGUAGE_SAMPLE} sampled items get no separate figure.",
        "",
        "## Safeguards applied to the use of automated means",
        "",
        f"- Measures taken solely by automated means in the period: "
        f"{report.value(SOLELY_AUTOMATED)}; not solely automated: "
        f"{report.value(NOT_AUTOMATED)}.",
        f"- Complaints received: {report.value(COMPLAINTS)}; "
        f"reversed: {report.value(COMPLAINTS, 'Decisions reversed')} (share "
        f"{report.value('Share of complaints') or 'not estimable'}); median time to decide "
        f"{report.value(COMPLAINTS, 'Median time') or 'not estimable'} days.",
        "- Every complaint is re-reviewed by a person other than the one who decided.",
        "- [Describe here the human oversight of automated means, thresholds and escalation.]",
        "",
    ]
    return "\n".join(lines)


def write_report(
    session: Session, project: Project, period: str, out_dir: Path, service: str | None = None
) -> dict[str, Any]:
    """Write the report's CSV files and the qualitative draft to `out_dir`; the same period
    and data give the same bytes."""
    report = build_report(session, project, period, service)
    files = report.csv_files()
    files["qualitative_accuracy_draft.md"] = qualitative_draft(report).encode()
    for name, data in sorted(files.items()):
        write_atomic(out_dir / name, data)
    return {
        "project": project.name,
        "service": report.service,
        "period": report.period,
        "rows": len(report.rows),
        "files": sorted(str(out_dir / n) for n in files),
    }


def default_period(session: Session, project: Project) -> str:
    """The months that hold the project's decisions (first day of the first to the last day
    of the last), or the current month when there are none: what the report page opens on."""
    days = sorted(d.application_date for d in decisions_between(session, project))
    today = date.today()
    first = date.fromisoformat(days[0]) if days else today
    last = date.fromisoformat(days[-1]) if days else today
    start = first.replace(day=1)
    following = (last.replace(day=28) + timedelta(days=4)).replace(day=1)
    return f"{start.isoformat()}/{(following - timedelta(days=1)).isoformat()}"


def report_for_page(
    session: Session, project: Project, actor: Actor, period: str, service: str | None = None
) -> tuple[Report, dict[str, bytes]]:
    """The report and its files (CSV and the draft) for leads and admins."""
    require_project_role(
        session, actor, project, Role.lead, action="view the DSA transparency report"
    )
    report = build_report(session, project, period, service)
    files = report.csv_files()
    files["qualitative_accuracy_draft.md"] = qualitative_draft(report).encode()
    return report, files
