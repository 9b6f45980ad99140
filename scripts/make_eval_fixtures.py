"""Write fixtures/sample/evaluation/: generated comments for the demo's evaluation (items, training
labels in two parts, and a golden label file), so the demo shows a meaningful evaluation and a
promotion. Everything is made up from templates here; a fixed seed makes the files reproducible.

    python scripts/make_eval_fixtures.py [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "sample" / "evaluation"
SEED = 13
PER_CLASS = 60  # items per class: 240 in all
REVIEWERS = ("alice", "bob", "carol")

ARTISTS = ["Copper Harbor", "the Lantern Hour", "Night Shift Radio", "Velvet Static",
           "Marlow and the Tides", "DJ Kestrel", "Paper Moons", "the Quiet Engines"]  # fmt: skip
THINGS = ["the new single", "this episode", "the live set", "the remix", "the interview",
          "the acoustic version", "the b-side", "the season finale"]  # fmt: skip

TEMPLATES: dict[str, list[str]] = {
    "none": [
        "Really enjoyed {thing} from {artist}, the mix is so clean.",
        "Does anyone know when {artist} tours again? {thing} was great.",
        "Not my favourite, {thing} felt a bit long, but {artist} still delivers.",
        "{artist} talking about their gear in {thing} was fascinating.",
        "I disagree with the review, {thing} is the best thing {artist} made.",
        "Honestly {thing} is boring, I skipped half of it. Still a fan of {artist}.",
    ],
    "spam": [
        "Free premium for 12 months!! Claim at music-deals.example before it ends",
        "Get 10k followers for your channel today, DM me, cheap prices",
        "{artist} fans: win concert tickets, just enter your card details at tix.example",
        "Earn $500 a day from home listening to music, link in my profile",
        "Best crypto signals here, join our group now, 300% guaranteed",
        "Loved {thing}! Also check out my page for free gift cards giveaway",
    ],
    "harassment": [
        "{artist} should just quit, nobody wants to hear that voice ever again",
        "We know where the singer of {artist} lives, see you after the show",
        "Everyone report {artist} until they delete the channel, they are pathetic",
        "The drummer of {artist} is a disgusting clown and should be ashamed",
        "Keep posting and we will make sure you regret it, {artist}",
        "{thing} proves {artist} are talentless losers, go away",
    ],
    "hate": [
        "People from that country ruin every festival, they should be banned from {artist} shows",
        "Typical of their religion to ruin {thing}, they do not belong in our scene",
        "Those immigrants should not be allowed to make music like {artist}",
        "Women cannot produce, {thing} proves it again",
        "That whole group of people is worthless, no wonder {artist} hires them",
        "Keep them out of our scene, their kind ruined {thing}",
    ],
}
SIGNATURES = ["listener", "fan", "night owl", "since 2009, user", "commuter", "crate digger "]
# Close calls: the class a careful reviewer gives, though the words lean elsewhere.
BORDERLINE: list[tuple[str, str]] = [
    ("none", "{artist} murdered that guitar solo in {thing}, absolutely killer"),
    ("none", "I hate how good {thing} is, {artist} ruined every other band for me"),
    ("harassment", "Honestly {artist} should retire, {thing} was embarrassing"),
    ("spam", "Great episode. Follow me for more music tips and my new course"),
]


def _text(rng: random.Random, cls: str) -> tuple[str, str]:
    if rng.random() < 0.12:
        cls, template = rng.choice(BORDERLINE)
    else:
        template = rng.choice(TEMPLATES[cls])
    text = template.format(artist=rng.choice(ARTISTS), thing=rng.choice(THINGS))
    # A signature, as comments often carry: keeps generated texts from repeating exactly.
    return cls, f"{text} ({rng.choice(SIGNATURES)}{rng.randint(2, 999)})"


def _label(external_id: str, reviewer: str, cls: str) -> dict[str, object]:
    if cls == "none":
        return {"external_id": external_id, "reviewer": reviewer, "decision": "not_violating"}
    return {"external_id": external_id, "reviewer": reviewer, "decision": "violating",
            "policies": [cls]}  # fmt: skip


def main(out: Path = OUT) -> None:
    rng = random.Random(SEED)
    classes = list(TEMPLATES)
    items, truth = [], []
    for n in range(PER_CLASS * len(classes)):
        cls, text = _text(rng, classes[n % len(classes)])
        ext = f"eval-{n + 1:04d}"
        items.append({"external_id": ext, "text": text, "language": "en",
                      "metadata": {"kind": "comment", "set": "generated"}})  # fmt: skip
        truth.append((ext, cls))
    order = list(range(len(items)))
    rng.shuffle(order)
    golden_idx, train_idx = order[:100], order[100:]
    # Training labels: one reviewer each, 8% wrong (reviewers are people); part 1 is what the
    # demo's first round sees, part 2 arrives before its second round.
    train_rows = []
    for i in train_idx:
        ext, cls = truth[i]
        given = rng.choice(classes) if rng.random() < 0.08 else cls
        train_rows.append(_label(ext, rng.choice(REVIEWERS), given))
    # Golden set: three reviewers each (the file aggregates them as training labels are).
    golden_rows = []
    for i in golden_idx:
        ext, cls = truth[i]
        for reviewer in REVIEWERS:
            given = rng.choice(classes) if rng.random() < 0.05 else cls
            golden_rows.append(_label(ext, reviewer, given))
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "items.jsonl", items)
    _write(out / "labels-round1.jsonl", train_rows[:30])
    _write(out / "labels-round2.jsonl", train_rows[30:])
    _write(out / "golden.jsonl", golden_rows)


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    main(parser.parse_args().out)
