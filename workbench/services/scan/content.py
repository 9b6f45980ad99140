"""Check the content of a scan request with the ingest rules: text limits, media sniffed from
its bytes and proven to decode. Each refusal names the field and the HTTP status it means
(413 too large, 415 type not accepted, 422 undecodable or malformed)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from workbench.config import IngestLimits
from workbench.errors import Problem, WorkbenchError
from workbench.services.ingest.media import (
    SUPPORTED_HELP,
    InvalidMedia,
    MediaInfo,
    probe_media,
    sniff,
)

# The ingest rules for text and language, so a scanned item can always be ingested for review.
from workbench.services.ingest.read import _LANGUAGE, _MAX_EXTERNAL_ID, _Checker

_HEAD_BYTES = 8192


class ScanInputError(WorkbenchError):
    """Bad input to a scan, with the field it is about and the HTTP status that says so."""

    def __init__(self, status: int, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}", [Problem(reason=reason, field=field_name)])
        self.status = status
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class IncomingFile:
    field: str  # e.g. "file[0]", for messages
    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class CheckedFile:
    field: str
    data: bytes
    info: MediaInfo
    path: Path  # a private copy of the bytes, for decoders that read files
    filename: str | None

    @property
    def modality(self) -> str:
        return self.info.modality.value


@dataclass
class ScanContent:
    text: str | None
    files: list[CheckedFile] = field(default_factory=list)
    external_id: str | None = None
    language: str | None = None

    @property
    def content_hash(self) -> str:
        """sha256 over the text and the files' sha256s: the same upload gives the same hash."""
        return scan_content_hash(self.text, [f.info.sha256 for f in self.files])


def scan_content_hash(text: str | None, file_hashes: list[str]) -> str:
    payload = json.dumps({"text": text, "files": file_hashes}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def check_text_fields(
    limits: IngestLimits, text: str | None, external_id: str | None, language: str | None
) -> None:
    if text is not None:
        reason = _Checker(limits).check_text(text)
        if reason is not None:
            raise ScanInputError(413 if "over the limit" in reason else 422, "text", reason)
    if external_id is not None and not (0 < len(external_id) <= _MAX_EXTERNAL_ID):
        raise ScanInputError(
            422, "external_id", f"must be 1-{_MAX_EXTERNAL_ID} characters, got {len(external_id)}"
        )
    if language is not None and not _LANGUAGE.match(language):
        raise ScanInputError(422, "language", f"{language!r} is not a BCP 47 tag such as 'en'")


def check_file(limits: IngestLimits, incoming: IncomingFile, workdir: Path, n: int) -> CheckedFile:
    """Sniff, size-check and decode one file; its bytes are written to `workdir` to probe."""
    size = len(incoming.data)
    if size > limits.max_file_bytes:
        raise ScanInputError(
            413,
            incoming.field,
            f"file is {size} bytes, over the limit of {limits.max_file_bytes} "
            "(WORKBENCH_INGEST_MAX_FILE_BYTES)",
        )
    if size == 0:
        raise ScanInputError(422, incoming.field, "empty file (0 bytes)")
    sniffed = sniff(incoming.data[:_HEAD_BYTES])
    if sniffed.media_type is None:
        raise ScanInputError(
            415,
            incoming.field,
            f"unsupported type: {sniffed.description} (supported: {SUPPORTED_HELP})",
        )
    path = workdir / f"{n}.{sniffed.media_type.extension}"
    path.write_bytes(incoming.data)
    try:
        info = probe_media(path, limits)
    except InvalidMedia as exc:
        # Pixel and duration limits are limits on size, as the byte limit is.
        status = 413 if "over the limit" in exc.reason else 422
        raise ScanInputError(status, incoming.field, exc.reason) from None
    return CheckedFile(incoming.field, incoming.data, info, path, incoming.filename)


def check_scan_content(
    limits: IngestLimits,
    workdir: Path,
    *,
    text: str | None,
    files: list[IncomingFile],
    external_id: str | None,
    language: str | None,
) -> ScanContent:
    check_text_fields(limits, text, external_id, language)
    checked = [check_file(limits, f, workdir, n) for n, f in enumerate(files)]
    if text is None and not checked:
        raise ScanInputError(422, "text", "a scan needs text or at least one file")
    return ScanContent(text, checked, external_id, language)


def bank_file_media_type(limits: IngestLimits, incoming: IncomingFile, workdir: Path) -> str:
    """The MIME type a bank hashes a file as: a supported image or video is checked as a scan
    checks it (413, 422), any other file is banked by its exact hashes only (as `bank add`)."""
    size = len(incoming.data)
    if size > limits.max_file_bytes:
        raise ScanInputError(
            413, incoming.field, f"file is {size} bytes, over the limit of {limits.max_file_bytes}"
        )
    if size == 0:
        raise ScanInputError(422, incoming.field, "empty file (0 bytes)")
    if sniff(incoming.data[:_HEAD_BYTES]).media_type is None:
        return "application/octet-stream"
    return check_file(limits, incoming, workdir, 0).info.mime_type
