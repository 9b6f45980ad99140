"""Hash-match banks on SQLite and Postgres: a banked image is found again after common edits,
disabled banks and entries stop matching, roll-out is stable per subject, CSV round-trips and a
bad CSV line writes nothing."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from workbench.bench.pdq import ALTERATIONS, scene
from workbench.bench.synthetic_media import make_video
from workbench.db.database import Database
from workbench.db.models import AuditEvent, HashBankContent
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.scan.banks import match, store
from workbench.services.scan.banks.match import BankMatch, in_rollout, match_media
from workbench.services.scan.banks.signals import PDQHasher, SignalError, parse_signal

SYSTEM = Actor.system()


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def fresh_index() -> None:
    # Each test has its own database; a cached index keyed on (bank id, version) must not leak.
    match.invalidate()


def test_bank_names_follow_hma(db: Database) -> None:
    with db.sessions.begin() as s:
        for bad in ("known_bad", "KNOWN BAD", "KNOWN-BAD", ""):
            with pytest.raises(WorkbenchError, match=r"\^\[A-Z0-9_\]\+\$"):
                store.create_bank(s, SYSTEM, bad, "block")
        with pytest.raises(WorkbenchError, match="block or review"):
            store.create_bank(s, SYSTEM, "OK", "delete")
        with pytest.raises(WorkbenchError, match="between 0 and 1"):
            store.create_bank(s, SYSTEM, "OK", "block", ratio=1.5)
        store.create_bank(s, SYSTEM, "KNOWN_BAD_2", "review", ratio=0.5)
        with pytest.raises(WorkbenchError, match="already exists"):
            store.create_bank(s, SYSTEM, "KNOWN_BAD_2", "block")
    with db.sessions() as s:
        [bank] = store.list_banks(s)
        assert (bank.name, bank.action, bank.matching_enabled_ratio) == (
            "KNOWN_BAD_2",
            "review",
            0.5,
        )
        assert s.scalar(select(func.count()).where(AuditEvent.action == "bank.create")) == 1


def test_banked_image_matches_itself_and_its_altered_copies(db: Database) -> None:
    original = scene(11, size=(640, 480))
    data = jpeg(original)
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "KNOWN_BAD", "block")
        rows = store.add_file(s, SYSTEM, "KNOWN_BAD", data, "image/jpeg", content_id="case-1")
        assert {r.signal_type.value for r in rows} == {"pdq", "sha256", "md5"}
        assert next(r.quality for r in rows if r.signal_type.value == "pdq") >= 50
    with db.sessions() as s:
        same = match_media(s, data, "image/jpeg")
        assert {(m.signal_type, m.distance) for m in same} == {
            ("pdq", 0),
            ("sha256", 0),
            ("md5", 0),
        }
        assert all(m.bank == "KNOWN_BAD" and m.action == "block" for m in same)
        for name, alter in ALTERATIONS.items():
            found = match_media(s, jpeg(alter(original), 85), "image/jpeg")
            assert [(m.signal_type, m.content_id) for m in found] == [("pdq", "case-1")], name
            assert found[0].distance <= 31
        assert match_media(s, jpeg(scene(12, size=(640, 480))), "image/jpeg") == []


def test_exact_hashes_match_any_file(db: Database) -> None:
    data = b"%PDF-1.4 not really a pdf"
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "DOCS", "review")
        store.add_file(s, SYSTEM, "DOCS", data, "application/pdf", note="leaked")
    with db.sessions() as s:
        assert [m.signal_type for m in match_media(s, data, "application/pdf")] == ["md5", "sha256"]
        assert match_media(s, data + b" ", "application/pdf") == []


def test_disabled_bank_and_disabled_entry_stop_matching(db: Database) -> None:
    data = jpeg(scene(21))
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "A", "block")
        store.create_bank(s, SYSTEM, "B", "review")
        store.add_file(s, SYSTEM, "A", data, "image/jpeg", content_id="a1")
        store.add_file(s, SYSTEM, "B", data, "image/jpeg", content_id="b1")
    with db.sessions.begin() as s:
        assert {m.bank for m in match_media(s, data, "image/jpeg")} == {"A", "B"}
        store.disable_bank(s, SYSTEM, "A")
        store.disable_content(s, SYSTEM, "B", "b1", utcnow() + timedelta(days=1))
    with db.sessions.begin() as s:
        assert match_media(s, data, "image/jpeg") == []
        # A date already past means enabled again; `enable` clears an open-ended disable.
        store.disable_content(s, SYSTEM, "B", "b1", utcnow() - timedelta(seconds=1))
        store.enable_bank(s, SYSTEM, "A")
    with db.sessions() as s:
        assert {m.bank for m in match_media(s, data, "image/jpeg")} == {"A", "B"}
        [a] = [b for b in store.list_banks(s) if b.name == "A"]
        assert a.enabled and a.disabled_until is None


def test_bank_disabled_until_a_date_is_off_only_until_then(db: Database) -> None:
    data = jpeg(scene(22))
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "TEMP", "block")
        store.add_file(s, SYSTEM, "TEMP", data, "image/jpeg")
        store.disable_bank(s, SYSTEM, "TEMP", until=utcnow() + timedelta(hours=1))
    with db.sessions.begin() as s:
        assert match_media(s, data, "image/jpeg") == []
        store.disable_bank(s, SYSTEM, "TEMP", until=utcnow() - timedelta(seconds=1))
    with db.sessions() as s:
        assert len(match_media(s, data, "image/jpeg")) == 3


def test_rollout_ratio_is_stable_per_subject(db: Database) -> None:
    subjects = [f"user-{i}" for i in range(400)]
    inside = [s for s in subjects if in_rollout("TRIAL", s, 0.25)]
    assert 60 <= len(inside) <= 140  # about a quarter
    assert inside == [s for s in subjects if in_rollout("TRIAL", s, 0.25)]  # same every time
    # Raising the ratio only adds subjects.
    assert set(inside) <= {s for s in subjects if in_rollout("TRIAL", s, 0.5)}
    assert all(in_rollout("TRIAL", s, 1.0) for s in subjects)
    assert not any(in_rollout("TRIAL", s, 0.0) for s in subjects)
    data = jpeg(scene(23))
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "TRIAL", "review", ratio=0.25)
        store.add_file(s, SYSTEM, "TRIAL", data, "image/jpeg")
    with db.sessions() as s:
        for subject in subjects[:40]:
            found = match_media(s, data, "image/jpeg", subject_key=subject)
            assert bool(found) == (subject in inside)


def test_a_change_to_a_bank_rebuilds_the_cached_index(db: Database) -> None:
    first, second = jpeg(scene(31)), jpeg(scene(32))
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "LIVE", "block")
        store.add_file(s, SYSTEM, "LIVE", first, "image/jpeg")
    with db.sessions() as s:
        before = match.bank_index(s)
        assert match_media(s, second, "image/jpeg") == []
    with db.sessions.begin() as s:
        store.add_file(s, SYSTEM, "LIVE", second, "image/jpeg")
    with db.sessions() as s:
        assert len(match_media(s, second, "image/jpeg")) == 3
        assert match.bank_index(s) is not before
        assert match.bank_index(s) is match.bank_index(s)  # unchanged banks: the same index


def test_video_matches_when_enough_frames_match(db: Database, tmp_path: Path) -> None:
    banked = make_video(tmp_path / "a.mp4", seconds=4, fps=5, size=(128, 96), motion="pan", seed=1)
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "VIDEOS", "block")
        rows = store.add_file(s, SYSTEM, "VIDEOS", banked.read_bytes(), "video/mp4", content_id="v")
        vpdq = next(r for r in rows if r.signal_type.value == "vpdq")
        assert len(vpdq.signal.split()) == 4  # one frame a second
    # The same pictures in another codec and container (VP9 WebM): every frame matches.
    again = make_video(tmp_path / "b.webm", seconds=4, fps=5, size=(128, 96), motion="pan", seed=1)
    other = make_video(tmp_path / "c.mp4", seconds=4, fps=5, size=(128, 96), motion="pan", seed=2)
    with db.sessions() as s:
        found = match_media(s, again.read_bytes(), "video/webm")
        assert [(m.signal_type, m.content_id) for m in found] == [("vpdq", "v")]
        assert match_media(s, other.read_bytes(), "video/mp4") == []


def test_vpdq_needs_80_percent_of_the_query_frames(db: Database) -> None:
    hashes = [f"{i:02x}" * 32 for i in (0x00, 0x0F, 0x33, 0x55, 0xFF)]
    banked = " ".join(f"{h},100,{t}.000" for t, h in enumerate(hashes))
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "V", "review")
        store.add_signal(s, SYSTEM, "V", "vpdq", banked, content_id="v")
    strange = ["a5" * 32, "5a" * 32]
    with db.sessions() as s:
        index = match.bank_index(s)
        four_of_five = parse_signal(
            "vpdq", " ".join(f"{h},100,{t}.000" for t, h in enumerate(hashes[:4] + strange[:1]))
        )
        three_of_five = parse_signal(
            "vpdq", " ".join(f"{h},100,{t}.000" for t, h in enumerate(hashes[:3] + strange))
        )
        assert len(index.lookup(four_of_five)) == 1  # 80 %
        assert index.lookup(three_of_five) == []  # 60 %


def test_csv_round_trip_and_reimport_adds_nothing(db: Database, tmp_path: Path) -> None:
    data = jpeg(scene(41))
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "SRC", "block")
        store.create_bank(s, SYSTEM, "DST", "review")
        store.add_file(s, SYSTEM, "SRC", data, "image/jpeg", content_id="x,1", note='say "hi"')
        store.add_signal(s, SYSTEM, "SRC", "md5", "D41D8CD98F00B204E9800998ECF8427E")
        assert store.export_csv(s, SYSTEM, "SRC", tmp_path / "src.csv") == 4
        result = store.import_csv(s, SYSTEM, "DST", tmp_path / "src.csv")
        assert (result.added, result.already_present) == (4, 0)
        again = store.import_csv(s, SYSTEM, "DST", tmp_path / "src.csv")
        assert (again.added, again.already_present) == (0, 4)
        store.export_csv(s, SYSTEM, "DST", tmp_path / "dst.csv")
    assert (tmp_path / "src.csv").read_text() == (tmp_path / "dst.csv").read_text()
    assert "d41d8cd98f00b204e9800998ecf8427e" in (tmp_path / "dst.csv").read_text()
    with db.sessions() as s:
        found = match_media(s, data, "image/jpeg")
        assert sorted((m.bank, m.signal_type) for m in found) == [
            ("DST", "md5"), ("DST", "pdq"), ("DST", "sha256"),
            ("SRC", "md5"), ("SRC", "pdq"), ("SRC", "sha256"),
        ]  # fmt: skip


def test_bad_csv_lines_are_named_and_nothing_is_imported(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text(
        "signal_type,signal,content_id,note\n"
        f"pdq,{'ab' * 32},ok,\n"
        "pdq,xyz,bad-hex,\n"
        "phash,00ff,bad-type,\n"
        "sha256,abc\n"
        f"md5,{'0' * 32},ok2,\n"
    )
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "STRICT", "block")
    with db.sessions.begin() as s, pytest.raises(WorkbenchError) as caught:
        store.import_csv(s, SYSTEM, "STRICT", path)
    problems = caught.value.problems
    assert [(p.line, p.field) for p in problems] == [(3, "signal"), (4, "signal_type"), (5, None)]
    assert "64 hex digits" in problems[0].reason and "expected one of" in problems[1].reason
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(HashBankContent)) == 0
    path.write_text("type,hash\npdq,00\n")
    with db.sessions.begin() as s, pytest.raises(WorkbenchError, match="header"):
        store.import_csv(s, SYSTEM, "STRICT", path)


def test_unknown_bank_and_undecodable_media_are_clear_errors(db: Database) -> None:
    with db.sessions.begin() as s:
        with pytest.raises(NotFoundError, match="no bank named 'NOPE'"):
            store.add_file(s, SYSTEM, "NOPE", b"x", "text/plain")
        with pytest.raises(SignalError, match="cannot decode the image"):
            match_media(s, b"\xff\xd8\xff\xe0 truncated", "image/jpeg")


def test_bank_match_is_the_documented_shape() -> None:
    m = BankMatch(bank="B", action="block", signal_type="pdq", distance=3, content_id=None)
    assert (m.bank, m.action, m.signal_type, m.distance, m.content_id) == (
        "B",
        "block",
        "pdq",
        3,
        None,
    )


def test_two_databases_with_the_same_bank_ids_never_share_a_cached_index(tmp_path: Path) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from workbench.db.base import Base

    first, second = jpeg(scene(51)), jpeg(scene(52))
    engines = []
    for n, data in enumerate((first, second)):
        engine = create_engine(f"sqlite:///{tmp_path / f'{n}.db'}")
        Base.metadata.create_all(engine)
        with Session(engine) as s, s.begin():
            store.create_bank(s, SYSTEM, "SAME", "block")  # id 1, version 2 in both
            store.add_file(s, SYSTEM, "SAME", data, "image/jpeg", content_id=f"db{n}")
        engines.append(engine)
    for engine, data, other in ((engines[0], first, second), (engines[1], second, first)):
        with Session(engine) as s:
            assert {m.content_id for m in match_media(s, data, "image/jpeg")} == {
                f"db{engines.index(engine)}"
            }
            assert match_media(s, other, "image/jpeg") == []
    for engine in engines:
        engine.dispose()


def test_adding_a_file_checks_it_with_the_ingest_limits_first(db: Database, tmp_path: Path) -> None:
    from workbench.bench.synthetic_media import make_bomb_png

    bomb = make_bomb_png(tmp_path / "bomb.png")
    other = tmp_path / "notes.bin"
    other.write_bytes(b"\x00\x01 not any known format")
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "FILES", "review")
        with pytest.raises(WorkbenchError, match=r"bomb\.png"):
            store.add_path(s, SYSTEM, "FILES", bomb)
        # A file of no supported type is banked by its exact hashes alone.
        rows = store.add_path(s, SYSTEM, "FILES", other, content_id="n1")
        assert sorted(r.signal_type.value for r in rows) == ["md5", "sha256"]
        assert s.scalar(select(func.count()).select_from(HashBankContent)) == 2


def test_featureless_pictures_are_banked_and_matched_by_exact_hash_only(db: Database) -> None:
    grey = Image.new("RGB", (200, 150), (128, 128, 128))
    same_grey = jpeg(Image.new("RGB", (210, 160), (128, 128, 128)), 70)  # other bytes, same PDQ
    pdq = PDQHasher.hash_bytes(jpeg(grey))
    assert pdq.quality is not None and pdq.quality < 50  # PDQ's own verdict on a flat picture
    assert PDQHasher.hash_bytes(same_grey).value == pdq.value
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "FLAT", "block")
        rows = store.add_file(s, SYSTEM, "FLAT", jpeg(grey), "image/jpeg")
        assert sorted(r.signal_type.value for r in rows) == ["md5", "sha256"]
        # The same hash from a partner's list (no quality known) is banked, yet a flat query
        # does not match it: every featureless picture would.
        store.add_signal(s, SYSTEM, "FLAT", "pdq", pdq.value, content_id="partner")
    with db.sessions() as s:
        assert match_media(s, same_grey, "image/jpeg") == []
        exact = match_media(s, jpeg(grey), "image/jpeg")
        assert [m.signal_type for m in exact] == ["md5", "sha256"]


def test_vpdq_signals_survive_csv_and_bad_ones_are_named(db: Database, tmp_path: Path) -> None:
    video = " ".join(f"{c * 64},{90 + i},{i}.000" for i, c in enumerate("0f3"))
    with db.sessions.begin() as s:
        store.create_bank(s, SYSTEM, "CLIPS", "review")
        store.create_bank(s, SYSTEM, "COPY", "review")
        store.add_signal(s, SYSTEM, "CLIPS", "vpdq", video, content_id="clip", note="a, b")
        store.export_csv(s, SYSTEM, "CLIPS", tmp_path / "clips.csv")
        assert store.import_csv(s, SYSTEM, "COPY", tmp_path / "clips.csv").added == 1
    with db.sessions() as s:
        [row] = s.scalars(
            select(HashBankContent).where(HashBankContent.content_id == "clip").limit(1)
        )
        assert row.signal == video and row.quality == 90 and len(row.signal_key) == 64
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "signal_type,signal,content_id,note\n"
        f'vpdq,"{"0" * 64},100",,\n'
        f'vpdq,"{"0" * 64},101,0.0",,\n'
    )
    with db.sessions.begin() as s, pytest.raises(WorkbenchError) as caught:
        store.import_csv(s, SYSTEM, "COPY", bad)
    reasons = [(p.line, p.reason) for p in caught.value.problems]
    assert reasons == [
        (2, f"vpdq frame 1 is not 'pdq_hex,quality,seconds': '{'0' * 64},100'"),
        (3, "vpdq frame 1: quality is 0-100 and seconds >= 0"),
    ]
