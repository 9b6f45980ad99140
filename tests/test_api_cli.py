"""`workbench api` as a real process: it serves /v1/health on the port it is given, and the key
made by `workbench apikey create` authenticates a scan against it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workbench_api_serves_health_and_scans(cli) -> None:  # type: ignore[no-untyped-def]
    cli.json("project", "create", "p")
    key = cli.json("apikey", "create", "uploader", "--scope", "scan")["key"]
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "api", "--port", str(port)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "workbench api did not answer within 60 s"
            time.sleep(0.2)
        r = httpx.post(
            f"{url}/v1/scan",
            data={"project": "p", "text": "hello"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["decision"] == "allow", r.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
