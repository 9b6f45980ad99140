"""Labels: record one judgement (review UI, queue, import) and move label files in and out.

Labels are append-only: a correction is a new label that supersedes the old one, and every
submission carries an idempotency key, so a retry or a re-import never makes a second label.
Export writes every field, and importing an export gives back the same labels byte for byte.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO

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
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, selectinload

from workbench.db.models import (
    Decision,
    Item,
    Label,
    LabelSource,
    MediaAsset,
    Modality,
    PolicyVersion,
    Project,
    Role,
    User,
)
from workbench.db.types import utcnow
from workbench.errors import Problem, WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.ingest.tabular import (
    Format,
    Record,
    detect_format,
    iter_records,
    write_rejects,
)
from workbench.services.labels.current import (
    is_superseded,
)
from workbench.services.labels.current import (
    superseded as superseded_clause,
)
from workbench.services.taxonomy import current_policy_version, list_policy_versions
from workbench.services.users import validate_user_name

NO_VIOLATION = "none"

# Export order of the columns; an import accepts exactly these (only the first three required).
EXPORT_COLUMNS: tuple[str, ...] = (
    "external_id",
    "reviewer",
    "decision",
    "policies",
    "severity",
    "rationale",
    "spans",
    "confidence",
    "time_spent_ms",
    "policy_version",
    "source",
    "created_at",
    "idempotency_key",
    "supersedes",
    "superseded",
)
REQUIRED_COLUMNS = ("external_id", "reviewer", "decision")
_MEDIA_MODALITIES = {Modality.audio.value, Modality.video.value}
# Spans of audio and video may end a little after a probed duration (container rounding).
_DURATION_TOLERANCE_S = 1e-3
_SPAN_KEYS = ("start", "end", "start_s", "end_s")
_CHUNK = 500  # values per IN (...) list: well under every backend's parameter limit


# --------------------------------------------------------------------------------------------
# Input


def _text_problem(value: str) -> str | None:
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
        if value is not None and (problem := _text_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("idempotency_key", "supersedes")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and (problem := _text_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("policies")
    @classmethod
    def _policies(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if problem := _text_problem(code):
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


def _validation_problems(exc: ValidationError, **where: Any) -> list[Problem]:
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
        problems = _validation_problems(exc)
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
    for i in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(MediaAsset.item_id, func.max(MediaAsset.duration_seconds))
            .where(
                MediaAsset.item_id.in_(ids[i : i + _CHUNK]),
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
    for i in range(0, len(ids), _CHUNK):
        stmt = select(Item.id, Item.external_id, func.length(Item.text), Item.modalities).where(
            Item.id.in_(ids[i : i + _CHUNK])
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


# --------------------------------------------------------------------------------------------
# Queries


def find_label(session: Session, idempotency_key: str) -> Label | None:
    return session.scalar(select(Label).where(Label.idempotency_key == idempotency_key))


# --------------------------------------------------------------------------------------------
# Recording one label


def _same_key_elsewhere(existing: Label, key: str) -> WorkbenchError:
    return WorkbenchError(
        f"idempotency key {key!r} already belongs to another label "
        f"(item {existing.item.external_id!r}, reviewer {existing.reviewer.name!r}); "
        "a key names exactly one submission",
        [Problem(field="idempotency_key", reason="already used by a different label")],
    )


def require_may_record(actor: Actor, reviewer: User, source: LabelSource) -> None:
    """Refuse unless `actor` may record labels in `reviewer`'s name (one label or a batch)."""
    require_role(actor, Role.reviewer, action="record labels")
    if not actor.is_system and actor.user_id != reviewer.id:
        require_role(actor, Role.lead, action="record labels in another reviewer's name")
    if source == LabelSource.human and reviewer.disabled:
        raise WorkbenchError(f"user {reviewer.name!r} is disabled and cannot record labels")


def record_label(
    session: Session,
    project: Project,
    item: Item,
    reviewer: User,
    data: LabelInput,
    *,
    source: LabelSource,
    actor: Actor,
    audit: bool = True,
) -> tuple[Label, bool]:
    """Record one label; returns (label, created).

    The same idempotency key again returns the label it made (created False), so a double click
    or a retry is harmless. Raises WorkbenchError, with every problem listed, for a label that
    breaks the taxonomy, the item's bounds or the correction chain.
    """
    require_may_record(actor, reviewer, source)
    if item.project_id != project.id:
        raise WorkbenchError(
            f"item {item.external_id!r} belongs to another project, not {project.name!r}"
        )

    existing = find_label(session, data.idempotency_key)
    if existing is not None:
        if existing.item_id == item.id and existing.reviewer_id == reviewer.id:
            return existing, False
        raise _same_key_elsewhere(existing, data.idempotency_key)

    pv = (
        current_policy_version(session, project)
        if data.policy_version is None
        else _policy_version(session, project, data.policy_version)
    )
    duration = media_durations(session, [item.id]).get(item.id)
    problems = check_label(data, ItemFacts.of(item, duration), PolicyRules.of(pv), source)
    created_at = data.created_at or utcnow()

    target: Label | None = None
    if data.supersedes is not None:
        target = find_label(session, data.supersedes)
        reason = _supersede_problem(target, item.id, created_at)
        if reason is None and target is not None and is_superseded(session, target):
            reason = "that label was already corrected; supersede its latest correction instead"
        if reason:
            problems.append(Problem(field="supersedes", reason=reason))
    if problems:
        raise WorkbenchError(
            f"invalid label for item {item.external_id!r}: {problems[0]}", problems
        )

    label = _new_label(project, item.id, reviewer.id, pv.id, data, source, created_at)
    label.supersedes = target
    try:
        with session.begin_nested():
            session.add(label)
            session.flush()
    except IntegrityError:
        # A concurrent submission won the race: the same key (a retry in another tab), or
        # another correction of the same label (supersedes_id is UNIQUE).
        again = find_label(session, data.idempotency_key)
        if again is not None:
            if again.item_id == item.id and again.reviewer_id == reviewer.id:
                return again, False
            raise _same_key_elsewhere(again, data.idempotency_key) from None
        if target is not None:
            raise WorkbenchError(
                f"label {data.supersedes!r} was corrected by another label at the same time; "
                "reload and correct the latest one",
                [Problem(field="supersedes", reason="already corrected by another label")],
            ) from None
        raise
    if audit:
        record_event(
            session,
            actor,
            "label.recorded",
            project_id=project.id,
            entity_type="label",
            entity_id=label.id,
            details={
                "item": item.external_id,
                "reviewer": reviewer.name,
                "decision": data.decision.value,
                "policies": list(data.policies),
                "source": source.value,
                "supersedes": data.supersedes,
            },
        )
    return label, True


def _policy_version(session: Session, project: Project, version: int) -> PolicyVersion:
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
    return pv


def _supersede_problem(target: Label | None, item_id: int, created_at: datetime) -> str | None:
    if target is None:
        return "no label with that idempotency key"
    if target.item_id != item_id:
        return "that label is of another item; a correction must be of the same item"
    if created_at < target.created_at:
        return "a correction cannot be older than the label it corrects (created_at)"
    return None


def label_values(
    project: Project,
    item_id: int,
    reviewer_id: int,
    policy_version_id: int,
    data: LabelInput,
    source: LabelSource,
    created_at: datetime,
) -> dict[str, Any]:
    return {
        "project_id": project.id,
        "item_id": item_id,
        "reviewer_id": reviewer_id,
        "policy_version_id": policy_version_id,
        "decision": data.decision,
        "policies": list(data.policies),
        "severity": data.severity,
        "rationale": data.rationale,
        "spans": [dict(s) for s in data.spans],
        "confidence": data.confidence,
        "time_spent_ms": data.time_spent_ms,
        "source": source,
        "idempotency_key": data.idempotency_key,
        "created_at": created_at,
    }


def _new_label(
    project: Project,
    item_id: int,
    reviewer_id: int,
    policy_version_id: int,
    data: LabelInput,
    source: LabelSource,
    created_at: datetime,
) -> Label:
    return Label(
        **label_values(project, item_id, reviewer_id, policy_version_id, data, source, created_at)
    )


# --------------------------------------------------------------------------------------------
# Records: the one shape of a label in files


def _record(
    label: Any,  # a Label, or a row with the same column names
    *,
    external_id: str,
    reviewer: str,
    policy_version: int,
    supersedes: str | None,
    superseded: bool,
) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "reviewer": reviewer,
        "decision": label.decision.value,
        "policies": list(label.policies or []),
        "severity": label.severity,
        "rationale": label.rationale if label.rationale != "" else None,
        # One key order on both backends (Postgres JSONB reorders object keys).
        "spans": [{k: s[k] for k in _SPAN_KEYS if k in s} for s in label.spans or []],
        "confidence": label.confidence,
        "time_spent_ms": label.time_spent_ms,
        "policy_version": policy_version,
        "source": label.source.value,
        "created_at": label.created_at,
        "idempotency_key": label.idempotency_key,
        "supersedes": supersedes,
        "superseded": superseded,
    }


def label_as_record(label: Label, *, superseded: bool | None = None) -> dict[str, Any]:
    """A label as one export record (created_at stays a datetime; writers format it)."""
    if superseded is None:
        from sqlalchemy.orm import object_session

        session = object_session(label)
        superseded = session is not None and is_superseded(session, label)
    return _record(
        label,
        external_id=label.item.external_id,
        reviewer=label.reviewer.name,
        policy_version=label.policy_version.version,
        supersedes=label.supersedes.idempotency_key if label.supersedes else None,
        superseded=superseded,
    )


def iter_label_records(session: Session, project: Project) -> Iterator[dict[str, Any]]:
    """Every label of the project as a record, by created_at then id, without a query per row."""
    older = aliased(Label)
    # Columns rather than Label entities: export touches every label once, read-only.
    columns = (
        Label.decision,
        Label.policies,
        Label.severity,
        Label.rationale,
        Label.spans,
        Label.confidence,
        Label.time_spent_ms,
        Label.source,
        Label.created_at,
        Label.idempotency_key,
    )
    stmt = (
        select(
            *columns,
            Item.external_id,
            User.name,
            PolicyVersion.version,
            older.idempotency_key.label("supersedes_key"),
            superseded_clause().label("superseded"),
        )
        .join(Item, Item.id == Label.item_id)
        .join(User, User.id == Label.reviewer_id)
        .join(PolicyVersion, PolicyVersion.id == Label.policy_version_id)
        .outerjoin(older, older.id == Label.supersedes_id)
        .where(Label.project_id == project.id)
        .order_by(Label.created_at, Label.id)
        .execution_options(yield_per=1000)
    )
    for row in session.execute(stmt):
        external_id, reviewer, version, supersedes, superseded = row[len(columns) :]
        yield _record(
            row,
            external_id=external_id,
            reviewer=reviewer,
            policy_version=version,
            supersedes=supersedes,
            superseded=bool(superseded),
        )


# --------------------------------------------------------------------------------------------
# Export


def _iso(value: datetime) -> str:
    return value.isoformat()


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "policies":
        return ";".join(value)
    if name == "spans":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if name == "created_at":
        return _iso(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return str(value)


def _json_value(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "created_at": _iso(record["created_at"])}


def _parquet_schema() -> Any:
    import pyarrow as pa

    span = pa.struct(
        [
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
        ]
    )
    return pa.schema(
        [
            ("external_id", pa.string()),
            ("reviewer", pa.string()),
            ("decision", pa.string()),
            ("policies", pa.list_(pa.string())),
            ("severity", pa.int64()),
            ("rationale", pa.string()),
            ("spans", pa.list_(span)),
            ("confidence", pa.float64()),
            ("time_spent_ms", pa.int64()),
            ("policy_version", pa.int64()),
            ("source", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("idempotency_key", pa.string()),
            ("supersedes", pa.string()),
            ("superseded", pa.bool_()),
        ]
    )


def write_label_records(records: Iterable[dict[str, Any]], fmt: Format, sink: BinaryIO) -> int:
    """Write records to a binary stream in `fmt`; returns how many."""
    n = 0
    if fmt == "jsonl":
        for rec in records:
            line = json.dumps(_json_value(rec), ensure_ascii=False) + "\n"
            sink.write(line.encode("utf-8"))
            n += 1
    elif fmt == "csv":
        # newline="": the csv module writes \r\n itself and quotes fields that hold \r or \n,
        # so rationales with any line ending come back unchanged.
        text = io.TextIOWrapper(sink, encoding="utf-8", newline="", write_through=True)
        try:
            writer = csv.writer(text)
            writer.writerow(EXPORT_COLUMNS)
            for rec in records:
                writer.writerow([_csv_cell(c, rec[c]) for c in EXPORT_COLUMNS])
                n += 1
            text.flush()
        finally:
            text.detach()  # leave the caller's stream open
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _parquet_schema()
        with pq.ParquetWriter(sink, schema) as writer:
            batch: list[dict[str, Any]] = []

            def flush() -> None:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch.clear()

            for rec in records:
                batch.append(rec)
                n += 1
                if len(batch) >= 10_000:
                    flush()
            if batch or n == 0:
                flush()
    return n


def export_labels(session: Session, project: Project, fmt: Format, sink: BinaryIO) -> int:
    """Write every label of the project, with every field, to `sink`; returns the count."""
    return write_label_records(iter_label_records(session, project), fmt, sink)


def export_labels_to_file(session: Session, project: Project, fmt: Format, path: Path) -> int:
    """Like `export_labels`, written atomically: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            n = export_labels(session, project, fmt, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


# --------------------------------------------------------------------------------------------
# Import


@dataclass
class LabelImportResult:
    """What an import did: rows read, labels added, rows already present, rows rejected."""

    project: str
    file: str
    format: str
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    rejected: int = 0
    users_created: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rejects_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "file": self.file,
            "format": self.format,
            "rows": self.rows,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "users_created": self.users_created,
            "rejects_file": self.rejects_file,
        }


@dataclass
class _Row:
    line: int
    external_id: str
    reviewer: str
    source: LabelSource
    data: LabelInput


class _RowError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems


def import_key(project: str, external_id: str, reviewer: str, data: LabelInput) -> str:
    """The idempotency key of an imported row that brings none: the same row, the same key."""
    canonical = json.dumps(
        [
            project,
            external_id,
            reviewer,
            data.decision.value,
            list(data.policies),
            data.severity,
            data.rationale,
            list(data.spans),
            None if data.created_at is None else _iso(data.created_at),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return "import:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _cell_int(name: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _RowError(
                [Problem(field=name, reason=f"expected an integer, found {value!r}")]
            ) from None
    return value


def _cell_float(name: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _RowError(
                [Problem(field=name, reason=f"expected a number, found {value!r}")]
            ) from None
    return value


def _cell_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _RowError(
                [
                    Problem(
                        field="created_at",
                        reason=f"not an ISO 8601 time: {value!r} "
                        "(expected e.g. 2024-05-01T12:00:00Z)",
                    )
                ]
            ) from None
    if isinstance(value, datetime) and value.tzinfo is None:
        raise _RowError(
            [
                Problem(
                    field="created_at",
                    reason=f"{value.isoformat()} has no time zone (add Z or +02:00)",
                )
            ]
        )
    if not isinstance(value, datetime):
        raise _RowError(
            [Problem(field="created_at", reason=f"expected an ISO 8601 time, found {value!r}")]
        )
    return value


def _cell_text(name: str, value: Any) -> str:
    # Numeric ids are common in JSONL and Parquet; they name the same item as their text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _RowError([Problem(field=name, reason=f"required, found {value!r}")])
    if problem := _text_problem(value):
        raise _RowError([Problem(field=name, reason=problem)])
    return value


def _parse_row(rec: Record, project: str) -> _Row:
    raw = rec.data
    unknown = [k for k in raw if k not in EXPORT_COLUMNS]
    if unknown:
        raise _RowError(
            [
                Problem(
                    field=k,
                    reason=f"unknown column (known: {', '.join(EXPORT_COLUMNS)})",
                )
                for k in unknown
            ]
        )
    missing = [c for c in REQUIRED_COLUMNS if _blank(raw.get(c))]
    if missing:
        raise _RowError(
            [Problem(field=c, reason="required, but missing or empty") for c in missing]
        )
    external_id = _cell_text("external_id", raw["external_id"])
    reviewer = _cell_text("reviewer", raw["reviewer"])
    try:
        validate_user_name(reviewer)
    except WorkbenchError as exc:
        raise _RowError([Problem(field="reviewer", reason=exc.message)]) from None

    data: dict[str, Any] = {"decision": raw["decision"]}
    policies = raw.get("policies")
    if isinstance(policies, str):
        # CSV: "hate;harassment". Blanks around codes are tolerated, empty parts are not codes.
        policies = [c.strip() for c in policies.split(";") if c.strip()]
    data["policies"] = [] if policies is None else policies
    spans = raw.get("spans")
    if isinstance(spans, str):
        if spans.strip():
            try:
                spans = json.loads(spans)
            except json.JSONDecodeError as exc:
                raise _RowError(
                    [Problem(field="spans", reason=f"not JSON: {exc.msg} (column {exc.colno})")]
                ) from None
        else:
            spans = None
    data["spans"] = [] if spans is None else spans
    for name in ("severity", "time_spent_ms", "policy_version"):
        if not _blank(raw.get(name)):
            data[name] = _cell_int(name, raw[name])
    if not _blank(raw.get("confidence")):
        data["confidence"] = _cell_float("confidence", raw["confidence"])
    if "rationale" in raw:
        data["rationale"] = raw["rationale"]
    if not _blank(raw.get("created_at")):
        data["created_at"] = _cell_datetime(raw["created_at"])
    for name in ("idempotency_key", "supersedes"):
        if not _blank(raw.get(name)):
            data[name] = raw[name]

    superseded = raw.get("superseded")
    # Derived from the correction chain, so never taken from the file; but a garbled value
    # hints at a shifted or mislabelled column, so it must at least be a boolean.
    if not _blank(superseded) and not (
        isinstance(superseded, bool)
        or (isinstance(superseded, str) and superseded.strip().lower() in ("true", "false"))
    ):
        raise _RowError(
            [Problem(field="superseded", reason=f"expected true or false, found {superseded!r}")]
        )

    source = LabelSource.import_
    if not _blank(raw.get("source")):
        try:
            source = LabelSource(raw["source"])
        except ValueError:
            allowed = ", ".join(s.value for s in LabelSource)
            raise _RowError(
                [Problem(field="source", reason=f"unknown source {raw['source']!r} ({allowed})")]
            ) from None

    key_given = "idempotency_key" in data
    if not key_given:
        data["idempotency_key"] = "-"  # placeholder until the row is known to be valid
    try:
        label = LabelInput.model_validate(data)
    except ValidationError as exc:
        raise _RowError(_validation_problems(exc)) from None
    if not key_given:
        label = label.model_copy(
            update={"idempotency_key": import_key(project, external_id, reviewer, label)}
        )
    return _Row(rec.line, external_id, reviewer, source, label)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


@dataclass
class _Known:
    """A label the import can refer to: already in the database, or accepted from the file."""

    item_id: int
    reviewer: str
    created_at: datetime
    project_id: int
    label_id: int | None = None  # for labels of the database
    line: int | None = None  # the file line, for rows of the file


def import_labels(
    session: Session,
    project: Project,
    path: Path,
    actor: Actor,
    *,
    fmt: Format | None = None,
    skip_invalid: bool = False,
    rejects: Path | None = None,
) -> LabelImportResult:
    """Import a label file in one transaction.

    By default all or nothing: any bad row raises WorkbenchError listing every bad row, and
    nothing is written. With `skip_invalid` the good rows are written and the bad ones reported
    (and written to `rejects` as JSON lines when given). Rows whose idempotency key is already
    stored for the same item and reviewer count as `unchanged`, so re-importing adds nothing.
    """
    require_role(actor, Role.lead, action="import labels")
    fmt = fmt or detect_format(path)
    name = str(path)
    result = LabelImportResult(project=project.name, file=name, format=fmt)
    now = utcnow()  # created_at of rows without one: the same for the whole run

    def located(p: Problem, line: int | None, external_id: str | None = None) -> Problem:
        return Problem(
            reason=p.reason,
            line=p.line if p.line is not None else line,
            external_id=p.external_id if p.external_id is not None else external_id,
            field=p.field,
            file=name,
        )

    rows: list[_Row] = []
    problems: list[Problem] = []
    for rec in iter_records(path, fmt):
        result.rows += 1
        if isinstance(rec, Problem):
            problems.append(located(rec, rec.line))
            continue
        try:
            rows.append(_parse_row(rec, project.name))
        except _RowError as err:
            eid = rec.data.get("external_id")
            eid = str(eid) if isinstance(eid, str | int) and not isinstance(eid, bool) else None
            problems.extend(located(p, rec.line, eid) for p in err.problems)

    # Everything the rows refer to, loaded up front: a handful of queries, not one per row.
    # Columns only: the items' texts can be long, and only their lengths matter here.
    found: list[tuple[int, str, int | None, list[str]]] = []
    for chunk in _chunks(sorted({r.external_id for r in rows})):
        stmt = select(Item.id, Item.external_id, func.length(Item.text), Item.modalities).where(
            Item.project_id == project.id, Item.external_id.in_(chunk)
        )
        found.extend((i, eid, length, mods) for i, eid, length, mods in session.execute(stmt))
    facts = {f.external_id: f for f in _facts_of(session, found).values()}
    versions = {pv.version: PolicyRules.of(pv) for pv in list_policy_versions(session, project)}
    if not versions:
        raise WorkbenchError(f"project {project.name!r} has no policy taxonomy")
    current = max(versions)
    known = _load_known(session, rows)

    accepted: list[_Row] = []
    taken: set[str] = set()  # keys of labels already corrected (in the database or the file)
    taken.update(_superseded_keys(session, [k for k, v in known.items() if v.label_id is not None]))
    for row in rows:
        key = row.data.idempotency_key
        item = facts.get(row.external_id)
        seen = known.get(key)
        if (
            item is not None
            and seen is not None
            and seen.project_id == project.id
            and seen.item_id == item.id
            and seen.reviewer == row.reviewer
        ):
            # Already stored (or repeated in this file): nothing to add, and nothing to check
            # again, so an old file still re-imports after the taxonomy moved on.
            result.unchanged += 1
            continue
        row_problems: list[Problem] = []
        if item is None:
            row_problems.append(
                Problem(
                    field="external_id",
                    reason=f"unknown external_id: no such item in project {project.name!r}",
                )
            )
        if seen is not None:
            where = f"line {seen.line}" if seen.line is not None else "the database"
            row_problems.append(
                Problem(
                    field="idempotency_key",
                    reason=f"already used by a different label (in {where})",
                )
            )
        version = current if row.data.policy_version is None else row.data.policy_version
        rules = versions.get(version)
        if rules is None:
            row_problems.append(
                Problem(
                    field="policy_version",
                    reason=f"no policy version {version} in project {project.name!r} "
                    f"(it has {sorted(versions)})",
                )
            )
        if item is not None and rules is not None:
            row_problems.extend(check_label(row.data, item, rules, row.source))
        created_at = row.data.created_at or now
        if row.data.supersedes is not None and item is not None:
            target = known.get(row.data.supersedes)
            if target is None or target.project_id != project.id:
                reason: str | None = (
                    "no label with that idempotency key in the project or earlier in the file"
                )
            elif target.item_id != item.id:
                reason = "that label is of another item; a correction must be of the same item"
            elif created_at < target.created_at:
                reason = "a correction cannot be older than the label it corrects (created_at)"
            elif row.data.supersedes in taken:
                reason = "that label is already corrected by another label"
            else:
                reason = None
            if reason:
                row_problems.append(Problem(field="supersedes", reason=reason))
        if row_problems:
            problems.extend(located(p, row.line, row.external_id) for p in row_problems)
            continue
        assert item is not None
        accepted.append(row)
        known[key] = _Known(
            item_id=item.id,
            reviewer=row.reviewer,
            created_at=created_at,
            project_id=project.id,
            line=row.line,
        )
        if row.data.supersedes is not None:
            taken.add(row.data.supersedes)

    problems.sort(key=lambda p: p.line or 0)
    result.problems = problems
    result.rejected = len({p.line for p in problems})
    if rejects is not None:
        write_rejects(rejects, problems)
        result.rejects_file = str(rejects)
    if problems and not skip_invalid:
        raise WorkbenchError(
            f"{name}: {result.rejected} bad row(s) of {result.rows}; nothing was imported "
            "(fix them, or pass --skip-invalid to import the good rows)",
            problems,
        )

    _write_rows(session, project, accepted, facts, versions, current, known, actor, result, now)
    record_event(
        session,
        actor,
        "labels.imported",
        project_id=project.id,
        entity_type="project",
        entity_id=project.name,
        details={
            "file": name,
            "format": fmt,
            "rows": result.rows,
            "imported": result.imported,
            "unchanged": result.unchanged,
            "rejected": result.rejected,
            "users_created": result.users_created,
        },
    )
    return result


def _load_known(session: Session, rows: list[_Row]) -> dict[str, _Known]:
    keys = sorted(
        {r.data.idempotency_key for r in rows}
        | {r.data.supersedes for r in rows if r.data.supersedes}
    )
    known: dict[str, _Known] = {}
    for chunk in _chunks(keys):
        stmt = (
            select(
                Label.idempotency_key,
                Label.id,
                Label.item_id,
                Label.project_id,
                Label.created_at,
                User.name,
            )
            .join(User, User.id == Label.reviewer_id)
            .where(Label.idempotency_key.in_(chunk))
        )
        for key, label_id, item_id, project_id, created_at, reviewer in session.execute(stmt):
            known[key] = _Known(
                item_id=item_id,
                reviewer=reviewer,
                created_at=created_at,
                project_id=project_id,
                label_id=label_id,
            )
    return known


def _superseded_keys(session: Session, keys: list[str]) -> set[str]:
    out: set[str] = set()
    older = aliased(Label)
    for chunk in _chunks(keys):
        out.update(
            session.scalars(
                select(older.idempotency_key)
                .join(Label, Label.supersedes_id == older.id)
                .where(older.idempotency_key.in_(chunk))
            )
        )
    return out


def _write_rows(
    session: Session,
    project: Project,
    rows: list[_Row],
    items: dict[str, ItemFacts],
    versions: dict[int, PolicyRules],
    current: int,
    known: dict[str, _Known],
    actor: Actor,
    result: LabelImportResult,
    now: datetime,
) -> None:
    names = sorted({r.reviewer for r in rows})
    users: dict[str, User] = {}
    for chunk in _chunks(names):
        users.update({u.name: u for u in session.scalars(select(User).where(User.name.in_(chunk)))})
    for reviewer in names:
        if reviewer not in users:
            # Known only from this file: a reviewer account without a password (cannot log in).
            user = User(name=reviewer, role=Role.reviewer, password_hash=None)
            session.add(user)
            users[reviewer] = user
            result.users_created.append(reviewer)
    if result.users_created:
        session.flush()
        for reviewer in result.users_created:
            record_event(
                session,
                actor,
                "user.added",
                entity_type="user",
                entity_id=reviewer,
                details={
                    "role": Role.reviewer.value,
                    "can_log_in": False,
                    "reason": f"named in labels imported into {project.name!r}",
                },
            )

    # Core executemany INSERTs in file order (ids follow the file, so an export lists ties the
    # same way). A correction needs the id of the label it corrects, so a batch is sent before
    # a row that refers to a label still waiting in it.
    ids: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
    waiting: set[str] = set()
    for row in rows:
        target = row.data.supersedes
        if target in waiting or len(batch) >= 1000:
            _insert_labels(session, batch, ids)
            waiting.clear()
        version = current if row.data.policy_version is None else row.data.policy_version
        values = label_values(
            project,
            items[row.external_id].id,
            users[row.reviewer].id,
            versions[version].policy_version_id,
            row.data,
            row.source,
            row.data.created_at or now,
        )
        if target is not None:
            values["supersedes_id"] = ids[target] if target in ids else known[target].label_id
        batch.append(values)
        waiting.add(row.data.idempotency_key)
    _insert_labels(session, batch, ids)
    result.imported = len(rows)


def _insert_labels(session: Session, batch: list[dict[str, Any]], ids: dict[str, int]) -> None:
    if not batch:
        return
    stmt = insert(Label).returning(Label.idempotency_key, Label.id)
    try:
        # (Not dict(result): a Result has .keys(), so dict() would read it as a mapping.)
        ids.update({key: label_id for key, label_id in session.execute(stmt, batch)})
    except IntegrityError:
        raise WorkbenchError(
            "another writer stored labels with the same idempotency keys (or corrected the same "
            "labels) while this import ran; nothing was imported, run the import again"
        ) from None
    batch.clear()
