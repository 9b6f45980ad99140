"""Ingest: every supported media type, every kind of bad input, dedupe, and crash safety."""

from __future__ import annotations

import csv
import ctypes
import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from media_factory import (
    ALL_KINDS,
    corrupt_middle,
    make_audio,
    make_bomb_png,
    make_empty,
    make_image,
    make_media,
    make_video,
    make_zip_named,
    truncate,
)
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.models import AuditEvent, Item, MediaAsset, Project
from workbench.errors import Problem, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.ingest.media import probe_media
from workbench.services.ingest.media_store import StagingRun, recover_staging, store_path_for
from workbench.services.ingest.write import IngestReport, ingest_path

EXPECTED_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "mp4": "video/mp4",
    "webm": "video/webm",
}


def ingest(db: Database, path: Path, project: str = "p", **kw: Any) -> IngestReport:
    return ingest_path(db.sessions, db.settings, path, project, Actor.system(), **kw)


def write_jsonl(path: Path, rows: list[dict[str, Any] | str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for r in rows:
            if isinstance(r, bytes):
                fh.write(r + b"\n")
            elif isinstance(r, str):
                fh.write(r.encode() + b"\n")
            else:
                fh.write(json.dumps(r).encode() + b"\n")
    return path


def stored_files(settings: Settings) -> set[str]:
    root = settings.media_dir
    if not root.exists():
        return set()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def staged_files(settings: Settings) -> list[Path]:
    root = settings.staging_dir
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and p.name != ".lock"]


def snapshot(db: Database) -> dict[str, Any]:
    """Everything ingest may change: items, assets, audit events, the store's files."""
    with db.sessions() as s:
        items = sorted(
            s.execute(
                select(Item.external_id, Item.content_hash, Item.revision, Item.duplicate_of_id)
            ).all()
        )
        assets = sorted(s.execute(select(MediaAsset.sha256, MediaAsset.store_path)).all())
        events = s.scalar(select(func.count()).select_from(AuditEvent))
        projects = sorted(s.scalars(select(Project.name)))
    return {
        "items": items,
        "assets": assets,
        "events": events,
        "projects": projects,
        "files": stored_files(db.settings),
    }


def assert_nothing_written(db: Database) -> None:
    snap = snapshot(db)
    assert snap["items"] == [] and snap["assets"] == [] and snap["projects"] == []
    assert snap["files"] == set()
    assert staged_files(db.settings) == []


# --- every supported type ----------------------------------------------------------------------


def test_folder_ingest_stores_every_supported_type_with_probed_facts(db, tmp_path) -> None:
    folder = tmp_path / "media"
    for n, kind in enumerate(ALL_KINDS):
        make_media(folder / f"sub/item{n}.{kind}", seed=n)
    (folder / "note.txt").write_text("a plain text item\n", encoding="utf-8")

    report = ingest(db, folder)

    assert report.items_added == len(ALL_KINDS) + 1 and report.rejected == 0
    assert report.assets_stored == len(ALL_KINDS) and report.created_project
    with db.sessions() as s:
        assets = {a.item.external_id: a for a in s.scalars(select(MediaAsset))}
        for n, kind in enumerate(ALL_KINDS):
            a = assets[f"sub/item{n}.{kind}"]
            assert a.mime_type == EXPECTED_MIME[kind]
            assert a.store_path == store_path_for(a.sha256, kind)
            stored = db.settings.media_dir / a.store_path
            assert stored.read_bytes() == (folder / f"sub/item{n}.{kind}").read_bytes()
            assert a.size_bytes == stored.stat().st_size
            assert a.item.modalities == [a.modality.value]
            if kind in ("png", "jpg", "webp"):
                assert (a.width, a.height) == (32, 24) and a.duration_seconds is None
            elif kind in ("mp4", "webm"):
                assert (a.width, a.height) == (64, 48)
                assert a.duration_seconds == pytest.approx(1.0, abs=0.05)
            else:
                assert a.duration_seconds == pytest.approx(1.0, abs=0.05)
        note = s.scalar(select(Item).where(Item.external_id == "note.txt"))
        assert note.text == "a plain text item\n" and note.modalities == ["text"]


def test_manifest_row_combines_text_image_audio_video(db, tmp_path) -> None:
    make_image(tmp_path / "m/pic.webp", "webp")
    make_audio(tmp_path / "m/voice.ogg", "ogg")
    make_video(tmp_path / "m/clip.webm", "webm", with_audio=True)
    manifest = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {
                "external_id": "post-1",
                "text": "caption",
                "image": "m/pic.webp",
                "audio": "m/voice.ogg",
                "video": "m/clip.webm",
                "language": "pt-BR",
                "metadata": {"channel": "c1", "views": 3},
            }
        ],
    )
    ingest(db, manifest)
    with db.sessions() as s:
        item = s.scalar(select(Item))
        assert item.modalities == ["text", "image", "audio", "video"]
        assert item.language == "pt-BR" and item.meta == {"channel": "c1", "views": 3}
        assert {a.modality.value: a.original_name for a in item.assets} == {
            "image": "m/pic.webp",
            "audio": "m/voice.ogg",
            "video": "m/clip.webm",
        }


def test_type_comes_from_the_bytes_not_the_name(sqlite_db, tmp_path) -> None:
    make_image(tmp_path / "f/really_a_png.jpg", "png")
    report = ingest(sqlite_db, tmp_path / "f")
    assert report.items_added == 1
    with sqlite_db.sessions() as s:
        asset = s.scalar(select(MediaAsset))
        assert asset.mime_type == "image/png" and asset.store_path.endswith(".png")


def test_mp3_without_id3_tag_is_recognised_by_its_frame_header(sqlite_db, tmp_path) -> None:
    # puremagic knows MP3 by its ID3 tag; a bare stream of frames needs the frame-sync rule.
    tagged = make_audio(tmp_path / "tagged.mp3", "mp3").read_bytes()
    assert tagged[:3] == b"ID3"
    size = tagged[6:10]  # ID3v2 tag size: four 7-bit bytes, after a 10-byte header
    tag_len = 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
    (tmp_path / "f").mkdir()
    (tmp_path / "f/bare.bin").write_bytes(tagged[tag_len:])
    ingest(sqlite_db, tmp_path / "f")
    with sqlite_db.sessions() as s:
        asset = s.scalar(select(MediaAsset))
        assert asset.mime_type == "audio/mpeg"
        assert asset.duration_seconds == pytest.approx(1.0, abs=0.1)


def test_item_content_hash_is_sha256_of_canonical_json(sqlite_db, tmp_path) -> None:
    make_image(tmp_path / "a.png")
    ingest(
        sqlite_db,
        write_jsonl(
            tmp_path / "m.jsonl",
            [{"external_id": "a", "text": "hé", "image": "a.png", "metadata": {"b": 1, "a": 2}}],
        ),
    )
    with sqlite_db.sessions() as s:
        item = s.scalar(select(Item))
        image_sha = item.assets[0].sha256
    canonical = (
        f'{{"assets":{{"image":"{image_sha}"}},"language":null,'
        '"metadata":{"a":2,"b":1},"text":"hé"}'
    )
    assert item.content_hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_moving_the_source_folder_breaks_nothing(sqlite_db, tmp_path) -> None:
    make_image(tmp_path / "src/a.png")
    ingest(sqlite_db, tmp_path / "src")
    (tmp_path / "src").rename(tmp_path / "moved")
    with sqlite_db.sessions() as s:
        asset = s.scalar(select(MediaAsset))
        with Image.open(sqlite_db.settings.media_dir / asset.store_path) as img:
            assert img.size == (32, 24)


def test_csv_and_parquet_manifests(sqlite_db, tmp_path) -> None:
    make_image(tmp_path / "a.png")
    with (tmp_path / "m.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "text", "image", "language", "metadata"])
        w.writerow(["c1", "hello", "", "", '{"k": [1, 2]}'])
        w.writerow(["c2", "", "a.png", "en", ""])
    pq.write_table(
        pa.table(
            {
                "external_id": ["q1", "q2"],
                "text": ["from parquet", None],
                "image": [None, "a.png"],
                "metadata": [{"src": "x"}, None],
            }
        ),
        tmp_path / "m.parquet",
    )
    assert ingest(sqlite_db, tmp_path / "m.csv").items_added == 2
    assert ingest(sqlite_db, tmp_path / "m.parquet").items_added == 2
    with sqlite_db.sessions() as s:
        by_id = {i.external_id: i for i in s.scalars(select(Item))}
        assert by_id["c1"].meta == {"k": [1, 2]} and by_id["c1"].language is None
        assert by_id["c2"].text is None and by_id["c2"].modalities == ["image"]
        assert by_id["q1"].meta == {"src": "x"} and by_id["q2"].modalities == ["image"]


def test_hidden_files_are_skipped_and_counted(sqlite_db, tmp_path) -> None:
    make_image(tmp_path / "f/a.png")
    (tmp_path / "f/.DS_Store").write_bytes(b"junk")
    make_image(tmp_path / "f/.thumbs/b.png")
    report = ingest(sqlite_db, tmp_path / "f")
    assert report.items_added == 1 and report.hidden_skipped == 2


# --- bad input ---------------------------------------------------------------------------------

Case = Callable[[Path], tuple[Path, str, str | None, int | None]]


def _good_first(tmp: Path, bad_row: dict[str, Any] | str | bytes) -> Path:
    # A good row with media first: a run that were not all-or-nothing would write it.
    make_image(tmp / "good.png")
    return write_jsonl(tmp / "m.jsonl", [{"external_id": "good", "image": "good.png"}, bad_row])


def _media_row(tmp: Path, name: str, make: Callable[[Path], Any], field: str = "image") -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    make(tmp / name)
    return _good_first(tmp, {"external_id": "bad", field: name})


def _outside_symlink(tmp: Path) -> Path:
    outside = tmp.parent / f"{tmp.name}-outside"
    make_image(outside / "secret.png")
    (tmp / "m").mkdir(parents=True)
    (tmp / "m/link.png").symlink_to(outside / "secret.png")
    make_image(tmp / "m/good.png")
    return write_jsonl(
        tmp / "m/m.jsonl",
        [{"external_id": "good", "image": "good.png"}, {"external_id": "bad", "image": "link.png"}],
    )


def _csv(tmp: Path, body: bytes) -> Path:
    make_image(tmp / "good.png")
    p = tmp / "m.csv"
    p.write_bytes(b"external_id,image,text,metadata\r\ngood,good.png,,\r\n" + body)
    return p


BAD_CASES: dict[str, Case] = {
    "malformed JSON line": lambda t: (
        _good_first(t, '{"external_id": "bad", "text": '),
        "malformed JSON",
        None,
        2,
    ),
    "malformed CSV (field count)": lambda t: (
        _csv(t, b"bad,x,y,z,extra\r\n"),
        "malformed CSV",
        None,
        3,
    ),
    "malformed CSV (broken quote)": lambda t: (
        _csv(t, b'bad,,"unclosed,\r\n'),
        "malformed CSV",
        None,
        3,
    ),
    "missing external_id": lambda t: (
        _good_first(t, {"text": "no id"}),
        "missing external_id",
        "external_id",
        2,
    ),
    "non-string external_id": lambda t: (
        _good_first(t, {"external_id": 7, "text": "x"}),
        "must be a string",
        "external_id",
        2,
    ),
    "no content": lambda t: (_good_first(t, {"external_id": "bad"}), "no content", None, 2),
    "metadata not an object": lambda t: (
        _good_first(t, {"external_id": "bad", "text": "x", "metadata": [1, 2]}),
        "must be a JSON object",
        "metadata",
        2,
    ),
    "CSV metadata not an object": lambda t: (
        _csv(t, b'bad,,x,"[1, 2]"\r\n'),
        "must be a JSON object",
        "metadata",
        3,
    ),
    "CSV metadata not JSON": lambda t: (
        _csv(t, b"bad,,x,{oops\r\n"),
        "not valid JSON",
        "metadata",
        3,
    ),
    "non-UTF-8 JSON line": lambda t: (
        _good_first(t, b'{"external_id": "bad", "text": "caf\xe9"}'),
        "not valid UTF-8",
        None,
        2,
    ),
    "non-UTF-8 CSV cell": lambda t: (_csv(t, b"bad,,caf\xe9,\r\n"), "not valid UTF-8", "text", 3),
    "lone surrogate in text": lambda t: (
        _good_first(t, '{"external_id": "bad", "text": "x\\udc80"}'),
        "not valid UTF-8",
        "text",
        2,
    ),
    "NUL in text": lambda t: (
        _good_first(t, {"external_id": "bad", "text": "a\u0000b"}),
        "NUL",
        "text",
        2,
    ),
    "text over the limit": lambda t: (
        _good_first(t, {"external_id": "bad", "text": "x" * 101}),
        "over the limit of 100",
        "text",
        2,
    ),
    "unknown field": lambda t: (
        _good_first(t, {"external_id": "bad", "txt": "typo"}),
        "did you mean 'text'",
        "txt",
        2,
    ),
    "duplicate external_id": lambda t: (
        _good_first(t, {"external_id": "good", "text": "again"}),
        "repeats line 1",
        "external_id",
        2,
    ),
    "missing file": lambda t: (
        _good_first(t, {"external_id": "bad", "image": "nope.png"}),
        "no such file",
        "image",
        2,
    ),
    "path with ..": lambda t: (
        _good_first(t, {"external_id": "bad", "image": "../good.png"}),
        "'..' is not allowed",
        "image",
        2,
    ),
    "absolute path": lambda t: (
        _good_first(t, {"external_id": "bad", "image": str(t / "good.png")}),
        "absolute paths are not allowed",
        "image",
        2,
    ),
    "symlink pointing outside": lambda t: (
        _outside_symlink(t),
        "resolves outside the manifest's folder",
        "image",
        2,
    ),
    "empty media": lambda t: (_media_row(t, "e.png", make_empty), "empty file", "image", 2),
    "zip named .png": lambda t: (
        _media_row(t, "z.png", make_zip_named),
        "unsupported type: a ZIP archive",
        "image",
        2,
    ),
    "image given as audio": lambda t: (
        _media_row(t, "pic.wav", lambda p: make_image(p, "png"), field="audio"),
        "not audio: the bytes are an image",
        "audio",
        2,
    ),
    "decompression bomb over the configured limit": lambda t: (
        _media_row(t, "bomb.png", lambda p: make_bomb_png(p, 10_000, 6_000)),
        "10000x6000 = 60000000 pixels, over the limit of 50000000 (a decompression bomb?",
        "image",
        2,
    ),
    "decompression bomb over Pillow's ceiling": lambda t: (
        _media_row(t, "bomb.png", lambda p: make_bomb_png(p, 100_000, 100_000)),
        "decompression bomb",
        "image",
        2,
    ),
    "unsupported type (GIF)": lambda t: (
        _media_row(t, "a.gif", lambda p: Image.new("RGB", (4, 4)).save(p, "GIF")),
        "unsupported type: image/gif",
        "image",
        2,
    ),
    "corrupt PNG": lambda t: (
        _media_row(t, "c.png", lambda p: corrupt_middle(make_image(p, "png"))),
        "corrupt or truncated PNG",
        "image",
        2,
    ),
    "corrupt FLAC": lambda t: (
        _media_row(t, "c.flac", lambda p: corrupt_middle(make_audio(p, "flac")), "audio"),
        "corrupt FLAC",
        "audio",
        2,
    ),
}

TRUNCATED = {
    "png": ("image", "truncated PNG"),
    "jpg": ("image", "truncated JPEG"),
    "webp": ("image", "truncated WebP"),
    "wav": ("audio", "truncated WAV"),
    "flac": ("audio", "truncated FLAC"),
    "mp3": ("audio", "truncated MP3"),
    "ogg": ("audio", "truncated Ogg"),
    "mp4": ("video", "truncated MP4"),
    "webm": ("video", "truncated WebM"),
}


def _expect_rejected(
    db: Database, manifest: Path, reason: str, field: str | None, line: int | None
) -> list[Problem]:
    with pytest.raises(WorkbenchError) as info:
        ingest(db, manifest)
    problems = info.value.problems
    assert "nothing was written" in info.value.message or problems
    match = [
        p
        for p in problems
        if reason in p.reason and p.field == field and (line is None or p.line == line)
    ]
    assert match, f"no problem with {reason!r} field={field} line={line} in {problems}"
    assert_nothing_written(db)
    return problems


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_row_gives_its_message_and_writes_nothing(
    case: str, sqlite_db, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("WORKBENCH_INGEST_MAX_TEXT_BYTES", "100")
    manifest, reason, field, line = BAD_CASES[case](tmp_path / "in")
    _expect_rejected(sqlite_db, manifest, reason, field, line)


@pytest.mark.parametrize("kind", list(TRUNCATED))
def test_truncated_media_is_refused(kind: str, sqlite_db, tmp_path) -> None:
    field, reason = TRUNCATED[kind]
    manifest = _media_row(tmp_path, f"t.{kind}", lambda p: truncate(make_media(p)), field)
    _expect_rejected(sqlite_db, manifest, reason, field, 2)


def test_every_bad_row_is_listed_not_only_the_first(sqlite_db, tmp_path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"external_id": "a", "text": "ok"},
            {"external_id": "b"},
            "{broken",
            {"external_id": 3, "text": "x"},
        ],
    )
    problems = _expect_rejected(sqlite_db, manifest, "no content", None, 2)
    assert {p.line for p in problems} == {2, 3, 4}


def test_unreadable_manifest_is_an_error(sqlite_db, tmp_path) -> None:
    (tmp_path / "m.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(WorkbenchError, match="not a readable Parquet file"):
        ingest(sqlite_db, tmp_path / "m.parquet")
    with pytest.raises(WorkbenchError, match="no such file"):
        ingest(sqlite_db, tmp_path / "absent.jsonl")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(WorkbenchError, match="unsupported file type"):
        ingest(sqlite_db, tmp_path / "m.txt")
    assert_nothing_written(sqlite_db)


# --- unreadable files, met without root's power to read anything -------------------------------

_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _drop_root_file_access() -> None:
    """Take CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this process (effective, permitted,
    inheritable), so that even as root it obeys file modes, `access(2)` included.

    Why not become `nobody`: the interpreter's standard library may sit in root's private home
    (pyenv under /root here), and a `nobody` child fails on its first import not yet loaded."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)  # version, pid 0 = self
    sets = (ctypes.c_uint32 * 6)()  # {effective, permitted, inheritable} for caps 0-31, 32-63
    if libc.capget(header, sets) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    keep = ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH)) & 0xFFFFFFFF
    for i in range(3):
        sets[i] &= keep
    if libc.capset(header, sets) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _ingest_without_root_file_access(db: Database, source: Path) -> dict[str, Any]:
    """Ingest `source` in a forked child that, when the tests run as root (CI does), first loses
    root's power to read every file whatever its mode. Returns what the child saw."""
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)

    def target() -> None:
        try:
            if os.geteuid() == 0:
                _drop_root_file_access()
            db.engine.dispose(close=False)  # the parent's pooled connections stay the parent's
            try:
                report = ingest(db, source)
                send.send({"report": report.as_dict()})
            except WorkbenchError as exc:
                send.send({"error": str(exc), "problems": [p.as_dict() for p in exc.problems]})
        except BaseException as exc:
            send.send({"crash": repr(exc)})
        finally:
            os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=target)
    proc.start()
    try:
        assert receive.poll(120), "the child ingest sent nothing back"
        return receive.recv()
    finally:
        proc.join(30)


def _unreadable_manifest(tmp: Path) -> tuple[Path, Path]:
    make_image(tmp / "good.png")
    manifest = write_jsonl(tmp / "m.jsonl", [{"external_id": "good", "image": "good.png"}])
    return manifest, manifest


def _unreadable_media_in_manifest(tmp: Path) -> tuple[Path, Path]:
    make_image(tmp / "good.png")
    make_image(tmp / "secret.png", seed=2)
    manifest = write_jsonl(
        tmp / "m.jsonl",
        [
            {"external_id": "good", "image": "good.png"},
            {"external_id": "bad", "image": "secret.png"},
        ],
    )
    return manifest, tmp / "secret.png"


def _unreadable_file_in_folder(tmp: Path) -> tuple[Path, Path]:
    make_image(tmp / "f/good.png")
    make_image(tmp / "f/secret.png", seed=2)
    return tmp / "f", tmp / "f/secret.png"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(_unreadable_manifest, None, id="manifest"),
        pytest.param(
            _unreadable_media_in_manifest,
            {"line": 2, "external_id": "bad", "field": "image"},
            id="media-named-by-manifest",
        ),
        pytest.param(
            _unreadable_file_in_folder,
            {"line": None, "external_id": "secret.png", "field": None},
            id="file-in-folder",
        ),
    ],
)
def test_unreadable_file_is_reported_where_it_is_and_nothing_is_written(
    db: Database,
    tmp_path: Path,
    make: Callable[[Path], tuple[Path, Path]],
    expected: dict[str, Any] | None,
) -> None:
    source, unreadable = make(tmp_path / "data")
    unreadable.chmod(0)

    outcome = _ingest_without_root_file_access(db, source)

    assert "crash" not in outcome, outcome
    assert "error" in outcome, f"the unreadable file went unnoticed: {outcome}"
    if expected is None:  # the manifest itself: the run stops, naming it
        assert outcome["error"] == f"{source}: cannot be read (permission denied)"
        assert outcome["problems"] == []
    else:  # one bad row among readable ones, located
        (problem,) = outcome["problems"]
        assert {k: problem[k] for k in expected} == expected
        assert "cannot be read" in problem["reason"]
        assert "permission denied" in problem["reason"].lower()
    assert_nothing_written(db)


def test_folder_symlink_outside_is_an_error(sqlite_db, tmp_path) -> None:
    make_image(tmp_path / "outside/secret.png")
    make_image(tmp_path / "f/a.png")
    (tmp_path / "f/link.png").symlink_to(tmp_path / "outside/secret.png")
    with pytest.raises(WorkbenchError) as info:
        ingest(sqlite_db, tmp_path / "f")
    (p,) = info.value.problems
    assert p.external_id == "link.png" and "outside the folder" in p.reason
    assert_nothing_written(sqlite_db)


def test_non_utf8_text_file_in_folder_is_an_error(sqlite_db, tmp_path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f/latin1.txt").write_bytes(b"caf\xe9")
    (tmp_path / "f/ok.txt").write_text("fine")
    with pytest.raises(WorkbenchError) as info:
        ingest(sqlite_db, tmp_path / "f")
    assert [(p.external_id, "not valid UTF-8" in p.reason) for p in info.value.problems] == [
        ("latin1.txt", True)
    ]
    assert_nothing_written(sqlite_db)


def test_media_limits_are_configurable(sqlite_db, tmp_path, monkeypatch) -> None:
    make_image(tmp_path / "f/a.png", size=(40, 30))
    monkeypatch.setenv("WORKBENCH_INGEST_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(WorkbenchError) as info:
        ingest(sqlite_db, tmp_path / "f")
    assert "40x30 = 1200 pixels, over the limit of 1000" in info.value.problems[0].reason
    monkeypatch.setenv("WORKBENCH_INGEST_MAX_IMAGE_PIXELS", "1200")
    assert ingest(sqlite_db, tmp_path / "f").items_added == 1


@pytest.mark.parametrize(
    ("env", "value", "reason"),
    [
        ("WORKBENCH_INGEST_MAX_MEDIA_SECONDS", "0.5", "audio lasts 1.0 s, over the limit of 0.5 s"),
        ("WORKBENCH_INGEST_MAX_FILE_BYTES", "1000", "over the limit of 1000"),
    ],
)
def test_audio_limits_are_configurable(
    env: str, value: str, reason: str, sqlite_db, tmp_path, monkeypatch
) -> None:
    make_audio(tmp_path / "f/a.wav", "wav")
    monkeypatch.setenv(env, value)
    with pytest.raises(WorkbenchError) as info:
        ingest(sqlite_db, tmp_path / "f")
    assert reason in info.value.problems[0].reason
    assert_nothing_written(sqlite_db)


# --- 99 good + 1 bad, through the CLI -----------------------------------------------------------


def _hundred_rows(tmp: Path) -> Path:
    make_image(tmp / "img.png")
    rows: list[dict[str, Any] | str | bytes] = [
        {"external_id": f"r{n:03d}", "text": f"row {n}", "image": "img.png"} for n in range(100)
    ]
    rows[41] = {"external_id": "r041", "image": "missing.png"}
    return write_jsonl(tmp / "m.jsonl", rows)


def test_99_good_and_1_bad_writes_nothing_by_default(db, cli, tmp_path) -> None:
    manifest = _hundred_rows(tmp_path)
    out = cli.json("ingest", manifest, "--project", "p", expect=1)
    assert out["ok"] is False and "1 of 100 rows are bad" in out["error"]
    assert out["problems"] == [
        {
            "reason": "missing.png: no such file",
            "line": 42,
            "external_id": "r041",
            "field": "image",
            "file": str(manifest),
        }
    ]
    assert_nothing_written(db)


def test_99_good_and_1_bad_with_skip_invalid_writes_99(db, cli, tmp_path) -> None:
    manifest = _hundred_rows(tmp_path)
    rejects = tmp_path / "out/rejects.jsonl"
    out = cli.json("ingest", manifest, "-p", "p", "--skip-invalid", "--rejects", rejects)
    assert out["items_added"] == 99 and out["rejected"] == 1 and out["created_project"]
    assert out["exact_duplicates"] == 0 and out["assets_stored"] == 1
    lines = rejects.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [
        {"line": 42, "external_id": "r041", "field": "image", "reason": "missing.png: no such file"}
    ]
    with db.sessions() as s:
        ids = set(s.scalars(select(Item.external_id)))
        assert len(ids) == 99 and "r041" not in ids
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "items.ingested")).all()
        assert len(events) == 1  # one event per run, not one per item
        assert events[0].details["items_added"] == 99 and events[0].details["rejected"] == 1


def test_cli_human_output_and_created_project_message(db, cli, tmp_path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"external_id": "a", "text": "x"}])
    result = cli("ingest", manifest, "-p", "fresh")
    assert result.exit_code == 0
    assert "created project 'fresh'" in result.stderr
    assert "1 added" in result.stdout
    again = cli("ingest", manifest, "-p", "fresh")
    assert "created project" not in again.stderr and "1 unchanged" in again.stdout


def test_rejects_without_skip_invalid_is_a_usage_error(cli, tmp_path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"external_id": "a", "text": "x"}])
    result = cli("ingest", manifest, "-p", "p", "--rejects", tmp_path / "r.jsonl")
    assert result.exit_code == 2


def test_bad_input_in_json_mode_has_no_traceback(cli, tmp_path) -> None:
    make_zip_named(tmp_path / "f/photo.png")
    result = cli("ingest", tmp_path / "f", "-p", "p", "--json")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr + result.stdout
    out = json.loads(result.stdout)
    assert out["problems"][0]["external_id"] == "photo.png"
    assert "ZIP archive" in out["problems"][0]["reason"]


# --- dedupe ------------------------------------------------------------------------------------


def test_same_external_id_same_content_is_a_no_op(db, tmp_path) -> None:
    make_image(tmp_path / "a.png")
    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"external_id": "a", "text": "t", "image": "a.png"}]
    )
    ingest(db, manifest)
    before = snapshot(db)
    report = ingest(db, manifest)
    assert (report.items_added, report.items_updated, report.items_unchanged) == (0, 0, 1)
    assert snapshot(db) == before  # not even an audit event


def test_same_external_id_different_content_is_an_error_without_update(db, tmp_path) -> None:
    ingest(db, write_jsonl(tmp_path / "1.jsonl", [{"external_id": "a", "text": "old"}]))
    before = snapshot(db)
    changed = write_jsonl(
        tmp_path / "2.jsonl",
        [{"external_id": "b", "text": "new item"}, {"external_id": "a", "text": "new"}],
    )
    with pytest.raises(WorkbenchError) as info:
        ingest(db, changed)
    (p,) = info.value.problems
    assert (p.line, p.external_id, p.field) == (2, "a", "external_id")
    assert "different content" in p.reason and "--update" in p.reason
    assert snapshot(db) == before


def test_update_replaces_content_and_bumps_revision(db, tmp_path) -> None:
    make_image(tmp_path / "old.png", seed=1)
    make_image(tmp_path / "new.png", seed=2)
    make_audio(tmp_path / "new.flac", "flac")
    ingest(
        db,
        write_jsonl(
            tmp_path / "1.jsonl", [{"external_id": "a", "text": "old", "image": "old.png"}]
        ),
    )
    with db.sessions() as s:
        item = s.scalar(select(Item))
        old_hash, old_id = item.content_hash, item.id
    report = ingest(
        db,
        write_jsonl(
            tmp_path / "2.jsonl",
            [{"external_id": "a", "text": "new", "image": "new.png", "audio": "new.flac"}],
        ),
        update=True,
    )
    assert (report.items_added, report.items_updated) == (0, 1)
    with db.sessions() as s:
        item = s.scalar(select(Item))
        assert item.id == old_id and item.revision == 2 and item.text == "new"
        assert item.content_hash != old_hash and item.modalities == ["text", "image", "audio"]
        names = {a.modality.value: a.original_name for a in item.assets}
        assert names == {"image": "new.png", "audio": "new.flac"}
        for a in item.assets:
            assert (db.settings.media_dir / a.store_path).is_file()
    # Updating again with the same content changes nothing.
    again = ingest(
        db,
        write_jsonl(
            tmp_path / "3.jsonl",
            [{"external_id": "a", "text": "new", "image": "new.png", "audio": "new.flac"}],
        ),
        update=True,
    )
    assert again.items_unchanged == 1 and again.items_updated == 0


def test_same_content_under_two_ids_is_two_items_marked_duplicate(db, tmp_path) -> None:
    make_image(tmp_path / "a.png")
    row = {"text": "same", "image": "a.png", "metadata": {"k": 1}}
    ingest(db, write_jsonl(tmp_path / "1.jsonl", [{"external_id": "first", **row}]))
    report = ingest(
        db,
        write_jsonl(
            tmp_path / "2.jsonl",
            [
                {"external_id": "second", **row},
                {"external_id": "third", **row},
                {"external_id": "other", **row, "metadata": {"k": 2}},
            ],
        ),
    )
    assert report.items_added == 3 and report.exact_duplicates == 2
    assert report.assets_stored == 0  # the image was stored by the first run
    with db.sessions() as s:
        by_id = {i.external_id: i for i in s.scalars(select(Item))}
        root = by_id["first"].id
        assert by_id["first"].duplicate_of_id is None
        assert by_id["second"].duplicate_of_id == root
        assert by_id["third"].duplicate_of_id == root
        assert by_id["other"].duplicate_of_id is None
        assert s.scalar(select(func.count()).select_from(MediaAsset)) == 4


def test_update_away_from_a_duplicate_group_re_roots_it(db, tmp_path) -> None:
    ingest(
        db,
        write_jsonl(
            tmp_path / "1.jsonl",
            [{"external_id": x, "text": "same"} for x in ("a", "b", "c")],
        ),
    )
    ingest(
        db,
        write_jsonl(tmp_path / "2.jsonl", [{"external_id": "a", "text": "changed"}]),
        update=True,
    )
    with db.sessions() as s:
        by_id = {i.external_id: i for i in s.scalars(select(Item))}
        assert by_id["a"].duplicate_of_id is None and by_id["a"].revision == 2
        assert by_id["b"].duplicate_of_id is None
        assert by_id["c"].duplicate_of_id == by_id["b"].id


# --- interruption ------------------------------------------------------------------------------

CRASH = 17


def _crash_in_child(where: str, manifest: Path) -> int:
    """Run an ingest in a forked process that dies (os._exit: no cleanup) at `where`."""

    def target() -> None:
        if where == "before_commit":
            Session.commit = lambda self: os._exit(CRASH)  # type: ignore[method-assign]
        else:
            StagingRun.publish = lambda self: os._exit(CRASH)  # type: ignore[method-assign]
        db = open_database()
        ingest_path(db.sessions, db.settings, manifest, "p", Actor.system())
        os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=target)
    proc.start()
    proc.join(120)
    return proc.exitcode if proc.exitcode is not None else -1


def _crash_fixture(tmp_path: Path) -> tuple[Path, Path]:
    make_image(tmp_path / "old.png", seed=1)
    first = write_jsonl(tmp_path / "1.jsonl", [{"external_id": "old", "image": "old.png"}])
    make_image(tmp_path / "new.png", seed=2)
    make_audio(tmp_path / "new.mp3", "mp3")
    second = write_jsonl(
        tmp_path / "2.jsonl",
        [
            {"external_id": "new1", "image": "new.png"},
            {"external_id": "new2", "audio": "new.mp3", "text": "x"},
        ],
    )
    return first, second


def test_crash_before_commit_leaves_store_and_db_as_before(db, tmp_path) -> None:
    first, second = _crash_fixture(tmp_path)
    ingest(db, first)
    before = snapshot(db)

    assert _crash_in_child("before_commit", second) == CRASH
    assert len(staged_files(db.settings)) == 2  # the crash really left staged media behind
    assert snapshot(db) == before

    with db.sessions() as s:
        recovered = recover_staging(s, db.settings)
    assert (recovered.published, recovered.deleted) == (0, 2)
    assert snapshot(db) == before and staged_files(db.settings) == []


def test_crash_after_commit_is_completed_by_recovery(db, tmp_path) -> None:
    first, second = _crash_fixture(tmp_path)
    ingest(db, first)

    assert _crash_in_child("after_commit", second) == CRASH
    with db.sessions() as s:
        paths = set(s.scalars(select(MediaAsset.store_path)))
    assert len(paths) == 3
    assert not paths <= stored_files(db.settings)  # committed rows, media not yet published
    assert len(staged_files(db.settings)) == 2

    # The next ingest recovers first, then finds the run fully done.
    report = ingest(db, second)
    assert report.recovered.published == 2 and report.items_unchanged == 2
    assert paths == stored_files(db.settings) and staged_files(db.settings) == []
    with db.sessions() as s:
        for a in s.scalars(select(MediaAsset)):
            assert (db.settings.media_dir / a.store_path).stat().st_size == a.size_bytes


def test_recovery_leaves_a_live_run_alone(sqlite_db, tmp_path) -> None:
    run = StagingRun(sqlite_db.settings)
    try:
        make_image(tmp_path / "a.png")
        info = probe_media(tmp_path / "a.png", sqlite_db.settings.ingest_limits())
        assert run.stage(tmp_path / "a.png", info.sha256, info.extension)
        with sqlite_db.sessions() as s:
            report = recover_staging(s, sqlite_db.settings)
        assert report.live_runs_skipped == 1 and len(staged_files(sqlite_db.settings)) == 1
    finally:
        run.discard()
        run.close()


def test_failure_before_commit_in_process_cleans_staging(sqlite_db, tmp_path, monkeypatch) -> None:
    _, second = _crash_fixture(tmp_path)

    def boom(*a: Any, **k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("workbench.services.ingest.write.record_event", boom)
    with pytest.raises(KeyboardInterrupt):
        ingest(sqlite_db, second)
    assert_nothing_written(sqlite_db)
