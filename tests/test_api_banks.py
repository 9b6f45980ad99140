"""Bank matches decide scans over real HTTP: a banked image and its altered copy are blocked,
block beats review, and a review bank's match is queued with the bank as the reason."""

from __future__ import annotations

import io

import httpx
import pytest
from builders import make_project
from PIL import Image
from scan_builders import make_key, running_api
from sqlalchemy import select

from workbench.bench.pdq import ALTERATIONS, scene
from workbench.db.database import Database
from workbench.db.models import QueueEntry, Scan
from workbench.services.audit import Actor
from workbench.services.scan.banks import match, store

SYSTEM = Actor.system()


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def fresh_index() -> None:
    match.invalidate()  # the bank index is cached per process; each test has its own database


def test_bank_matches_block_and_review_through_the_api(db: Database) -> None:
    bad, doubtful = scene(11, size=(640, 480)), scene(12, size=(640, 480))
    with db.sessions.begin() as s:
        make_project(s, "p")
        store.create_bank(s, SYSTEM, "KNOWN_BAD", "block")
        store.add_file(s, SYSTEM, "KNOWN_BAD", jpeg(bad), "image/jpeg", content_id="case-1")
        store.create_bank(s, SYSTEM, "DOUBTFUL", "review")
        store.add_file(s, SYSTEM, "DOUBTFUL", jpeg(doubtful), "image/jpeg", content_id="d-1")
    token = make_key(db)
    altered = next(iter(ALTERATIONS.values()))(bad)

    def scan(*images: Image.Image) -> dict:
        files = [("file", (f"{n}.jpg", jpeg(im, 85), "image/jpeg")) for n, im in enumerate(images)]
        r = httpx.post(
            f"{api.url}/v1/scan",
            data={"project": "p", "text": "caption"},
            files=files,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return r.json()

    with running_api(db) as api:
        blocked = scan(altered)
        both = scan(doubtful, bad)
        held = scan(doubtful)
        clean = scan(scene(13, size=(640, 480)))
    assert blocked["decision"] == "block"
    pdq = [r for r in blocked["reasons"] if r["source"] == "hash"]
    assert pdq and pdq[0]["bank"] == "KNOWN_BAD" and pdq[0]["signal_type"] == "pdq"
    assert pdq[0]["content_id"] == "case-1" and 0 <= pdq[0]["distance"] <= 31
    assert blocked["model"]["status"] == "skipped"
    assert both["decision"] == "block"
    assert {r["bank"] for r in both["reasons"]} == {"KNOWN_BAD", "DOUBTFUL"}
    assert held["decision"] == "review" and held["item_id"] is not None
    assert clean["decision"] == "allow"
    with db.sessions() as s:
        entry = s.scalar(select(QueueEntry).where(QueueEntry.item_id == held["item_id"]))
        assert entry is not None and "bank DOUBTFUL" in (entry.reason or "")
        scan_row = s.get_one(Scan, blocked["scan_id"])
        assert scan_row.automated_detection and scan_row.automated_decision


def test_banks_are_managed_over_http_by_keys_with_the_banks_scope(db: Database) -> None:
    with db.sessions.begin() as s:
        make_project(s, "p")
    curator = {"Authorization": f"Bearer {make_key(db, 'curator', ('banks',))}"}
    uploader = {"Authorization": f"Bearer {make_key(db, 'uploader', ('scan',))}"}
    image = jpeg(scene(21, size=(640, 480)))
    with running_api(db) as api, httpx.Client(base_url=api.url, timeout=30) as c:
        assert c.get("/v1/banks", headers=uploader).status_code == 403
        made = c.post("/v1/banks", json={"name": "KNOWN_BAD", "action": "block"}, headers=curator)
        assert made.status_code == 201, made.text
        again = c.post("/v1/banks", json={"name": "KNOWN_BAD", "action": "block"}, headers=curator)
        assert again.status_code == 422 and "already exists" in again.text
        bad = c.post("/v1/banks", json={"name": "lower", "action": "block"}, headers=curator)
        assert bad.status_code == 422 and bad.json()["detail"]["field"] == "name"
        wrong = c.post("/v1/banks", json={"name": "X", "action": "delete"}, headers=curator)
        assert wrong.status_code == 422 and wrong.json()["detail"]["field"] == "action"

        def add(name: str) -> httpx.Response:
            return c.post(
                f"/v1/banks/{name}/content",
                files={"file": ("a.jpg", image, "image/jpeg")},
                data={"content_id": "case-7"},
                headers=curator,
            )

        added = add("KNOWN_BAD")
        assert added.status_code == 201, added.text
        assert {a["signal_type"] for a in added.json()["added"]} == {"pdq", "sha256", "md5"}
        assert add("KNOWN_BAD").status_code == 422  # already in the bank
        assert add("NOPE").status_code == 404
        (bank,) = c.get("/v1/banks", headers=curator).json()["banks"]
        assert bank["signals"] == {"pdq": 1, "sha256": 1, "md5": 1} and bank["enabled"]

        def scan() -> str:
            r = c.post(
                "/v1/scan",
                data={"project": "p"},
                files={"file": ("b.jpg", image, "image/jpeg")},
                headers=uploader,
            )
            assert r.status_code == 200, r.text
            return str(r.json()["decision"])

        assert scan() == "block"
        assert c.post("/v1/banks/KNOWN_BAD/disable", json={}, headers=curator).status_code == 200
        assert scan() == "allow"
        assert c.post("/v1/banks/KNOWN_BAD/enable", headers=curator).status_code == 200
        assert scan() == "block"
