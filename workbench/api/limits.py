"""Limits of the HTTP API: request body size (checked while the body streams in, not after) and
how many scans run at once (beyond that, 503 with Retry-After rather than a growing backlog)."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiLimits(BaseSettings):
    """Each can be set as `WORKBENCH_API_<NAME>`, e.g. `WORKBENCH_API_MAX_CONCURRENT_SCANS=64`."""

    model_config = SettingsConfigDict(env_prefix="WORKBENCH_API_", extra="ignore")

    max_body_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="bytes of one request body (all files together)"
    )
    max_files: int = Field(16, ge=0, description="media files in one scan")
    max_concurrent_scans: int = Field(32, ge=1, description="scans running at once")
    retry_after_s: int = Field(1, ge=1, description="Retry-After of a 503 when all are busy")
    score_workers: int = Field(4, ge=1, description="threads that score against a deadline")


class TooManyScans(Exception):
    """Every scan slot is taken (HTTP 503)."""


class ScanSlots:
    """A counting semaphore that never waits: a request either gets a slot now or a 503."""

    def __init__(self, n: int) -> None:
        self._sem = threading.BoundedSemaphore(n)

    def __enter__(self) -> ScanSlots:
        if not self._sem.acquire(blocking=False):
            raise TooManyScans()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sem.release()


class BodySizeLimit:
    """ASGI middleware: 413 as soon as a body is known to pass `max_bytes` (declared length or
    bytes received so far), before the application buffers it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer 413 now and tell the application the client has gone, so it stops
                    # reading; whatever it sends after that is dropped.
                    refused = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:  # the application's own failure; an error on a refused body is not
                raise

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "detail": {
                    "field": "body",
                    "reason": f"request body over the limit of {self.max_bytes} bytes "
                    "(WORKBENCH_API_MAX_BODY_BYTES)",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
