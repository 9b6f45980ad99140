"""The API's routes: `GET /v1/health` and `POST /v1/scan` (multipart form or JSON with base64
media). Parsing and error mapping only; the scan itself is `services/scan/pipeline.py`."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench.api.auth import require_scope
from workbench.api.limits import ApiLimits, ScanSlots, TooManyScans
from workbench.errors import NotFoundError
from workbench.services.apikeys import ApiKeyInfo
from workbench.services.scan.content import IncomingFile, ScanInputError
from workbench.services.scan.pipeline import Scanner, ScanRequest

router = APIRouter()

MAX_DEADLINE_MS = 600_000.0  # ten minutes: longer is no deadline for a pre-publish check
FORM_FIELDS = {"project", "text", "file", "external_id", "language", "deadline_ms"}


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class JsonFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="the file's bytes, base64")
    filename: str | None = None


class JsonScan(BaseModel):
    """`POST /v1/scan` as JSON: the multipart fields, with media as base64."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(min_length=1)
    text: str | None = None
    files: list[JsonFile] = Field(default_factory=list)
    external_id: str | None = None
    language: str | None = None
    deadline_ms: float | None = Field(None, gt=0, le=MAX_DEADLINE_MS, allow_inf_nan=False)


class ScanAnswerModel(BaseModel):
    decision: Literal["allow", "review", "block"]
    reasons: list[dict[str, Any]] = Field(
        description='{"source": "hash", "bank", "signal_type", "distance", "content_id"} or '
        '{"source": "model", "policy", "score", "threshold", "model_version"}'
    )
    scan_id: int
    latency_ms: float
    degraded: bool
    model: dict[str, Any] = Field(
        description="status: scored, no_champion (hash checks only), deadline, not_scorable, "
        "skipped (a bank decided); version when scored"
    )
    item_id: int | None = Field(description="the item a review decision queued")


def _bad(status: int, field: str, reason: str) -> HTTPException:
    return HTTPException(status, detail={"field": field, "reason": reason})


@router.get("/v1/health", response_model=Health, tags=["health"])
def health() -> Health:
    """Up and answering (no key needed)."""
    return Health()


_SCAN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["project"],
                    "properties": {
                        "project": {"type": "string"},
                        "text": {"type": "string"},
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "external_id": {"type": "string"},
                        "language": {"type": "string"},
                        "deadline_ms": {"type": "number"},
                    },
                }
            },
            "application/json": {"schema": JsonScan.model_json_schema()},
        },
    }
}


@router.post(
    "/v1/scan",
    response_model=ScanAnswerModel,
    tags=["scan"],
    openapi_extra=_SCAN_BODY,
    responses={
        401: {"description": "no or bad key"},
        403: {"description": "key lacks the scan scope"},
        404: {"description": "unknown project"},
        413: {"description": "body, file, text, pixels or duration over a limit"},
        415: {"description": "media type not accepted"},
        422: {"description": "undecodable media or a malformed field (named in detail.field)"},
        503: {"description": "all scan slots busy; see Retry-After"},
    },
)
async def scan(
    request: Request, key: Annotated[ApiKeyInfo, Depends(require_scope("scan"))]
) -> dict[str, Any]:
    """Decide allow / review / block for content before it is published."""
    started = time.perf_counter()
    slots: ScanSlots = request.app.state.scan_slots
    limits: ApiLimits = request.app.state.limits
    scanner: Scanner = request.app.state.scanner
    try:
        with slots:
            parsed = await _parse(request, limits)
            try:
                answer = await run_in_threadpool(scanner.scan, parsed, key, started=started)
            except ScanInputError as exc:
                raise _bad(exc.status, exc.field, exc.reason) from None
            except NotFoundError as exc:
                raise HTTPException(
                    404, detail={"field": "project", "reason": exc.message}
                ) from None
    except TooManyScans:
        raise HTTPException(
            503,
            detail="all scan slots are busy; retry shortly",
            headers={"Retry-After": str(limits.retry_after_s)},
        ) from None
    return answer.as_dict()


async def _parse(request: Request, limits: ApiLimits) -> ScanRequest:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    # A form without files is url-encoded by most clients; it parses the same.
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _parse_form(request, limits)
    if ctype == "application/json":
        return await _parse_json(request, limits)
    raise _bad(
        415,
        "content-type",
        "send multipart/form-data (or a url-encoded form) or application/json, "
        f"not {ctype or 'none'}",
    )


async def _parse_form(request: Request, limits: ApiLimits) -> ScanRequest:
    try:
        form = await request.form(max_files=limits.max_files, max_fields=32)
    except StarletteHTTPException as exc:
        # Starlette raises its own HTTPException (400) for a malformed multipart body; FastAPI's
        # is a subclass of it, so catching FastAPI's would let the 400 through.
        if exc.status_code == 413:
            raise
        raise _bad(422, "body", f"malformed multipart body: {exc.detail}") from None
    values: dict[str, str] = {}
    files: list[IncomingFile] = []
    for name, value in form.multi_items():
        if name not in FORM_FIELDS:
            raise _bad(422, name, f"unknown field; fields are {', '.join(sorted(FORM_FIELDS))}")
        if name == "file":
            if not isinstance(value, UploadFile):
                raise _bad(422, f"file[{len(files)}]", "must be a file part, not a text field")
            files.append(IncomingFile(f"file[{len(files)}]", await value.read(), value.filename))
            continue
        if isinstance(value, UploadFile):
            raise _bad(422, name, "must be a text field, not a file")
        if name in values:
            raise _bad(422, name, "given more than once")
        values[name] = value
    await form.close()
    if not values.get("project"):
        raise _bad(422, "project", "required")
    deadline = None
    if "deadline_ms" in values:
        try:
            deadline = float(values["deadline_ms"])
        except ValueError:
            raise _bad(422, "deadline_ms", f"not a number: {values['deadline_ms']!r}") from None
        if not 0 < deadline <= MAX_DEADLINE_MS:  # NaN fails both comparisons
            raise _bad(
                422, "deadline_ms", f"must be a number of milliseconds from 0 to {MAX_DEADLINE_MS}"
            )
    return ScanRequest(
        project=values["project"],
        text=values.get("text"),
        files=files,
        external_id=values.get("external_id"),
        language=values.get("language"),
        deadline_ms=deadline,
    )


async def _parse_json(request: Request, limits: ApiLimits) -> ScanRequest:
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(422, "body", f"not JSON: {exc}") from None
    try:
        body = JsonScan.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise _bad(422, loc, first["msg"]) from None
    if len(body.files) > limits.max_files:
        raise _bad(413, "files", f"{len(body.files)} files, over the limit of {limits.max_files}")
    files = []
    for n, f in enumerate(body.files):
        try:
            data = base64.b64decode(f.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _bad(422, f"files[{n}].data", f"not base64: {exc}") from None
        files.append(IncomingFile(f"files[{n}]", data, f.filename))
    return ScanRequest(
        project=body.project,
        text=body.text,
        files=files,
        external_id=body.external_id,
        language=body.language,
        deadline_ms=body.deadline_ms,
    )
