"""Build the API application and serve it with uvicorn."""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import Request

from workbench.api import banks
from workbench.api.limits import ApiLimits, BodySizeLimit, ScanSlots
from workbench.api.routes import router
from workbench.db.database import Database
from workbench.services.scan.banks.match import bank_index
from workbench.services.scan.pipeline import Scanner
from workbench.services.scan.score import ChampionScorer, EncoderLookup
from workbench.services.vectors.spaces import default_encoder_lookup


def create_app(
    db: Database,
    *,
    limits: ApiLimits | None = None,
    encoder_lookup: EncoderLookup = default_encoder_lookup,
) -> FastAPI:
    """The FastAPI app over one open database; encoders and champion heads load on first use
    and stay loaded for the life of the process."""
    limits = limits or ApiLimits()
    scanner = Scanner(
        db, ChampionScorer(db.settings, encoder_lookup), score_workers=limits.score_workers
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        # Build the bank index before the first request rather than inside it.
        with db.sessions() as s:
            bank_index(s)
        yield
        scanner.close()

    app = FastAPI(
        title="Workbench scan API",
        description="Pre-publish scanning: hash-match banks and the champion model in one "
        "decision; `review` puts the content first in the review queue.",
        version="1",
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.limits = limits
    app.state.scanner = scanner
    app.state.scan_slots = ScanSlots(limits.max_concurrent_scans)
    app.include_router(router)
    app.include_router(banks.router)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ["body"], "msg": "invalid"}
        loc = ".".join(str(p) for p in first["loc"] if p not in ("body", "query"))
        return JSONResponse(
            {"detail": {"field": loc or "body", "reason": first["msg"]}}, status_code=422
        )

    return app


def asgi_app(app: FastAPI, limits: ApiLimits | None = None) -> Any:
    """The app as served: the body-size limit wraps everything, so an oversized upload is
    refused before any route buffers it."""
    return BodySizeLimit(app, (limits or ApiLimits()).max_body_bytes)


def make_server(app: FastAPI, host: str, port: int, **options: Any) -> uvicorn.Server:
    limits: ApiLimits = app.state.limits
    config = uvicorn.Config(
        asgi_app(app, limits),
        host=host,
        port=port,
        log_level=options.pop("log_level", "warning"),
        # The default 2048 pending connections drops bursts of clients less than a short queue.
        backlog=options.pop("backlog", 2048),
        **options,
    )
    return uvicorn.Server(config)


class ServerThread:
    """uvicorn in a background thread on a free port (tests and benchmarks call it over real
    HTTP); `url` once started."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = make_server(app, host, port)
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host

    @property
    def port(self) -> int:
        sockets = self.server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
