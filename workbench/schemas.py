"""Typed, validated shapes shared by services and interfaces (pydantic)."""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DecisionName = Literal["violating", "not_violating", "unsure"]


class EncoderSettings(BaseModel):
    """Which encoder embeds each modality (names from the encoder registry)."""

    model_config = ConfigDict(extra="forbid")

    text: str = "minilm-l6-v2"
    image: str = "image-stats"
    audio: str = "audio-logmel"
    video: str = "video-frames"
    # Local Hugging Face model directories, when a transformers encoder is chosen.
    image_model_path: str | None = None
    audio_model_path: str | None = None


class ScanThreshold(BaseModel):
    """Model-score thresholds of one policy for the scan decision (None: never by the model)."""

    model_config = ConfigDict(extra="forbid")

    review: float | None = Field(0.5, ge=0.0, le=1.0, description="score at which to hold")
    block: float | None = Field(None, ge=0.0, le=1.0, description="score at which to block")

    @model_validator(mode="after")
    def _block_above_review(self) -> ScanThreshold:
        if self.review is not None and self.block is not None and self.block < self.review:
            raise ValueError(f"block ({self.block}) must not be below review ({self.review})")
        return self


class PromotionRule(BaseModel):
    """When a challenger replaces the champion, judged on the project's frozen evaluation sets."""

    model_config = ConfigDict(extra="forbid")

    max_macro_ap_drop: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="promote unless the paired bootstrap's lower bound of (challenger - "
        "champion) macro average precision is below minus this margin",
    )
    mcnemar_alpha: float = Field(
        0.05,
        gt=0.0,
        lt=1.0,
        description="and unless a policy's recall at its threshold is worse by McNemar's test "
        "at this level",
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="bootstrap interval level")
    n_resamples: int = Field(1000, ge=100, le=100_000, description="bootstrap resamples")


class ProjectSettings(BaseModel):
    """Per-project knobs. Unknown keys are refused so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    encoders: EncoderSettings = Field(default_factory=EncoderSettings)
    retrain_every_n_labels: int = Field(
        200, ge=0, description="start a retrain round after this many new labels; 0 = never"
    )
    overlap_share: float = Field(
        0.1, ge=0.0, le=1.0, description="share of queued items reviewed by overlap_k reviewers"
    )
    overlap_k: int = Field(2, ge=2, le=20, description="reviewers per overlap item")
    gold_rate: float = Field(
        0.02, ge=0.0, le=0.5, description="share of a reviewer's queue that is gold items"
    )
    gold_alert_threshold: float = Field(
        0.7, ge=0.0, le=1.0, description="alert when a reviewer's gold accuracy is below this"
    )
    gold_alert_min_answers: int = Field(
        20, ge=1, description="gold answers a reviewer needs before an alert can fire"
    )
    gold_window_days: int = Field(
        90, ge=0, description="gold accuracy and alerts count the last N days; 0 = all time"
    )
    adjudicate_low_alpha_slices: bool = Field(
        True, description="adjudication refresh also opens cases in slices with low alpha"
    )
    adjudication_alpha_threshold: float = Field(
        0.667, ge=-1.0, le=1.0, description="a slice's Krippendorff's alpha below this is low"
    )
    adjudication_min_slice_items: int = Field(
        10, ge=2, description="items with 2+ labels a slice needs before its alpha is judged"
    )
    selection_mix: dict[str, float] = Field(
        default_factory=lambda: {"cluster_margin": 0.7, "seals": 0.2, "random": 0.1},
        description="strategy name -> share of each selected batch; shares sum to 1",
    )
    batch_size: int = Field(100, ge=1, le=100_000, description="items per selection batch")
    lease_seconds: int = Field(
        900, ge=10, le=86_400, description="a leased item returns to the queue after this"
    )
    show_model_suggestion_after_submit: bool = Field(
        False, description="reviewers see the model's prediction after they submit (never before)"
    )
    label_aggregation: Literal[
        "dawid_skene", "majority", "mace", "glad", "majority_ties_dropped"
    ] = Field("dawid_skene", description="how several reviewers' labels become one training label")
    near_duplicate_threshold: float = Field(
        0.95, gt=0.0, le=1.0, description="cosine above which two items are near-duplicates"
    )
    engine: Literal["local", "ray"] = Field(
        "local",
        description="where embedding and pool scoring run: this process, or Ray (RAY_ADDRESS "
        "names a cluster; without it a local Ray starts); `--engine` overrides it per command",
    )
    propagate_to_duplicates: bool = Field(
        False,
        description="copy each reviewer's label to the item's duplicate group (source "
        "'propagated': training data for unlabelled members, never counted as a human label)",
    )

    scan_thresholds: dict[str, ScanThreshold] = Field(
        default_factory=dict,
        description="policy code -> {review, block} score thresholds of the scan decision; "
        "policies not named use scan_default_thresholds",
    )
    # Blocking by a model score alone is opt-in: by default the model only holds for review.
    scan_default_thresholds: ScanThreshold = Field(default_factory=ScanThreshold)
    scan_deadline_decision: Literal["allow", "review", "block"] = Field(
        "allow",
        description="the answer when a scan's deadline passes before the model has scored it "
        "and no bank matched: allow (fail open), review or block (fail closed)",
    )
    target_precision: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="each policy's operating threshold is the lowest whose precision on the "
        "validation split reaches this",
    )
    promotion_rule: PromotionRule = Field(default_factory=PromotionRule)
    drift_psi_alert: float = Field(
        0.2,
        gt=0.0,
        description="`workbench drift` alerts when a class score's population stability index "
        "(10 quantile bins of the reference window) reaches this",
    )
    drift_auc_alert: float = Field(
        0.7,
        ge=0.5,
        le=1.0,
        description="`workbench drift` alerts when a classifier tells reference from current "
        "item vectors with this cross-validated ROC-AUC or more",
    )

    @field_validator("selection_mix")
    @classmethod
    def _mix_sums_to_one(cls, mix: dict[str, float]) -> dict[str, float]:
        if not mix:
            raise ValueError("selection_mix needs at least one strategy")
        bad = {k: v for k, v in mix.items() if not (0.0 <= v <= 1.0)}
        if bad:
            raise ValueError(f"each share must be between 0 and 1, found {bad}")
        total = sum(mix.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"shares must sum to 1, found {total:g} in {mix}")
        return mix


SETTING_KEYS_HELP = "dotted keys, e.g. batch_size, overlap_k, encoders.text, selection_mix"


def parse_setting_value(raw: str) -> Any:
    """A CLI value: JSON when it parses (numbers, booleans, objects), else the plain string."""
    import json

    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


class SeverityLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: int = Field(ge=1, le=4)
    name: str = Field(min_length=1)
    description: str = ""


class PolicySpec(BaseModel):
    """One policy code as written in a taxonomy file."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    title: str = Field(min_length=1, max_length=200)
    guideline: str = Field(min_length=1)
    severity_scale: list[SeverityLevel] = Field(default_factory=list)
    dsa_category: str | None = None
    # The default action on a violation, for EU DSA decisions (services/report/decisions.py):
    # restriction, ground ("illegal" or "incompatible"), terms_clause, legal_ground, explanation.
    dsa_enforcement: dict[str, str] | None = None

    @field_validator("severity_scale")
    @classmethod
    def _levels_unique(cls, scale: list[SeverityLevel]) -> list[SeverityLevel]:
        levels = [s.level for s in scale]
        if len(set(levels)) != len(levels):
            raise ValueError(f"severity levels repeat: {levels}")
        return sorted(scale, key=lambda s: s.level)


class TaxonomySpec(BaseModel):
    """A whole policy taxonomy, as loaded from a JSON file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    decisions: list[DecisionName] = Field(default_factory=lambda: list(get_args(DecisionName)))
    policies: list[PolicySpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _codes_unique_and_none_present(self) -> TaxonomySpec:
        codes = [p.code for p in self.policies]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        if dup:
            raise ValueError(f"policy codes repeat: {dup}")
        if "none" not in codes:
            raise ValueError("a taxonomy needs the code 'none' (no violation)")
        return self
