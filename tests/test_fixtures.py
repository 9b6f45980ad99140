"""The committed sample project in fixtures/sample is consistent, small, and what the script makes.

Other tests and the demo ingest these files, so a broken reference or an invalid label here would
surface far away; these checks catch it where it starts.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import wave
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from workbench.services.ingest.tabular import Record, iter_records
from workbench.services.taxonomy import default_taxonomy
from workbench.services.vectors.near_duplicates import PDQ_MAX_DISTANCE, pdq_hash

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SAMPLE = FIXTURES / "sample"
MANIFEST_FIELDS = {"external_id", "text", "image", "audio", "video", "language", "metadata"}
MEDIA_FIELDS = ("image", "audio", "video")


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for rec in iter_records(path):
        assert isinstance(rec, Record), f"{path}: {rec}"
        out.append(rec.data)
    return out


@pytest.fixture(scope="module")
def manifest() -> dict[str, dict[str, Any]]:
    rows = _records(SAMPLE / "manifest.jsonl")
    ids = [r["external_id"] for r in rows]
    assert len(ids) == len(set(ids)), "external_id repeats in manifest.jsonl"
    return {r["external_id"]: r for r in rows}


@pytest.fixture(scope="module")
def labels() -> list[dict[str, Any]]:
    return _records(SAMPLE / "labels.jsonl")


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def _video_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        assert container.duration is not None
        return container.duration / av.time_base


def _media_seconds(row: dict[str, Any]) -> float:
    if "audio" in row:
        return _wav_seconds(SAMPLE / row["audio"])
    return _video_seconds(SAMPLE / row["video"])


def test_manifest_rows_have_known_fields_and_some_content(
    manifest: dict[str, dict[str, Any]],
) -> None:
    assert 50 <= len(manifest) <= 70
    for eid, row in manifest.items():
        assert set(row) <= MANIFEST_FIELDS, f"{eid}: unknown fields {set(row) - MANIFEST_FIELDS}"
        assert any(row.get(f) for f in ("text", *MEDIA_FIELDS)), f"{eid}: no content"
        assert isinstance(row["metadata"], dict) and row["metadata"].get("kind"), eid
        assert row.get("language") in (None, "en", "es", "de", "fr"), eid


def test_manifest_csv_holds_the_same_rows_as_the_jsonl(
    manifest: dict[str, dict[str, Any]],
) -> None:
    csv_rows = _records(SAMPLE / "manifest.csv")
    as_jsonl = []
    for row in csv_rows:
        # In the CSV an empty cell means absent and metadata is a JSON string.
        present = {k: v for k, v in row.items() if v != ""}
        present["metadata"] = json.loads(present["metadata"])
        as_jsonl.append(present)
    assert as_jsonl == list(manifest.values())


def test_every_referenced_media_file_exists_and_decodes(
    manifest: dict[str, dict[str, Any]],
) -> None:
    referenced = set()
    for eid, row in manifest.items():
        for name in MEDIA_FIELDS:
            if name not in row:
                continue
            path = (SAMPLE / row[name]).resolve()
            assert path.is_relative_to(SAMPLE), f"{eid}: {name} points outside the sample"
            assert path.is_file(), f"{eid}: {row[name]} is missing"
            referenced.add(path)
            if name == "image":
                with Image.open(path) as img:
                    assert img.format == "PNG" and max(img.size) <= 256, eid
            elif name == "audio":
                with wave.open(str(path), "rb") as w:
                    assert (w.getframerate(), w.getnchannels()) == (16_000, 1), eid
                assert 0.5 < _wav_seconds(path) <= 3.0, eid
            else:
                with av.open(str(path)) as container:
                    assert container.streams.video, f"{eid}: no video stream"
                assert 1.0 < _video_seconds(path) <= 3.0, eid
    on_disk = {p.resolve() for p in (SAMPLE / "media").iterdir()}
    assert on_disk == referenced, "media/ holds files no manifest row uses"


def test_fixtures_folder_is_under_five_megabytes() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024, f"fixtures/ is {total} bytes"


def test_labels_reference_manifest_items_with_valid_codes_and_decisions(
    manifest: dict[str, dict[str, Any]], labels: list[dict[str, Any]]
) -> None:
    taxonomy = default_taxonomy()
    codes = {p.code for p in taxonomy.policies}
    for n, label in enumerate(labels, start=1):
        where = f"labels.jsonl:{n}"
        assert label["external_id"] in manifest, where
        assert label["decision"] in taxonomy.decisions, where
        assert set(label["policies"]) <= codes, where
        assert datetime.fromisoformat(label["created_at"]).tzinfo is not None, where
        if label["decision"] == "violating":
            assert label["policies"] and "none" not in label["policies"], where
            assert label["severity"] in (1, 2, 3, 4), where
            assert label["rationale"] and label["rationale"].strip(), where
        else:
            assert label["severity"] is None, where
        if label["decision"] == "not_violating":
            assert label["policies"] in ([], ["none"]), where


def test_label_spans_fall_inside_their_item(
    manifest: dict[str, dict[str, Any]], labels: list[dict[str, Any]]
) -> None:
    for n, label in enumerate(labels, start=1):
        row = manifest[label["external_id"]]
        for span in label["spans"]:
            where = f"labels.jsonl:{n} span {span}"
            if "start" in span:
                text = row["text"]
                assert 0 <= span["start"] < span["end"] <= len(text), where
                phrase = text[span["start"] : span["end"]]
                assert phrase == phrase.strip(), f"{where}: cuts at whitespace: {phrase!r}"
            else:
                assert 0 <= span["start_s"] < span["end_s"] <= _media_seconds(row), where


def test_overlapping_reviewers_disagree_on_decision_policy_and_severity(
    labels: list[dict[str, Any]],
) -> None:
    pairs = [(x["external_id"], x["reviewer"]) for x in labels]
    assert len(pairs) == len(set(pairs)), "a reviewer labelled one item twice"
    assert {x["reviewer"] for x in labels} == {"alice", "bob", "carol"}
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in labels:
        by_item[label["external_id"]].append(label)
    overlap = [ls for ls in by_item.values() if len(ls) >= 2]
    assert len(overlap) >= 8

    def spread(ls: list[dict[str, Any]], key: str) -> int:
        return len({json.dumps(x[key], sort_keys=True) for x in ls})

    assert any(spread(ls, "decision") > 1 for ls in overlap), "no decision disagreement"
    # Among reviewers who agree an item violates, some pick other codes or another severity.
    violating = [[x for x in ls if x["decision"] == "violating"] for ls in overlap]
    assert any(spread(vs, "policies") > 1 for vs in violating), "no policy disagreement"
    assert any(spread(vs, "severity") > 1 for vs in violating), "no severity disagreement"


def test_sample_covers_the_tricky_cases_it_promises(manifest: dict[str, dict[str, Any]]) -> None:
    texts = defaultdict(list)
    for eid, row in manifest.items():
        if "text" in row:
            texts[row["text"]].append(eid)
    assert any(len(ids) >= 2 for ids in texts.values()), "no exact-duplicate text"
    assert {"es", "de", "fr"} <= {row.get("language") for row in manifest.values()}
    joined = "\n".join(texts)
    for needle in ("<script>alert(1)</script>", "![x](http://example.com/a.png)", "🔥", "\n"):
        assert needle in joined, needle

    def has(*fields: str) -> bool:
        return any(all(f in row for f in fields) for row in manifest.values())

    assert has("text", "image") and has("text", "audio") and has("text", "video")


def test_recoloured_cover_is_a_pdq_near_duplicate_and_the_others_are_not(
    manifest: dict[str, dict[str, Any]],
) -> None:
    hashes = {}
    for row in manifest.values():
        if "image" in row:
            digest, quality = pdq_hash(str(SAMPLE / row["image"]))
            assert quality >= 50, row["image"]
            hashes[Path(row["image"]).name] = int(digest, 16)
    near = {
        frozenset((a, b))
        for a, b in itertools.combinations(hashes, 2)
        if (hashes[a] ^ hashes[b]).bit_count() <= PDQ_MAX_DISTANCE
    }
    assert near == {frozenset(("cover-0001.png", "cover-0002.png"))}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the sample was spoken by espeak-ng")
def test_script_regenerates_the_committed_text_and_images(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_fixtures.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    # Speech and video bytes depend on the espeak-ng and FFmpeg builds; text and PNGs must not.
    names = ["manifest.jsonl", "manifest.csv", "labels.jsonl"]
    names += [f"media/{p.name}" for p in sorted((SAMPLE / "media").glob("*.png"))]
    for name in names:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    made = sorted(p.name for p in (tmp_path / "media").iterdir())
    assert made == sorted(p.name for p in (SAMPLE / "media").iterdir())


def test_evaluation_script_regenerates_the_committed_demo_evaluation_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_eval_fixtures.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = SAMPLE / "evaluation"
    names = sorted(p.name for p in committed.iterdir())
    assert names == ["golden.jsonl", "items.jsonl", "labels-round1.jsonl", "labels-round2.jsonl"]
    for name in names:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
