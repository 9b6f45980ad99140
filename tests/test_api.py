"""The scan API over real HTTP (uvicorn on a free port, httpx), on SQLite and Postgres."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from builders import make_items, make_project, make_user
from PIL import Image
from scan_builders import WordEncoder, make_champion, make_key, running_api
from sqlalchemy import func, select

from workbench.api.limits import ApiLimits
from workbench.db.database import Database
from workbench.db.models import AuditEvent, QueueEntry, Scan
from workbench.services.apikeys import revoke_api_key
from workbench.services.audit import Actor
from workbench.services.projects import get_project, set_project_setting
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.queue.lease import lease_next
from workbench.services.scan.content import scan_content_hash


def _png(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    import numpy as np

    pixels = np.random.default_rng(seed).integers(
        0, 256, size=(size[1], size[0], 3), dtype=np.uint8
    )
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def api_db(db: Database) -> Database:
    with db.sessions.begin() as s:
        make_project(s, "p")
    return db


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_answers_without_a_key_and_docs_are_served(api_db: Database) -> None:
    with running_api(api_db) as api:
        r = httpx.get(f"{api.url}/v1/health")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert httpx.get(f"{api.url}/docs").status_code == 200
        spec = httpx.get(f"{api.url}/openapi.json").json()
        body = spec["paths"]["/v1/scan"]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json"} <= set(body)


def test_keys_are_checked_missing_bad_or_revoked_401_wrong_scope_403(api_db: Database) -> None:
    token = make_key(api_db, "uploader")
    banks_only = make_key(api_db, "curator", ("banks",))
    revoked = make_key(api_db, "old")
    with api_db.sessions.begin() as s:
        revoke_api_key(s, "old", Actor.system())
    with running_api(api_db) as api:
        url = f"{api.url}/v1/scan"
        form = {"project": "p", "text": "hello"}
        r = httpx.post(url, data=form)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert httpx.post(url, data=form, headers=_auth("wbk_nope")).status_code == 401
        assert httpx.post(url, data=form, headers=_auth(revoked)).status_code == 401
        assert httpx.post(url, data=form, headers=_auth(banks_only)).status_code == 403
        assert httpx.post(url, data=form, headers=_auth(token)).status_code == 200


def test_text_scan_without_a_champion_is_hash_checks_only_and_recorded(api_db: Database) -> None:
    token = make_key(api_db)
    with running_api(api_db) as api:
        r = httpx.post(
            f"{api.url}/v1/scan",
            data={"project": "p", "text": "hello", "external_id": "up-1", "language": "en"},
            headers=_auth(token),
        )
        r2 = httpx.post(
            f"{api.url}/v1/scan", data={"project": "p", "text": "again"}, headers=_auth(token)
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "allow" and body["degraded"] is False
    assert body["model"] == {"status": "no_champion"}
    assert any("no champion" in reason.get("detail", "") for reason in body["reasons"])
    with api_db.sessions() as s:
        scan = s.get_one(Scan, body["scan_id"])
        assert (scan.decision.value, scan.external_id, scan.source) == ("allow", "up-1", "api")
        assert scan.automated_decision and not scan.automated_detection
        assert scan.content_hash == scan_content_hash("hello", [])
        assert scan.api_key_id is not None and r2.status_code == 200
        # Use of a key is audited once a minute, not once a request.
        used = s.scalar(select(func.count()).where(AuditEvent.action == "apikey.used"))
        assert used == 1


def test_json_scan_with_base64_media_is_answered_like_multipart(api_db: Database) -> None:
    token = make_key(api_db)
    png = base64.b64encode(_png()).decode()
    with running_api(api_db) as api:
        r = httpx.post(
            f"{api.url}/v1/scan",
            json={"project": "p", "text": "hi", "files": [{"data": png, "filename": "a.png"}]},
            headers=_auth(token),
        )
        multi = httpx.post(
            f"{api.url}/v1/scan",
            data={"project": "p"},
            files=[
                ("file", ("a.png", _png(), "image/png")),
                ("file", ("b.png", _png(1), "image/png")),
            ],
            headers=_auth(token),
        )
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "allow"
    assert multi.status_code == 200, multi.text


@pytest.mark.parametrize(
    ("kwargs", "status", "field"),
    [
        ({"data": {"project": "nope", "text": "x"}}, 404, "project"),
        ({"data": {"text": "x"}}, 422, "project"),
        ({"data": {"project": "p", "text": "x", "deadline_ms": "soon"}}, 422, "deadline_ms"),
        ({"data": {"project": "p", "text": "x", "deadline_ms": "-5"}}, 422, "deadline_ms"),
        ({"data": {"project": "p", "text": "x", "deadline_ms": "nan"}}, 422, "deadline_ms"),
        (
            {
                "content": b'{"project": "p", "text": "x", "deadline_ms": 1e999}',
                "headers": {"content-type": "application/json"},
            },
            422,
            "deadline_ms",
        ),
        ({"data": {"project": "p", "text": "x", "colour": "red"}}, 422, "colour"),
        ({"data": {"project": "p", "text": "x", "language": "not a tag!"}}, 422, "language"),
        ({"data": {"project": "p"}}, 422, "text"),
        ({"data": {"project": "p", "text": "a\x00b"}}, 422, "text"),
        (
            {
                "data": {"project": "p"},
                "files": [("file", ("a.gif", b"GIF89a" + b"\0" * 64, "image/gif"))],
            },
            415,
            "file[0]",
        ),
        (
            {"data": {"project": "p"}, "files": [("file", ("a.png", _png()[:60], "image/png"))]},
            422,
            "file[0]",
        ),
        ({"json": {"project": "p", "files": [{"data": "@@not base64@@"}]}}, 422, "files[0].data"),
        ({"json": {"project": "p", "text": 5}}, 422, "text"),
        ({"json": {"project": "p", "text": "x", "extra": 1}}, 422, "extra"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "body"),
        ({"content": b"<x/>", "headers": {"content-type": "application/xml"}}, 415, "content-type"),
        (
            {
                "content": b"--b\r\nbroken",
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
            422,
            None,
        ),
    ],
)
def test_bad_input_gets_its_status_naming_the_field_never_a_500(
    api_db: Database, kwargs: dict, status: int, field: str | None
) -> None:
    token = make_key(api_db)
    kwargs = dict(kwargs)  # parametrize shares the dict between the two backends
    headers = {**_auth(token), **kwargs.pop("headers", {})}
    with running_api(api_db) as api:
        r = httpx.post(f"{api.url}/v1/scan", headers=headers, **kwargs)
    assert r.status_code == status, r.text
    if field is not None:
        assert r.json()["detail"]["field"] == field, r.text
    with api_db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Scan)) == 0


def test_too_large_file_and_body_get_413(api_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_key(api_db)
    monkeypatch.setenv("WORKBENCH_INGEST_MAX_FILE_BYTES", "2000")
    monkeypatch.setenv("WORKBENCH_INGEST_MAX_TEXT_BYTES", "10")
    with running_api(api_db, limits=ApiLimits(max_body_bytes=20_000)) as api:
        url = f"{api.url}/v1/scan"
        big = _png(size=(64, 64))
        assert len(big) > 2000
        r = httpx.post(
            url,
            data={"project": "p"},
            files=[("file", ("a.png", big, "image/png"))],
            headers=_auth(token),
        )
        assert r.status_code == 413 and r.json()["detail"]["field"] == "file[0]", r.text
        r = httpx.post(url, data={"project": "p", "text": "x" * 11}, headers=_auth(token))
        assert r.status_code == 413 and r.json()["detail"]["field"] == "text", r.text
        r = httpx.post(url, data={"project": "p", "text": "x" * 30_000}, headers=_auth(token))
        assert r.status_code == 413 and r.json()["detail"]["field"] == "body", r.text

        def chunks(head: bytes):  # no Content-Length: the limit counts the bytes as they arrive
            yield head
            for _ in range(30):
                yield b"x" * 1000

        # Well-formed beginnings, so only the size can stop them (a parser that meets garbage
        # first would refuse it as malformed before the limit is reached).
        multipart_head = b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n'
        for ctype, head in (
            ("application/json", b'{"project": "p", "text": "'),
            ("multipart/form-data; boundary=b", multipart_head),
        ):
            r = httpx.post(
                url, content=chunks(head), headers={**_auth(token), "content-type": ctype}
            )
            assert r.status_code == 413 and r.json()["detail"]["field"] == "body", r.text
        # A malformed multipart body is 422 naming the body, never starlette's bare 400.
        r = httpx.post(
            url,
            content=b"x" * 100,
            headers={**_auth(token), "content-type": "multipart/form-data; boundary=b"},
        )
        assert r.status_code == 422 and r.json()["detail"]["field"] == "body", r.text


def test_review_decision_ingests_the_content_and_queues_it_first(api_db: Database) -> None:
    token = make_key(api_db)
    enc = WordEncoder()
    make_champion(api_db, "p", enc)
    with api_db.sessions.begin() as s:
        project = get_project(s, "p")
        set_project_setting(
            s, project, "scan_thresholds", {"hate": {"review": 0.5, "block": 0.999}}, Actor.system()
        )
        (older,) = make_items(s, project, ["an older item"], prefix="old")
        enqueue(
            s,
            project,
            [NewEntry(item_id=older.id, strategy="cluster_margin", priority=50.0)],
            Actor.system(),
        )
        make_user(s, "rev")
    with running_api(api_db, enc) as api:
        ok = httpx.post(
            f"{api.url}/v1/scan", data={"project": "p", "text": "kind words"}, headers=_auth(token)
        )
        r = httpx.post(
            f"{api.url}/v1/scan",
            data={"project": "p", "text": "hateful words", "external_id": "up-9"},
            headers=_auth(token),
        )
    assert ok.json()["decision"] == "allow" and ok.json()["model"] == {
        "status": "scored",
        "version": 1,
    }
    body = r.json()
    assert r.status_code == 200 and body["decision"] == "review", r.text
    (reason,) = body["reasons"]
    assert reason["source"] == "model" and reason["policy"] == "hate" and reason["threshold"] == 0.5
    assert reason["model_version"] == 1 and 0.5 <= reason["score"] < 0.999
    with api_db.sessions.begin() as s:
        project = get_project(s, "p")
        entry = s.scalar(select(QueueEntry).where(QueueEntry.item_id == body["item_id"]))
        assert entry is not None and entry.strategy == "scan" and "hate" in (entry.reason or "")
        from workbench.db.models import User

        lease = lease_next(s, project, s.scalar(select(User).where(User.name == "rev")))
        assert lease is not None and lease.entry_id == entry.id  # ahead of the older entry
        scan = s.get_one(Scan, body["scan_id"])
        assert scan.item_id == body["item_id"] and scan.external_id == "up-9"
        assert scan.automated_detection and not scan.automated_decision


def test_model_block_threshold_blocks(api_db: Database) -> None:
    token = make_key(api_db)
    enc = WordEncoder()
    make_champion(api_db, "p", enc)
    with api_db.sessions.begin() as s:
        set_project_setting(
            s,
            get_project(s, "p"),
            "scan_default_thresholds",
            {"review": 0.2, "block": 0.5},
            Actor.system(),
        )
    with running_api(api_db, enc) as api:
        r = httpx.post(
            f"{api.url}/v1/scan", data={"project": "p", "text": "hateful"}, headers=_auth(token)
        )
    assert r.json()["decision"] == "block" and r.json()["item_id"] is None


def test_champion_change_is_picked_up_by_the_running_server(api_db: Database) -> None:
    token = make_key(api_db)
    enc = WordEncoder()
    make_champion(api_db, "p", enc, version=1)
    with running_api(api_db, enc) as api:
        first = httpx.post(
            f"{api.url}/v1/scan", data={"project": "p", "text": "x"}, headers=_auth(token)
        )
        make_champion(api_db, "p", enc, version=2)
        second = httpx.post(
            f"{api.url}/v1/scan", data={"project": "p", "text": "x"}, headers=_auth(token)
        )
    assert first.json()["model"]["version"] == 1 and second.json()["model"]["version"] == 2


@pytest.mark.parametrize("fail", ["allow", "block"])
def test_past_the_deadline_the_answer_is_degraded_and_fails_open_or_closed(
    api_db: Database, fail: str
) -> None:
    token = make_key(api_db)
    enc = WordEncoder(delay_s=1.0)
    make_champion(api_db, "p", enc)
    with api_db.sessions.begin() as s:
        set_project_setting(s, get_project(s, "p"), "scan_deadline_decision", fail, Actor.system())
    with running_api(api_db, enc) as api:
        r = httpx.post(
            f"{api.url}/v1/scan",
            data={"project": "p", "text": "slow text", "deadline_ms": "100"},
            headers=_auth(token),
        )
    body = r.json()
    assert r.status_code == 200 and body["degraded"] is True and body["decision"] == fail
    assert body["model"]["status"] == "deadline"
    with api_db.sessions() as s:
        assert s.get_one(Scan, body["scan_id"]).degraded


def test_concurrent_clients_get_no_5xx_and_every_scan_is_recorded(api_db: Database) -> None:
    from concurrent.futures import ThreadPoolExecutor

    token = make_key(api_db)
    enc = WordEncoder()
    make_champion(api_db, "p", enc)
    threads, per_thread = 16, 20

    def client(n: int) -> list[int]:
        with httpx.Client(headers=_auth(token), timeout=60) as c:
            return [
                c.post(
                    f"{api.url}/v1/scan", data={"project": "p", "text": f"post {n}-{i}"}
                ).status_code
                for i in range(per_thread)
            ]

    with running_api(api_db, enc) as api, ThreadPoolExecutor(threads) as pool:
        codes = [c for batch in pool.map(client, range(threads)) for c in batch]
    assert codes.count(200) == threads * per_thread, sorted(set(codes))
    with api_db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Scan)) == threads * per_thread


def test_a_full_house_answers_503_with_retry_after(api_db: Database) -> None:
    from concurrent.futures import ThreadPoolExecutor

    token = make_key(api_db)
    enc = WordEncoder(delay_s=0.5)
    make_champion(api_db, "p", enc)
    with running_api(api_db, enc, limits=ApiLimits(max_concurrent_scans=1)) as api:

        def slow(_: int) -> httpx.Response:
            return httpx.post(
                f"{api.url}/v1/scan",
                data={"project": "p", "text": "slow"},
                headers=_auth(token),
                timeout=30,
            )

        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(slow, range(4)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
