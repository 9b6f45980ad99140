"""The scan decision: bank matches first (block beats review), then the champion's per-policy
thresholds, and what to answer when the deadline passed before the model could score.

A pure function of what the checks found, so the API and the catalogue sweep decide alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.db.models import ScanDecision
from workbench.schemas import ProjectSettings, ScanThreshold
from workbench.services.scan.banks.match import BankMatch

_RANK = {ScanDecision.allow: 0, ScanDecision.review: 1, ScanDecision.block: 2}


@dataclass(frozen=True)
class ModelScores:
    """The champion's calibrated probabilities for one piece of content."""

    model_version: int
    model_version_id: int
    scores: Mapping[str, float]  # class -> probability; `none` is "not violating"


@dataclass
class ScanOutcome:
    decision: ScanDecision
    reasons: list[dict[str, Any]] = field(default_factory=list)
    degraded: bool = False
    # "scored", "no_champion", "deadline" (not scored in time), "not_scorable" (no modality the
    # champion reads, or its vectors cannot be reproduced), "skipped" (a bank decided alone).
    model_status: str = "scored"
    model_version_id: int | None = None

    @property
    def automated_detection(self) -> bool:
        # Found by a bank match or a model score over a threshold; notes such as "no champion"
        # are reasons too but detect nothing.
        return any(r["source"] == "hash" or "policy" in r for r in self.reasons)


def thresholds_for(settings: ProjectSettings, policy: str) -> ScanThreshold:
    return settings.scan_thresholds.get(policy, settings.scan_default_thresholds)


def decide(
    matches: Sequence[BankMatch],
    scores: ModelScores | None,
    settings: ProjectSettings,
    *,
    model_status: str,
    degraded: bool = False,
) -> ScanOutcome:
    """One decision with every reason behind it.

    Any bank match takes the bank's action (block beats review) and the model is not needed.
    Otherwise each policy's score is compared with its block and review thresholds; the
    strongest crossed threshold wins. Without scores (no champion, or the deadline passed) the
    answer is allow, or the project's `scan_deadline_decision` when the deadline was missed.
    """
    reasons: list[dict[str, Any]] = [
        {
            "source": "hash",
            "bank": m.bank,
            "action": str(m.action),
            "signal_type": str(m.signal_type),
            "distance": m.distance,
            "content_id": m.content_id,
        }
        for m in matches
    ]
    if matches:
        decision = max((ScanDecision(str(m.action)) for m in matches), key=_RANK.__getitem__)
        return ScanOutcome(decision, reasons, degraded, model_status)
    if scores is None:
        decision = ScanDecision.allow
        if degraded:
            decision = ScanDecision(settings.scan_deadline_decision)
            reasons.append(
                {"source": "deadline", "detail": f"model not scored in time; {decision.value}"}
            )
        elif model_status == "no_champion":
            reasons.append({"source": "model", "detail": "no champion model: hash checks only"})
        return ScanOutcome(decision, reasons, degraded, model_status)
    decision = ScanDecision.allow
    for policy, score in sorted(scores.scores.items(), key=lambda kv: -kv[1]):
        if policy == "none":
            continue
        limits = thresholds_for(settings, policy)
        crossed, threshold = None, None
        if limits.block is not None and score >= limits.block:
            crossed, threshold = ScanDecision.block, limits.block
        elif limits.review is not None and score >= limits.review:
            crossed, threshold = ScanDecision.review, limits.review
        if crossed is None:
            continue
        reasons.append(
            {
                "source": "model",
                "policy": policy,
                "score": round(float(score), 4),
                "threshold": threshold,
                "action": crossed.value,
                "model_version": scores.model_version,
            }
        )
        if _RANK[crossed] > _RANK[decision]:
            decision = crossed
    return ScanOutcome(decision, reasons, degraded, model_status, scores.model_version_id)
