"""Labels: what a valid label is. The shape of one judgement (`LabelInput`), and the rules
that need the taxonomy and the item (`check_label`), shared by every way a label is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from workbench.db.models import (
    Decision,
    Item,
    LabelSource,
    MediaAsset,
    Modality,
    PolicyVersion,
    Project,
)
from workbench.errors import Problem, WorkbenchError
from workbench.services.taxonomy import current_policy_version

NO_VIOLATION = "none"
_MEDIA_MODALITIES = {Modality.audio.value, Modality.video.value}
# Spans of audio and video may end a little after a probed duration (container rounding).
_DURATION_TOLERANCE_S = 1e-3
# The keys of a span, in the one order files write them.
SPAN_KEYS = ("start", "end", "start_s", "end_s")
IN_LIST_SIZE = 500  # values per IN (...) list: well under every backend's parameter limit

# --------------------------------------------------------------------------------------------
# Input


def text_problem(value: str) -> str | None:
    # Postgres cannot store NUL in text, and a lone surrogate cannot be encoded as UTF-8.
    if "\x00" in value:
        return "contains a NUL character (\\x00), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def _canonical_span(span: Any, n: int) -> dict[str, Any]:
    where = f"span {n + 1}"
    if not isinstance(span, dict):
        raise ValueError(f"{where}: expected an object, found {type(span).__name__}")
    # Parquet stores spans as structs with all four fields; the absent ones come back as null.
    span = {k: v for k, v in span.items() if v is not None}
    keys = set(span)
    if keys == {"start", "end"}:
        start, end = span["start"], span["end"]
        for name, v in (("start", start), ("end", end)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(
                    f"{where}: {name} must be an integer character offset, found {v!r}"
                )
        if start < 0 or start >= end:
            raise ValueError(f"{where}: needs 0 <= start < end, found start {start}, end {end}")
        return {"start": start, "end": end}
    if keys == {"start_s", "end_s"}:
        start_s, end_s = span["start_s"], span["end_s"]
        for name, v in (("start_s", start_s), ("end_s", end_s)):
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{where}: {name} must be a number of seconds, found {v!r}")
        if start_s < 0 or start_s >= end_s:
            raise ValueError(
                f"{where}: needs 0 <= start_s < end_s, found start_s {start_s}, end_s {end_s}"
            )
        return {"start_s": float(start_s), "end_s": float(end_s)}
    raise ValueError(
        f"{where}: expected {{start, end}} (text characters) or {{start_s, end_s}} (seconds), "
        f"found keys {sorted(keys)}"
    )


class LabelInput(BaseModel):
    """One judgement as a reviewer (or a file) gives it, checked for shape but not yet against
    the item and the taxonomy (that needs the database: see `record_label`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Decision
    policies: list[StrictStr] = Field(default_factory=list)
    severity: Annotated[StrictInt, Field(ge=1, le=4)] | None = None
    rationale: StrictStr | None = None
    # Text: {"start", "end"} character offsets (Python code points, end exclusive);
    # audio/video: {"start_s", "end_s"} seconds.
    spans: list[dict[str, Any]] = Field(default_factory=list)
    confidence: Annotated[StrictFloat, Field(ge=0.0, le=1.0)] | None = None
    # Bounded by the 32-bit column.
    time_spent_ms: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    created_at: AwareDatetime | None = None  # default: now
    idempotency_key: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    # The idempotency key of the label this one corrects.
    supersedes: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    policy_version: StrictInt | None = None  # default: the project's current version

    @field_validator("rationale")
    @classmethod
    def _rationale(cls, value: str | None) -> str | None:
        # One spelling of "no rationale", so a CSV round trip (empty cell) is exact.
        if value == "":
            return None
        if value is not None and (problem := text_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("idempotency_key", "supersedes")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and (problem := text_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("policies")
    @classmethod
    def _policies(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if problem := text_problem(code):
                raise ValueError(f"code {code!r} {problem}")
        dup = sorted({c for c in codes if codes.count(c) > 1})
        if dup:
            raise ValueError(f"codes repeat: {dup}")
        return codes

    @field_validator("spans")
    @classmethod
    def _spans(cls, spans: list[Any]) -> list[dict[str, Any]]:
        return [_canonical_span(s, n) for n, s in enumerate(spans)]

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


def validation_problems(exc: ValidationError, **where: Any) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = err["loc"]
        name = str(loc[0]) if loc else None
        msg = err["msg"].removeprefix("Value error, ")
        if len(loc) > 1:
            msg = f"{msg} (at {'.'.join(str(p) for p in loc[1:])})"
        problems.append(Problem(field=name, reason=msg, **where))
    return problems


def parse_label_input(data: dict[str, Any]) -> LabelInput:
    """Build a LabelInput, turning pydantic's errors into located Problems."""
    try:
        return LabelInput.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise WorkbenchError(f"invalid label: {problems[0]}", problems) from None


# --------------------------------------------------------------------------------------------
# Rules that need the taxonomy and the item


@dataclass(frozen=True)
class PolicyRules:
    """The codes of one policy version and the severity levels each code's scale defines."""

    policy_version_id: int
    version: int
    levels: dict[str, frozenset[int]]

    @classmethod
    def of(cls, pv: PolicyVersion) -> PolicyRules:
        return cls(
            policy_version_id=pv.id,
            version=pv.version,
            levels={
                p.code: frozenset(int(s["level"]) for s in p.severity_scale) for p in pv.policies
            },
        )


@dataclass(frozen=True)
class ItemFacts:
    """What span validation needs to know about an item."""

    id: int
    external_id: str
    text_length: int | None
    has_media: bool
    duration_s: float | None  # the longest audio/video asset, when probed

    @classmethod
    def of(cls, item: Item, duration_s: float | None = None) -> ItemFacts:
        return cls(
            id=item.id,
            external_id=item.external_id,
            text_length=None if item.text is None else len(item.text),
            has_media=bool(_MEDIA_MODALITIES.intersection(item.modalities or [])),
            duration_s=duration_s,
        )


def check_label(
    data: LabelInput, item: ItemFacts, rules: PolicyRules, source: LabelSource
) -> list[Problem]:
    """Every reason `data` cannot be a label of `item` under `rules` (empty when it can)."""
    problems: list[Problem] = []

    def bad(name: str, reason: str) -> None:
        problems.append(Problem(field=name, reason=reason))

    unknown = [c for c in data.policies if c not in rules.levels]
    if unknown:
        known = ", ".join(sorted(rules.levels))
        bad(
            "policies",
            f"unknown policy code(s) {unknown} in policy version {rules.version} (known: {known})",
        )
    codes = [c for c in data.policies if c in rules.levels]
    violations = [c for c in codes if c != NO_VIOLATION]
    if NO_VIOLATION in data.policies:
        if data.decision != Decision.not_violating:
            bad("policies", f"the code 'none' goes only with not_violating, not {data.decision}")
        elif len(data.policies) > 1:
            bad("policies", "the code 'none' cannot be combined with other codes")
    if data.decision == Decision.violating and not violations and not unknown:
        bad("policies", "a violating label needs at least one policy code other than 'none'")
    if data.decision == Decision.not_violating and violations:
        bad(
            "policies",
            f"a not_violating label cannot carry violation codes {violations} "
            "(use 'none' or no code)",
        )
    if data.severity is not None:
        allowed = sorted(set().union(*(rules.levels[c] for c in violations)) if violations else [])
        if not violations:
            bad("severity", "a severity needs a policy code whose scale defines it")
        elif data.severity not in allowed:
            bad(
                "severity",
                f"severity {data.severity} is not on the scale of {violations} "
                f"(allowed: {allowed})",
            )
    if (
        source == LabelSource.human
        and data.decision == Decision.violating
        and not (data.rationale or "").strip()
    ):
        bad("rationale", "a reviewer's violating label needs a rationale")
    for n, span in enumerate(data.spans, start=1):
        if "start" in span:
            if item.text_length is None:
                bad("spans", f"span {n}: a text span, but the item has no text")
            elif span["end"] > item.text_length:
                bad(
                    "spans",
                    f"span {n}: end {span['end']} is past the end of the item's text "
                    f"({item.text_length} characters)",
                )
        else:
            if not item.has_media:
                bad("spans", f"span {n}: a time span, but the item has no audio or video")
            elif (
                item.duration_s is not None
                and span["end_s"] > item.duration_s + _DURATION_TOLERANCE_S
            ):
                bad(
                    "spans",
                    f"span {n}: end_s {span['end_s']} is past the end of the media "
                    f"({item.duration_s} s)",
                )
    return problems


def media_durations(session: Session, item_ids: Iterable[int]) -> dict[int, float]:
    """The longest probed audio/video duration of each item that has one."""
    out: dict[int, float] = {}
    ids = list(item_ids)
    for i in range(0, len(ids), IN_LIST_SIZE):
        rows = session.execute(
            select(MediaAsset.item_id, func.max(MediaAsset.duration_seconds))
            .where(
                MediaAsset.item_id.in_(ids[i : i + IN_LIST_SIZE]),
                MediaAsset.modality.in_([Modality.audio, Modality.video]),
                MediaAsset.duration_seconds.is_not(None),
            )
            .group_by(MediaAsset.item_id)
        )
        out.update({item_id: float(d) for item_id, d in rows if d is not None})
    return out


def item_facts(session: Session, item_ids: Iterable[int]) -> dict[int, ItemFacts]:
    """`ItemFacts` of many items in a few queries (columns only: a text's length is enough)."""
    ids = sorted(set(item_ids))
    found: list[tuple[int, str, int | None, list[str]]] = []
    for i in range(0, len(ids), IN_LIST_SIZE):
        stmt = select(Item.id, Item.external_id, func.length(Item.text), Item.modalities).where(
            Item.id.in_(ids[i : i + IN_LIST_SIZE])
        )
        found.extend((i, eid, length, mods) for i, eid, length, mods in session.execute(stmt))
    return _facts_of(session, found)


def _facts_of(
    session: Session, found: list[tuple[int, str, int | None, list[str]]]
) -> dict[int, ItemFacts]:
    """`ItemFacts` by item id from (id, external_id, text length, modalities) rows."""
    media_ids = [i for i, _, _, mods in found if _MEDIA_MODALITIES.intersection(mods or [])]
    durations = media_durations(session, media_ids) if media_ids else {}
    return {
        i: ItemFacts(
            id=i,
            external_id=eid,
            text_length=length,
            has_media=bool(_MEDIA_MODALITIES.intersection(mods or [])),
            duration_s=durations.get(i),
        )
        for i, eid, length, mods in found
    }


def item_facts_by_external_id(
    session: Session, project: Project, external_ids: Iterable[str]
) -> dict[str, ItemFacts]:
    """`ItemFacts` of the project's items with these external ids, by external id."""
    found: list[tuple[int, str, int | None, list[str]]] = []
    ids = sorted(set(external_ids))
    for i in range(0, len(ids), IN_LIST_SIZE):
        stmt = select(Item.id, Item.external_id, func.length(Item.text), Item.modalities).where(
            Item.project_id == project.id, Item.external_id.in_(ids[i : i + IN_LIST_SIZE])
        )
        found.extend((i, eid, length, mods) for i, eid, length, mods in session.execute(stmt))
    return {f.external_id: f for f in _facts_of(session, found).values()}


def policy_rules(session: Session, project: Project, version: int | None) -> PolicyRules:
    """The rules of one of the project's policy versions (None: the current one)."""
    if version is None:
        return PolicyRules.of(current_policy_version(session, project))
    pv = session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.project_id == project.id, PolicyVersion.version == version)
        .options(selectinload(PolicyVersion.policies))
    )
    if pv is None:
        raise WorkbenchError(
            f"project {project.name!r} has no policy version {version}",
            [Problem(field="policy_version", reason=f"no policy version {version}")],
        )
    return PolicyRules.of(pv)
