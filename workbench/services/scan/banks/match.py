"""Match a file against every enabled bank: the call a scan makes, with a per-process cache of
the bank index that rebuilds itself when any bank changes."""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import HashBank, HashBankContent, SignalType
from workbench.db.types import utcnow
from workbench.services.scan.banks.index import MultiHashPDQIndex, PDQIndex, pdq_array
from workbench.services.scan.banks.signals import (
    PDQ_MATCH_DISTANCE,
    PDQ_MIN_QUALITY,
    VPDQ_QUERY_MATCH_PERCENT,
    Signal,
    VideoFrameHash,
    hashers_for,
    parse_vpdq,
    usable,
)


@dataclass(frozen=True)
class BankMatch:
    """One bank entry that matched: the reason a scan gives for its decision."""

    bank: str  # bank name, ^[A-Z0-9_]+$
    action: str  # "block" | "review"
    signal_type: str  # "pdq" | "vpdq" | "sha256" | "md5"
    distance: int  # 0 for exact hashes; Hamming distance for pdq/vpdq
    content_id: str | None


BanksVersion = tuple[tuple[int, int, str], ...]


@dataclass(frozen=True)
class _Entry:
    """What the index keeps of one content row (bank state is read fresh on every match)."""

    bank_id: int
    content_id: str | None
    disabled_until: datetime | None


def _frames_for_matching(frames: list[VideoFrameHash]) -> list[str]:
    # vPDQ compares distinct frames of usable quality (pytx vpdq_util `dedupe`, `quality_filter`).
    return list(dict.fromkeys(f.pdq for f in frames if f.quality >= PDQ_MIN_QUALITY))


class BankIndex:
    """Every bank content row, searchable: exact hashes in a dict, PDQ in a FAISS index, and
    every frame of every bank video in a second FAISS index pointing back at its video."""

    def __init__(
        self,
        version: BanksVersion,
        rows: list[tuple[int, SignalType, str, str | None, datetime | None]],
        index_class: type[PDQIndex] = MultiHashPDQIndex,
    ) -> None:
        self.version = version
        self.exact: dict[tuple[SignalType, str], list[_Entry]] = defaultdict(list)
        pdq_rows: dict[str, list[_Entry]] = defaultdict(list)
        self.videos: list[tuple[_Entry, int]] = []  # entry, count of its usable frames
        frame_owners: dict[str, list[int]] = defaultdict(list)  # frame pdq -> video positions
        for bank_id, signal_type, signal, content_id, disabled_until in rows:
            entry = _Entry(bank_id, content_id, disabled_until)
            if signal_type is SignalType.pdq:
                pdq_rows[signal].append(entry)
            elif signal_type is SignalType.vpdq:
                frames = _frames_for_matching(parse_vpdq(signal))
                if not frames:
                    continue  # no usable frame: vPDQ cannot match it
                for frame in frames:
                    frame_owners[frame].append(len(self.videos))
                self.videos.append((entry, len(frames)))
            else:
                self.exact[(signal_type, signal)].append(entry)
        # One index row per distinct hash; a hash in two banks points at both entries.
        self.pdq_hashes = list(pdq_rows)
        self.pdq_entries = [pdq_rows[h] for h in self.pdq_hashes]
        self.pdq = index_class(pdq_array(self.pdq_hashes))
        self.frame_hashes = list(frame_owners)
        self.frame_owners = [frame_owners[h] for h in self.frame_hashes]
        self.frames = index_class(pdq_array(self.frame_hashes))

    def lookup(self, signal: Signal) -> list[tuple[_Entry, int]]:
        """Entries matching one signal of the scanned file, with their distances."""
        if signal.signal_type is SignalType.pdq:
            hits = self.pdq.search(pdq_array([signal.value]), PDQ_MATCH_DISTANCE)[0]
            return [(e, d) for pos, d in hits for e in self.pdq_entries[pos]]
        if signal.signal_type is SignalType.vpdq:
            return self._lookup_video(parse_vpdq(signal.value))
        return [(e, 0) for e in self.exact.get((signal.signal_type, signal.value), [])]

    def _lookup_video(self, frames: list[VideoFrameHash]) -> list[tuple[_Entry, int]]:
        """vPDQ's rule (pytx extensions/vpdq/vpdq_brute_matcher.py, `match_VPDQ_hash_brute`): a
        bank video matches when >= 80 % of the query's distinct usable frames are within 31 of
        one of its frames. The distance given is the worst of the matched frames' best."""
        query = _frames_for_matching(frames)
        if not query or not self.videos:
            return []
        matched: dict[int, int] = defaultdict(int)  # video -> query frames that matched
        worst: dict[int, int] = defaultdict(int)
        for hits in self.frames.search(pdq_array(query), PDQ_MATCH_DISTANCE):
            best: dict[int, int] = {}
            for pos, d in hits:
                for video in self.frame_owners[pos]:
                    best[video] = min(d, best.get(video, d))
            for video, d in best.items():
                matched[video] += 1
                worst[video] = max(worst[video], d)
        return [
            (self.videos[v][0], worst[v])
            for v, n in matched.items()
            if 100.0 * n / len(query) >= VPDQ_QUERY_MATCH_PERCENT
        ]


_lock = threading.Lock()
_cached: BankIndex | None = None


def bank_versions(session: Session) -> BanksVersion:
    """Every bank's (id, version, updated_at): any write to a bank or its contents changes it.
    The time is there so that two databases (tests, a restored backup) whose banks happen to
    share ids and version numbers never share a cached index."""
    rows = session.execute(
        select(HashBank.id, HashBank.version, HashBank.updated_at).order_by(HashBank.id)
    )
    return tuple((i, v, u.isoformat()) for i, v, u in rows)


def bank_index(session: Session, banks: list[HashBank] | None = None) -> BankIndex:
    """This process's index of every bank, rebuilt when a bank changed since it was built.

    Why check versions on every call: banks are written by other processes (the CLI, another
    server worker), and reading a few (id, version) rows costs far less than a stale answer.
    `banks`, when the caller has just read them all, saves that query.
    """
    global _cached
    if banks is None:
        version = bank_versions(session)
    else:
        version = tuple(sorted((b.id, b.version, b.updated_at.isoformat()) for b in banks))
    cached = _cached
    if cached is not None and cached.version == version:
        return cached
    with _lock:
        if _cached is not None and _cached.version == version:
            return _cached
        rows = session.execute(
            select(
                HashBankContent.bank_id,
                HashBankContent.signal_type,
                HashBankContent.signal,
                HashBankContent.content_id,
                HashBankContent.disabled_until,
            ).order_by(HashBankContent.id)
        ).all()
        _cached = BankIndex(version, [tuple(r) for r in rows])  # type: ignore[misc]
        return _cached


def invalidate() -> None:
    """Drop this process's index (the next match rebuilds it); writers call it after a change."""
    global _cached
    with _lock:
        _cached = None


def in_rollout(bank: str, subject_key: str, ratio: float) -> bool:
    """Whether a subject falls inside a bank's `matching_enabled_ratio`, the same way every time:
    a hash of bank and subject, not a coin toss, so one subject is never blocked on one upload
    and allowed on the next, and raising the ratio only adds subjects."""
    if ratio >= 1.0:
        return True
    if ratio <= 0.0:
        return False
    digest = hashlib.sha256(f"{bank}\0{subject_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < ratio


def bank_is_enabled(bank: HashBank, now: datetime) -> bool:
    return not bank.disabled or (bank.disabled_until is not None and now >= bank.disabled_until)


def signals_of(data: bytes, media_type: str) -> list[Signal]:
    """Every signal of a file: exact digests always, PDQ for images, vPDQ for videos.
    SignalError if the media cannot be decoded."""
    return [hasher.hash_bytes(data) for hasher in hashers_for(media_type)]


def match_signals(session: Session, signals: list[Signal], *, subject_key: str) -> list[BankMatch]:
    """Enabled bank entries matching any of these signals, nearest first, one per bank entry."""
    if not signals:
        return []
    all_banks = list(session.scalars(select(HashBank)))
    index = bank_index(session, all_banks)
    now = utcnow()
    banks = {b.id: b for b in all_banks}
    found: dict[tuple[str, str, str | None], BankMatch] = {}
    for signal in signals:
        if not usable(signal):
            continue
        for entry, distance in index.lookup(signal):
            bank = banks.get(entry.bank_id)
            if bank is None or not bank_is_enabled(bank, now):
                continue
            if entry.disabled_until is not None and now < entry.disabled_until:
                continue
            if not in_rollout(bank.name, subject_key, bank.matching_enabled_ratio):
                continue
            key = (bank.name, signal.signal_type.value, entry.content_id)
            if key not in found or distance < found[key].distance:
                found[key] = BankMatch(
                    bank.name,
                    bank.action.value,
                    signal.signal_type.value,
                    distance,
                    entry.content_id,
                )
    return sorted(found.values(), key=lambda m: (m.distance, m.bank, m.signal_type))


def match_media(
    session: Session, data: bytes, media_type: str, *, subject_key: str | None = None
) -> list[BankMatch]:
    """All enabled bank entries matching this file; matching_enabled_ratio applied by hashing
    subject_key (or the file's sha256) so the same subject is always in or out of a roll-out.

    `media_type` is the sniffed MIME type ("image/jpeg", "video/mp4", ...). Raises SignalError
    (a WorkbenchError) when an image or video cannot be decoded for its perceptual hash.
    """
    signals = signals_of(data, media_type)
    if subject_key is None:
        subject_key = next(s.value for s in signals if s.signal_type is SignalType.sha256)
    return match_signals(session, signals, subject_key=subject_key)
