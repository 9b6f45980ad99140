"""`/v1/banks`: the hash-match banks for keys with the `banks` scope (list, create, add content,
disable, enable). Parsing and status codes only; the banks are `services/scan/banks/store.py`."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from workbench.api.auth import require_scope
from workbench.db.database import Database
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.apikeys import ApiKeyInfo
from workbench.services.scan.banks import store
from workbench.services.scan.content import IncomingFile, ScanInputError, bank_file_media_type

router = APIRouter(prefix="/v1/banks", tags=["banks"])
BanksKey = Annotated[ApiKeyInfo, Depends(require_scope("banks"))]


class NewBank(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="^[A-Z0-9_]+$, as HMA names banks")
    action: Literal["block", "review"]
    matching_enabled_ratio: float = Field(1.0, ge=0.0, le=1.0)


class Disable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: datetime | None = Field(None, description="ISO 8601 with a zone; none: until enabled")


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _error(exc: WorkbenchError, field: str | None = None) -> HTTPException:
    if isinstance(exc, NotFoundError):
        return HTTPException(404, detail={"field": "name", "reason": exc.message})
    if isinstance(exc, ScanInputError):
        return HTTPException(exc.status, detail={"field": exc.field, "reason": exc.reason})
    return HTTPException(422, detail={"field": field or "body", "reason": exc.message})


@router.get("")
def list_banks(request: Request, key: BanksKey) -> dict[str, Any]:
    """Every bank with its action, roll-out ratio, state and signal counts."""
    with _db(request).sessions() as s:
        return {"banks": [b.as_dict() for b in store.list_banks(s)]}


@router.post("", status_code=201)
def create_bank(request: Request, body: NewBank, key: BanksKey) -> dict[str, Any]:
    try:
        with _db(request).sessions.begin() as s:
            bank = store.create_bank(
                s, key.actor, body.name, body.action, body.matching_enabled_ratio
            )
            return {
                "name": bank.name,
                "action": bank.action.value,
                "matching_enabled_ratio": bank.matching_enabled_ratio,
            }
    except WorkbenchError as exc:
        raise _error(exc, "name") from None


@router.post("/{name}/content", status_code=201)
async def add_content(
    request: Request,
    name: str,
    key: BanksKey,
    file: Annotated[UploadFile, File(description="a file to bank under every signal")],
    content_id: Annotated[str | None, Form()] = None,
    note: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    """Bank a file: PDQ for an image, vPDQ for a video, SHA-256 and MD5 for any file."""
    incoming = IncomingFile("file", await file.read(), file.filename)
    db = _db(request)

    def add() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="wb-bank-") as tmp:
            media_type = bank_file_media_type(db.settings.ingest_limits(), incoming, Path(tmp))
        with db.sessions.begin() as s:
            rows = store.add_file(
                s, key.actor, name, incoming.data, media_type, content_id=content_id, note=note
            )
            return {
                "bank": name,
                "added": [
                    {"signal_type": r.signal_type.value, "content_id": r.content_id} for r in rows
                ],
            }

    try:
        return await run_in_threadpool(add)
    except WorkbenchError as exc:
        raise _error(exc, "file") from None


@router.post("/{name}/disable")
def disable_bank(request: Request, name: str, body: Disable, key: BanksKey) -> dict[str, Any]:
    try:
        with _db(request).sessions.begin() as s:
            bank = store.disable_bank(s, key.actor, name, body.until)
            until = bank.disabled_until.isoformat() if bank.disabled_until else None
            return {"name": bank.name, "disabled": True, "until": until}
    except WorkbenchError as exc:
        raise _error(exc, "until") from None


@router.post("/{name}/enable")
def enable_bank(request: Request, name: str, key: BanksKey) -> dict[str, Any]:
    try:
        with _db(request).sessions.begin() as s:
            bank = store.enable_bank(s, key.actor, name)
            return {"name": bank.name, "disabled": False}
    except WorkbenchError as exc:
        raise _error(exc) from None
