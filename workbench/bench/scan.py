"""`workbench bench scan`: scan API latency and throughput over real HTTP.

A fresh home gets a project whose champion is a logistic head over the real text encoder's
vectors of labelled tweets, a block bank of random PDQ hashes, and an API key; `workbench api`
then runs as its own process (as deployed) and client threads call it: text scans with N
concurrent clients (p50, p95, scans/s), then 640x480 JPEG scans with a caption one at a time
(p95). Every answer is counted by status and the scan records are counted afterwards, so a lost
record or a 5xx shows in the result.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sqlalchemy import func, select

from workbench.bench.stats import latency_summary
from workbench.bench.synthetic_media import make_photo
from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.engine import make_engine
from workbench.db.migrate import upgrade
from workbench.db.models import ModelStatus, ModelVersion, Scan
from workbench.encoders.registry import get_encoder
from workbench.errors import WorkbenchError
from workbench.progress import ProgressFactory, no_progress
from workbench.services.apikeys import create_api_key
from workbench.services.audit import Actor
from workbench.services.projects import create_project
from workbench.services.scan.banks import store
from workbench.services.vectors.embed import fused_version
from workbench.services.vectors.spaces import FUSED, get_or_create_space

PROJECT = "bench-scan"
TARGETS = {"text_p50_ms": 15.0, "text_p95_ms": 50.0, "text_scans_per_s": 150.0, "jpeg_p95_ms": 100}


def _texts(data: Path, column: str, n: int) -> tuple[list[str], list[str]]:
    """(texts, classes) from a labelled CSV (Davidson's: class 0 is hate speech)."""
    if not data.is_file():
        raise WorkbenchError(f"{data}: no such file (a CSV with a {column!r} column)")
    texts, classes = [], []
    with data.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if column not in row:
                raise WorkbenchError(f"{data}: no column {column!r}; it has {sorted(row)}")
            texts.append(row[column])
            classes.append("hate" if row.get("class") == "0" else "none")
            if len(texts) >= n:
                break
    if len(texts) < 2:
        raise WorkbenchError(f"{data}: needs at least two rows of text, found {len(texts)}")
    return texts, classes


def _champion(db: Database, texts: list[str], classes: list[str]) -> None:
    encoder = get_encoder("text")
    x = encoder.encode(texts[:400])
    y = classes[:400]
    if len(set(y)) < 2:  # the head needs two classes whatever the sample held
        y = ["hate" if i % 10 == 0 else "none" for i in range(len(y))]
    head = LogisticRegression(max_iter=500, class_weight="balanced").fit(x, y)
    with db.sessions.begin() as s:
        project = create_project(s, PROJECT, Actor.system())
        get_or_create_space(s, project, "text", encoder.id, encoder.version, encoder.dim)
        fv = fused_version({"text": (encoder.id, encoder.version, encoder.dim)})
        fused = get_or_create_space(s, project, FUSED, "fusion", fv, encoder.dim)
        out = db.settings.resolved_home / "models" / str(project.id) / "v0001"
        out.mkdir(parents=True, exist_ok=True)
        joblib.dump(head, out / "head.joblib")
        s.add(
            ModelVersion(
                project_id=project.id,
                version=1,
                head="logistic",
                params={"name": "logistic"},
                classes=sorted(set(y)),
                metrics={},
                calibrated=False,
                space_id=fused.id,
                trained_on=len(y),
                artifact_path=str(out / "head.joblib"),
                status=ModelStatus.champion,
            )
        )


def _bank(db: Database, n: int) -> None:
    rng = np.random.default_rng(1)
    with db.sessions.begin() as s:
        store.create_bank(s, Actor.system(), "BENCH_BLOCK", "block")
        for _ in range(n):
            bits = rng.integers(0, 256, size=32, dtype=np.uint8).tobytes().hex()
            store.add_signal(s, Actor.system(), "BENCH_BLOCK", "pdq", bits)


# Status recorded for a request that got no HTTP answer (connection reset, refused, timed out).
TRANSPORT_ERROR = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    # The server's own log is kept: a 5xx in the results is explained by what it printed.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`workbench api` exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("`workbench api` did not answer within 120 s")


def _log_tail(log: Path, chars: int = 12000) -> str:
    """The server log from its first traceback (what explains a 5xx), else its end."""
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    start = text.find("Traceback")
    return text[start : start + chars] if start >= 0 else text[-chars:]


def run_scan_benchmark(
    data: Path,
    text_column: str = "tweet",
    *,
    clients: int = 8,
    seconds: float = 20.0,
    jpeg_scans: int = 40,
    bank_hashes: int = 1000,
    database_url: str | None = None,
    progress: ProgressFactory = no_progress,
) -> dict[str, Any]:
    texts, classes = _texts(data, text_column, 2000)  # bad input fails before any setup
    home = Path(tempfile.mkdtemp(prefix="wb-bench-scan-"))
    env = dict(os.environ, WORKBENCH_HOME=str(home))
    env.pop("WORKBENCH_DATABASE_URL", None)
    if database_url:
        env["WORKBENCH_DATABASE_URL"] = database_url
        upgrade(make_engine(database_url))
    settings = Settings(home=home, database_url=database_url)
    db = open_database(settings)
    proc = None
    try:
        _champion(db, texts, classes)
        _bank(db, bank_hashes)
        with db.sessions.begin() as s:
            _, token = create_api_key(s, "bench", ["scan"], Actor.system())
        port = _free_port()
        proc = _start_api(env, port, home / "api.log")
        url = f"http://127.0.0.1:{port}/v1/scan"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(headers=headers, timeout=30) as c:  # loads the encoder and the head
            for t in texts[:20]:
                c.post(url, data={"project": PROJECT, "text": t})
        text_ms, statuses = _text_phase(url, headers, texts, clients, seconds, progress)
        jpeg_ms, jpeg_status = _jpeg_phase(url, headers, jpeg_scans, home, progress)
        with db.sessions() as s:
            recorded = int(s.scalar(select(func.count()).select_from(Scan)) or 0)
        ok = statuses.get(200, 0) + jpeg_status.get(200, 0) + 20
        text_summary = latency_summary(text_ms, 2)
        jpeg_summary = latency_summary(jpeg_ms, 2)
        scans_per_s = round(statuses.get(200, 0) / seconds, 1)
        return {
            "backend": "postgresql" if database_url else "sqlite",
            "clients": clients,
            "seconds": seconds,
            "encoder": get_encoder("text").describe(),
            "bank_pdq_hashes": bank_hashes,
            "text": {**text_summary, "scans_per_s": scans_per_s, "statuses": dict(statuses)},
            "jpeg_640x480": {**jpeg_summary, "statuses": dict(jpeg_status)},
            "transport_errors": statuses.get(TRANSPORT_ERROR, 0),
            "server_5xx": (
                n_5xx := sum(n for code, n in (statuses + jpeg_status).items() if code >= 500)
            ),
            "server_log_tail": _log_tail(home / "api.log") if n_5xx else None,
            "scan_records": recorded,
            "answered_200": ok,
            "lost_records": ok - recorded,
            "targets": TARGETS,
            "meets": {
                "text_p50": text_summary["p50_ms"] is not None
                and text_summary["p50_ms"] <= TARGETS["text_p50_ms"],
                "text_p95": text_summary["p95_ms"] is not None
                and text_summary["p95_ms"] <= TARGETS["text_p95_ms"],
                "text_scans_per_s": scans_per_s >= TARGETS["text_scans_per_s"],
                "jpeg_p95": jpeg_summary["p95_ms"] is not None
                and jpeg_summary["p95_ms"] <= TARGETS["jpeg_p95_ms"],
            },
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        db.dispose()
        shutil.rmtree(home, ignore_errors=True)


def _text_phase(
    url: str,
    headers: dict[str, str],
    texts: list[str],
    clients: int,
    seconds: float,
    progress: ProgressFactory,
) -> tuple[list[float], Counter[int]]:
    timings: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    bar = progress(total=None, desc=f"text scans, {clients} clients")

    def client(n: int) -> None:
        mine: list[float] = []
        codes: Counter[int] = Counter()
        with httpx.Client(headers=headers, timeout=30) as c:
            i = n
            while time.monotonic() < stop_at:
                text = texts[i % len(texts)] + f" #{secrets.token_hex(3)}"
                t0 = time.perf_counter()
                try:
                    r = c.post(url, data={"project": PROJECT, "text": text})
                except httpx.TransportError:
                    # Counted, never fatal: a client thread that died took its counts with it
                    # and showed as more scan records than answers.
                    codes[TRANSPORT_ERROR] += 1
                    i += clients
                    continue
                elapsed = (time.perf_counter() - t0) * 1000.0
                codes[r.status_code] += 1
                if r.status_code == 200:
                    mine.append(elapsed)
                i += clients
                bar.update(1)
        with lock:
            timings.extend(mine)
            statuses.update(codes)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    return timings, statuses


def _jpeg_phase(
    url: str, headers: dict[str, str], n: int, home: Path, progress: ProgressFactory
) -> tuple[list[float], Counter[int]]:
    images = [make_photo(home / "jpeg" / f"{i}.jpg", seed=i).read_bytes() for i in range(n)]
    timings: list[float] = []
    statuses: Counter[int] = Counter()
    bar = progress(total=n, desc="jpeg scans")
    with httpx.Client(headers=headers, timeout=30) as c:
        for i, data in enumerate(images):
            files = [("file", (f"{i}.jpg", io.BytesIO(data), "image/jpeg"))]
            t0 = time.perf_counter()
            r = c.post(url, data={"project": PROJECT, "text": "holiday photo"}, files=files)
            elapsed = (time.perf_counter() - t0) * 1000.0
            statuses[r.status_code] += 1
            if r.status_code == 200:
                timings.append(elapsed)
            bar.update(1)
    bar.close()
    return timings, statuses
