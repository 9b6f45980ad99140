"""Regenerate the sample moderation project in fixtures/sample: manifest, labels and tiny media.

The content (texts, labels, cover art, video frames) is written here; the media are made by
`workbench.bench.synthetic_media` (Pillow, espeak-ng speech, PyAV video) from fixed content and
seeds, so running it twice gives the same files; only the speech depends on the installed espeak-ng.
Usage: `python scripts/make_fixtures.py [--out fixtures/sample]`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from workbench.bench.synthetic_media import (
    SAMPLE_RATE,
    gradient,
    melody,
    speak,
    with_grain,
    write_mp4,
    write_wav,
)

MAX_CLIP_SECONDS = 3.0
VIDEO_SIZE = 96
VIDEO_FPS = 8
VIDEO_SECONDS = 2
COVER_SIZE = 128
MANIFEST_FIELDS = ("external_id", "text", "image", "audio", "video", "language", "metadata")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "fixtures" / "sample"


@dataclass(frozen=True)
class Speech:
    """A clip spoken by espeak-ng; `voice` is an espeak-ng voice name."""

    text: str
    voice: str = "en-us"


@dataclass(frozen=True)
class SampleItem:
    """One manifest row. Media fields name files under media/ that this script makes."""

    external_id: str
    kind: str
    channel: str
    text: str | None = None
    language: str | None = None
    image: str | None = None
    audio: str | None = None
    video: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TextSpan:
    """A highlighted phrase; its character offsets are found in the item's text when written."""

    phrase: str


@dataclass(frozen=True)
class TimeSpan:
    start_s: float
    end_s: float


@dataclass(frozen=True)
class SampleLabel:
    external_id: str
    reviewer: str
    decision: str
    policies: tuple[str, ...] = ()
    severity: int | None = None
    rationale: str | None = None
    spans: tuple[TextSpan | TimeSpan, ...] = ()


# --- content ----------------------------------------------------------------------------------
# All people, bands, shows and sites are invented; URLs use reserved example domains. Violating
# texts are realistic but mild, and use no real slurs.

SPAM_COPY = (
    "Want 10k real followers on your tracks? DM me or visit http://boost-streams.example.org "
    "— cheap, fast, safe. Use code WAVE50."
)
SCAM_AD = "Send gift cards now to claim free concert tickets."
XSS_TEXT = (
    "Nice track <script>alert(1)</script> ![x](http://example.com/a.png) **bold** "
    "[click me](javascript:alert(2)) &lt;b&gt;"
)

SPEECH: dict[str, Speech] = {
    "episode-0001.wav": Speech("Welcome to Night Shift Radio, episode forty one."),
    "episode-0003.wav": Speech("This is The Lantern Hour. Tonight, the cassette tape."),
    "episode-0006.wav": Speech("Bienvenidos a Ruido Blanco, episodio cinco.", voice="es"),
    "audio-0001.wav": Speech(SCAM_AD),
}

ITEMS: list[SampleItem] = [
    # Benign comments.
    SampleItem(
        "comment-0001",
        "comment",
        "night-shift-radio",
        "This episode on home studio acoustics was exactly what I needed. The bit about bass "
        "traps at 31:20 saved me a lot of money.",
    ),
    SampleItem(
        "comment-0002",
        "comment",
        "copper-harbor",
        "Been listening to Copper Harbor since their first EP. The new single is softer but it "
        "grows on you.",
    ),
    SampleItem(
        "comment-0003",
        "comment",
        "the-lantern-hour",
        "Anyone know the name of the track that plays during the outro? Sounds like an old Rhodes.",
    ),
    SampleItem(
        "comment-0004",
        "comment",
        "night-shift-radio",
        "Audio was a bit quiet on this one, had to turn my phone all the way up. Great guests "
        "though.",
    ),
    SampleItem(
        "comment-0005",
        "comment",
        "mara-velde",
        "Mara Velde live in Lisbon last night was unreal. That encore!",
    ),
    SampleItem(
        "comment-0006",
        "comment",
        "the-lantern-hour",
        "I disagree with the host about vinyl sounding better, but I liked hearing both sides "
        "argued fairly.",
    ),
    SampleItem(
        "comment-0007", "comment", "late-drive", "Playlist saved. Perfect for long drives, thanks."
    ),
    SampleItem(
        "comment-0008",
        "comment",
        "night-shift-radio",
        "Could you do an episode on royalties for independent artists? The streaming payout "
        'numbers confuse me, especially the "per stream" figures people quote.',
    ),
    SampleItem(
        "comment-0009",
        "comment",
        "copper-harbor",
        "The remix is fine, but the original mix has more space in it, in my opinion.",
    ),
    SampleItem(
        "comment-0010",
        "comment",
        "mara-velde",
        "This chorus lives in my head rent free 🎧🔥🔥 can't stop replaying it 😭",
        extra={"note": "emoji"},
    ),
    SampleItem(
        "comment-0011",
        "comment",
        "ruido-blanco",
        "Me encantó este episodio, sobre todo la entrevista con la productora. ¡Saludos desde "
        "Valencia!",
        language="es",
    ),
    SampleItem(
        "comment-0012",
        "comment",
        "night-shift-radio",
        "Tolle Folge! Die Tipps zum Abmischen von Stimmen waren sehr hilfreich.",
        language="de",
    ),
    SampleItem(
        "comment-0013",
        "comment",
        "mara-velde",
        "Quelle belle voix. J'écoute cette chanson en boucle depuis ce matin.",
        language="fr",
    ),
    SampleItem(
        "comment-0014",
        "comment",
        "night-shift-radio",
        "First time commenting. This podcast got me through night shifts at the hospital last "
        "winter.",
    ),
    SampleItem(
        "comment-0015",
        "comment",
        "mara-velde",
        "Honestly Mara Velde's new album is lazy. Three songs recycle the same chord progression "
        "and the lyrics feel phoned in.",
    ),
    # Tricky but not violating: sarcasm, counter-speech, inert markup, hyperbole, recovery.
    SampleItem(
        "comment-0016",
        "comment",
        "copper-harbor",
        "Oh great, another 'acoustic version' of a song that was already acoustic. Truly "
        "groundbreaking stuff, genius.",
        extra={"note": "sarcasm"},
    ),
    SampleItem(
        "comment-0017",
        "comment",
        "night-shift-radio",
        'Someone in the livestream chat wrote "people like them don\'t belong in this country" '
        "about our guest. That is disgusting and I reported it. Do better, everyone.",
        extra={"note": "quotes hate to condemn it"},
    ),
    SampleItem(
        "comment-0018",
        "comment",
        "late-drive",
        XSS_TEXT,
        extra={"note": "inert markup for rendering tests; must display as text"},
    ),
    SampleItem(
        "comment-0019",
        "comment",
        "mara-velde",
        "This drop is absolutely killing me, I'm dead 💀💀",
        extra={"note": "violent words, benign meaning"},
    ),
    SampleItem(
        "comment-0020",
        "comment",
        "copper-harbor",
        "This song got me through a really dark time when I was hurting myself. If you're there "
        "now, please talk to someone. It gets better.",
        extra={"note": "recovery story, supportive"},
    ),
    # Violating comments. 0022 and 0023 are one spammer pasting the same text twice on one page,
    # so their whole content (text, language, metadata) is an exact duplicate.
    SampleItem(
        "comment-0021",
        "comment",
        "mara-velde",
        "🔥 FREE premium for 12 months!!! Claim now at http://free-premium-music.example.net/claim "
        "before it expires 🔥",
    ),
    SampleItem("comment-0022", "comment", "copper-harbor", SPAM_COPY),
    SampleItem("comment-0023", "comment", "copper-harbor", SPAM_COPY),
    SampleItem(
        "comment-0024",
        "comment",
        "late-drive",
        "I made $4,800 last week working from home just listening to playlists. Ask me how, "
        "link in my profile!!!",
    ),
    SampleItem(
        "comment-0025",
        "comment",
        "night-shift-radio",
        "Your account will be suspended. Verify your payment details at "
        "http://account-verify.example.com/login within 24h.",
    ),
    SampleItem(
        "comment-0026",
        "comment",
        "mara-velde",
        "Mara Velde is a talentless fraud and everyone at her label knows it. Go away, Mara, "
        "nobody wants you.",
    ),
    SampleItem(
        "comment-0027",
        "comment",
        "mara-velde",
        "Somebody should post where Mara Velde lives so we can all show up and tell her what we "
        "think. I have the address.",
    ),
    SampleItem(
        "comment-0028",
        "comment",
        "late-drive",
        "@djkestrel you're pathetic. every stream you get is from your mom. delete your account "
        "loser",
    ),
    SampleItem(
        "comment-0029",
        "comment",
        "night-shift-radio",
        "People from that country shouldn't be allowed on this platform at all. They ruin every "
        "comment section and should be sent back where they came from.",
    ),
    SampleItem(
        "comment-0030",
        "comment",
        "copper-harbor",
        "Women can't produce music, they just sing whatever a man writes for them. Stick to "
        "backing vocals.",
    ),
    SampleItem(
        "comment-0031",
        "comment",
        "night-shift-radio",
        "If the host says that one more time I will find him after the show and break his jaw. "
        "I know which venue he's at on Friday.",
    ),
    SampleItem(
        "comment-0032",
        "comment",
        "copper-harbor",
        "Whoever leaked this album deserves a beating. Find them and make them pay.",
    ),
    SampleItem(
        "comment-0033",
        "comment",
        "mara-velde",
        "If you feel as empty as this song, maybe just stop eating for a while. It helps you feel "
        "in control, it worked for me.",
    ),
    SampleItem(
        "comment-0034",
        "comment",
        "the-lantern-hour",
        "Don't let them vaccinate your kids. The shots have microchips that track you, my "
        "cousin's doctor admitted it.",
    ),
    SampleItem(
        "comment-0035",
        "comment",
        "late-drive",
        "Listening to 528 Hz tones for an hour a day cures diabetes, you can stop taking insulin. "
        "Doctors hide this.",
    ),
    SampleItem(
        "comment-0036",
        "comment",
        "late-drive",
        "Check out my private content, link in bio, 18+ only 😉 http://hot-singles.example.net",
    ),
    SampleItem(
        "comment-0037",
        "comment",
        "night-shift-radio",
        "Kostenlose Konzertkarten! Einfach hier klicken: http://tickets-gratis.example.org und "
        "Kreditkartendaten eingeben.",
        language="de",
    ),
    # Episode descriptions (two with a spoken intro).
    SampleItem(
        "episode-0001",
        "episode_description",
        "night-shift-radio",
        "Episode 41: We sit down with sound engineer Priya Nand to talk about mixing for earbuds, "
        "loudness targets, and why your master sounds different in the car.",
        audio="media/episode-0001.wav",
    ),
    SampleItem(
        "episode-0002",
        "episode_description",
        "copper-harbor",
        'Episode 12 – "Garage Days"\nThe band remembers their first rehearsal space, the '
        "landlord who hated drums, and the demo tape that got them signed.\nMusic: Copper Harbor, "
        "used with permission.",
        extra={"note": "multi-line text with quotes and commas"},
    ),
    SampleItem(
        "episode-0003",
        "episode_description",
        "the-lantern-hour",
        "This week on The Lantern Hour: a history of the cassette tape, from dictation machines "
        "to mixtape culture, with listener stories about the first tape they ever made.",
        audio="media/episode-0003.wav",
    ),
    SampleItem(
        "episode-0004",
        "episode_description",
        "the-lantern-hour",
        "Episode 7: Sleep and shift work. A sleep researcher explains what the evidence does and "
        "doesn't say about melatonin, naps and blackout curtains. Not medical advice; talk to "
        "your doctor.",
    ),
    SampleItem(
        "episode-0005",
        "episode_description",
        "cold-files",
        "Episode 19: The 1987 warehouse fire. We revisit the investigation, the trial and the "
        "families who still want answers. Contains descriptions of violence and death.",
        extra={"note": "documentary context for violence"},
    ),
    SampleItem(
        "episode-0006",
        "episode_description",
        "ruido-blanco",
        "Episodio 5: hablamos de la escena indie de Ciudad de México con tres bandas emergentes.",
        language="es",
        audio="media/episode-0006.wav",
    ),
    SampleItem(
        "episode-0007",
        "episode_description",
        "night-shift-radio",
        "Bonus episode: a live Q&A recorded at our listener meetup. Thanks to everyone who came "
        "out in the rain!",
    ),
    SampleItem(
        "episode-0008",
        "episode_description",
        "wellness-unfiltered",
        "Episode 22: Why sunscreen causes more cancer than the sun, and the natural oils the "
        "pharmaceutical industry doesn't want you to know about.",
    ),
    # Track descriptions (three with cover art; 0005 re-uses a recoloured copy of 0001's art).
    SampleItem(
        "track-0001",
        "track_description",
        "copper-harbor",
        'Copper Harbor – "Low Tide". Recorded live to tape in one take. Cover art by the band\'s '
        "drummer.",
        image="media/cover-0001.png",
    ),
    SampleItem(
        "track-0002",
        "track_description",
        "late-drive",
        "Lo-fi beats to study to, vol. 3. Twelve tracks, no vocals, all samples cleared.",
        image="media/cover-0003.png",
    ),
    SampleItem(
        "track-0003",
        "track_description",
        "dust-county",
        'Lyrics excerpt from "Red River Ballad": I buried my heart where the red river bends / '
        "I burned every letter and shot down the sun / this town's gonna bleed when the long "
        "winter ends",
        extra={"note": "song lyrics with violent imagery"},
    ),
    SampleItem(
        "track-0004",
        "track_description",
        "late-drive",
        "Instrumental piano piece written for my grandmother's 90th birthday.",
    ),
    SampleItem(
        "track-0005",
        "track_description",
        "free-music-vault",
        "Full album re-upload: Copper Harbor – Low Tide (2026), all tracks, ripped from the "
        "vinyl. Download link in the description before it gets taken down.",
        image="media/cover-0002.png",
        extra={"note": "cover art is a recoloured copy of cover-0001"},
    ),
    SampleItem(
        "track-0006",
        "track_description",
        "free-music-vault",
        "Not my song, I just sped it up and added rain sounds. All credit to the original "
        "artist, no copyright infringement intended.",
    ),
    SampleItem(
        "track-0007",
        "track_description",
        "dust-county",
        "Drill track. Produced in my bedroom, mixed by a friend. Feedback welcome.",
    ),
    # Media without text.
    SampleItem("cover-0004", "cover_art", "night-shift-radio", image="media/cover-0004.png"),
    SampleItem("cover-0005", "cover_art", "free-music-vault", image="media/cover-0005.png"),
    SampleItem("audio-0001", "audio_ad", "late-drive", audio="media/audio-0001.wav"),
    # Videos with a caption.
    SampleItem(
        "video-0001",
        "video",
        "copper-harbor",
        "Behind the scenes of our studio session 🎥",
        video="media/video-0001.mp4",
    ),
    SampleItem(
        "video-0002",
        "video",
        "free-music-vault",
        "Limited offer, watch to the end!!!",
        video="media/video-0002.mp4",
    ),
]

LABELS: list[SampleLabel] = [
    SampleLabel(
        "comment-0021",
        "alice",
        "violating",
        ("spam",),
        2,
        "Fake giveaway pushing an off-platform link.",
        (TextSpan("http://free-premium-music.example.net/claim"),),
    ),
    SampleLabel(
        "comment-0021",
        "bob",
        "violating",
        ("spam",),
        2,
        "Phishing-style free premium offer.",
        (TextSpan("FREE premium for 12 months!!!"),),
    ),
    SampleLabel(
        "comment-0022",
        "alice",
        "violating",
        ("spam",),
        1,
        "Follower-selling copy-paste.",
        (TextSpan("http://boost-streams.example.org"),),
    ),
    SampleLabel(
        "comment-0023",
        "carol",
        "violating",
        ("spam",),
        1,
        "Same copy-paste posted twice on this page.",
    ),
    SampleLabel(
        "comment-0026",
        "alice",
        "violating",
        ("harassment",),
        2,
        "Insults a named artist and tells her to leave.",
        (TextSpan("talentless fraud"), TextSpan("Go away, Mara, nobody wants you")),
    ),
    SampleLabel(
        "comment-0026",
        "bob",
        "violating",
        ("harassment",),
        1,
        "One insult at a public figure.",
        (TextSpan("talentless fraud"),),
    ),
    SampleLabel(
        "comment-0026",
        "carol",
        "unsure",
        ("harassment",),
        None,
        'Harsh, but she is a public figure and "fraud" may be about her work.\n'
        "Escalating for a second opinion.",
    ),
    SampleLabel(
        "comment-0027",
        "bob",
        "violating",
        ("harassment",),
        3,
        "Threatens to expose a named artist's home address.",
        (TextSpan("I have the address"),),
    ),
    SampleLabel(
        "comment-0027",
        "carol",
        "violating",
        ("harassment", "violence"),
        4,
        "Doxxing plus a call to show up at her home: a real-world safety threat.",
        (TextSpan("we can all show up"), TextSpan("I have the address")),
    ),
    SampleLabel(
        "comment-0029",
        "alice",
        "violating",
        ("hate",),
        3,
        "Calls for excluding people by national origin.",
        (TextSpan("should be sent back where they came from"),),
    ),
    SampleLabel(
        "comment-0029",
        "carol",
        "violating",
        ("hate",),
        3,
        "Exclusion based on national origin.",
        (TextSpan("shouldn't be allowed on this platform at all"),),
    ),
    SampleLabel(
        "comment-0030",
        "bob",
        "violating",
        ("hate",),
        2,
        "Demeaning stereotype about women.",
        (TextSpan("Women can't produce music"),),
    ),
    SampleLabel(
        "comment-0031",
        "alice",
        "violating",
        ("violence", "harassment"),
        4,
        "Specific threat of violence against the host with a time and place.",
        (TextSpan("I will find him after the show and break his jaw"),),
    ),
    SampleLabel(
        "comment-0031",
        "bob",
        "violating",
        ("violence",),
        4,
        "Credible threat: names a venue and a day.",
        (TextSpan("break his jaw"), TextSpan("I know which venue he's at on Friday")),
    ),
    SampleLabel(
        "comment-0033",
        "carol",
        "violating",
        ("self_harm",),
        3,
        "Encourages disordered eating.",
        (TextSpan("maybe just stop eating for a while"),),
    ),
    SampleLabel(
        "comment-0033",
        "alice",
        "violating",
        ("self_harm",),
        2,
        "Promotes restriction, phrased as personal advice.",
        (TextSpan("stop eating"),),
    ),
    SampleLabel(
        "comment-0020",
        "bob",
        "not_violating",
        rationale="Recovery story that points people to help.",
    ),
    SampleLabel("comment-0020", "carol", "not_violating"),
    SampleLabel(
        "comment-0034",
        "alice",
        "violating",
        ("misinformation",),
        2,
        "False vaccine microchip claim.",
        (TextSpan("The shots have microchips that track you"),),
    ),
    SampleLabel(
        "comment-0035",
        "bob",
        "violating",
        ("misinformation",),
        4,
        "Tells diabetics to stop insulin: direct risk of harm.",
        (TextSpan("you can stop taking insulin"),),
    ),
    SampleLabel(
        "comment-0035",
        "carol",
        "violating",
        ("misinformation",),
        3,
        "Health misinformation with a false cure.",
        (TextSpan("cures diabetes"),),
    ),
    SampleLabel(
        "track-0005",
        "alice",
        "violating",
        ("ip",),
        2,
        "Full album re-upload with a download link; cover art copied from the original.",
        (TextSpan("Full album re-upload"),),
    ),
    SampleLabel(
        "track-0006",
        "bob",
        "unsure",
        ("ip",),
        None,
        "Sped-up edits are common; no rights holder has claimed it yet.",
    ),
    SampleLabel(
        "track-0006",
        "carol",
        "violating",
        ("ip",),
        1,
        "Admits the song is not theirs; the disclaimer does not grant rights.",
        (TextSpan("Not my song"),),
    ),
    SampleLabel("comment-0016", "alice", "not_violating", rationale="Sarcastic criticism only."),
    SampleLabel(
        "comment-0017",
        "alice",
        "not_violating",
        rationale="Quotes the hateful line in order to condemn it (counter-speech).",
    ),
    SampleLabel(
        "comment-0017",
        "bob",
        "violating",
        ("hate",),
        1,
        "Repeats an exclusionary statement about a group.",
        (TextSpan("people like them don't belong in this country"),),
    ),
    SampleLabel(
        "comment-0017",
        "carol",
        "not_violating",
        rationale='Counter-speech: the "don\'t belong" line is quoted and reported.',
    ),
    SampleLabel("comment-0018", "bob", "not_violating", rationale="Markup only, no policy issue."),
    SampleLabel(
        "track-0003",
        "carol",
        "not_violating",
        rationale="Song lyrics; violent imagery with no real target.",
    ),
    SampleLabel(
        "track-0003",
        "alice",
        "unsure",
        ("violence",),
        rationale="Probably artistic, but 'this town's gonna bleed' could be read as a threat.",
    ),
    SampleLabel("comment-0001", "alice", "not_violating"),
    SampleLabel(
        "comment-0015",
        "bob",
        "not_violating",
        rationale="Criticism of an artist's public work, no abuse.",
    ),
    SampleLabel(
        "audio-0001",
        "alice",
        "violating",
        ("spam",),
        2,
        "Spoken gift-card scam.",
        (TimeSpan(0.0, 1.5),),
    ),
    SampleLabel("audio-0001", "bob", "violating", ("spam",), 2, "Gift card scam ad."),
    SampleLabel(
        "cover-0005", "carol", "violating", ("spam",), 1, "Image advertises a gift-card giveaway."
    ),
    SampleLabel(
        "video-0002",
        "bob",
        "violating",
        ("spam",),
        2,
        "Gift-card scam banner and voice-over.",
        (TimeSpan(0.0, 2.0),),
    ),
    SampleLabel(
        "comment-0037",
        "carol",
        "violating",
        ("spam",),
        2,
        "Phishing for card details with free tickets.",
        (TextSpan("Kreditkartendaten eingeben"),),
    ),
    SampleLabel(
        "episode-0005",
        "alice",
        "not_violating",
        rationale="Documentary about a real event, with a content note.",
    ),
    SampleLabel(
        "comment-0036",
        "bob",
        "violating",
        ("sexual", "spam"),
        2,
        "Adult content solicitation with an off-platform link.",
        (TextSpan("http://hot-singles.example.net"),),
    ),
    SampleLabel(
        "episode-0008",
        "carol",
        "violating",
        ("misinformation",),
        2,
        "Claims sunscreen causes more cancer than the sun.",
        (TextSpan("sunscreen causes more cancer than the sun"),),
    ),
]

LABEL_START = datetime(2026, 11, 2, 10, 15, tzinfo=UTC)


# --- media ------------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's bundled default font, so no system font is needed and the output is the same.
    return ImageFont.load_default(size=size)


def cover_low_tide() -> Image.Image:
    """Blue sea with waves and a pale sun: the original 'Low Tide' art."""
    img = with_grain(gradient(COVER_SIZE, (40, 70, 140), (10, 20, 50)), seed=1)
    draw = ImageDraw.Draw(img)
    draw.ellipse((78, 14, 110, 46), fill=(245, 225, 170))
    for i, y in enumerate(range(64, 128, 14)):
        shade = 90 + 20 * i
        draw.arc((-20, y - 10, 70, y + 12), 200, 340, fill=(shade, shade + 40, 230), width=3)
        draw.arc((50, y - 6, 150, y + 16), 200, 340, fill=(shade, shade + 40, 230), width=3)
    draw.text((8, 8), "LOW TIDE", font=_font(14), fill=(255, 255, 255))
    return img


def recoloured(img: Image.Image) -> Image.Image:
    """The same art with a warmer cast and a little brightness: a near-duplicate."""
    arr = np.asarray(img).astype(np.float64)
    arr = arr * np.array([1.2, 1.0, 0.85]) + 10.0
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def cover_lofi() -> Image.Image:
    """Sunset gradient, a sun cut by stripes, and a title."""
    img = with_grain(gradient(COVER_SIZE, (90, 40, 120), (250, 150, 80)), seed=3)
    draw = ImageDraw.Draw(img)
    draw.ellipse((34, 40, 94, 100), fill=(255, 200, 90))
    for y in range(72, 100, 7):
        draw.rectangle((30, y, 98, y + 2), fill=(200, 100, 110))
    draw.text((10, 104), "lo-fi vol. 3", font=_font(14), fill=(30, 10, 40))
    return img


def cover_night_shift() -> Image.Image:
    """Dark square with geometric shapes and the show's name."""
    img = with_grain(gradient(COVER_SIZE, (20, 20, 30), (60, 30, 80)), seed=4)
    draw = ImageDraw.Draw(img)
    draw.polygon([(20, 100), (64, 20), (108, 100)], outline=(0, 220, 200), width=4)
    draw.rectangle((44, 60, 84, 100), fill=(230, 60, 90))
    draw.text((14, 106), "NIGHT SHIFT", font=_font(15), fill=(250, 250, 250))
    return img


def cover_gift_card_scam() -> Image.Image:
    """Loud red promo with a fake code: the kind of image spam accounts upload as cover art."""
    img = with_grain(gradient(COVER_SIZE, (220, 20, 30), (120, 0, 10)), seed=5)
    draw = ImageDraw.Draw(img)
    draw.rectangle((14, 46, 114, 96), fill=(255, 215, 0), outline=(0, 0, 0), width=2)
    draw.text((10, 8), "FREE GIFT", font=_font(20), fill=(255, 255, 255))
    draw.text((10, 28), "CARDS!!!", font=_font(16), fill=(255, 255, 255))
    draw.text((22, 62), "CODE: X7Q-99", font=_font(13), fill=(0, 0, 0))
    draw.text((10, 104), "send card now", font=_font(13), fill=(255, 255, 255))
    return img


def write_png(img: Image.Image, path: Path) -> None:
    # optimize=True squeezes the file; Pillow writes no timestamp, so the bytes are repeatable.
    img.save(path, "PNG", optimize=True)


def _video_frames(kind: str) -> list[Image.Image]:
    frames = []
    n = VIDEO_FPS * VIDEO_SECONDS
    for i in range(n):
        if kind == "studio":
            img = Image.new("RGB", (VIDEO_SIZE, VIDEO_SIZE), (25, 30, 45))
            draw = ImageDraw.Draw(img)
            x = 8 + int(70 * i / (n - 1))
            draw.ellipse((x, 40, x + 18, 58), fill=(240, 170, 60))
            for b in range(6):  # a bouncing level meter
                h = 10 + int(25 * abs(np.sin(0.7 * i + b)))
                draw.rectangle((10 + 13 * b, 90 - h, 19 + 13 * b, 90), fill=(60, 200, 140))
        else:
            on = (i // 2) % 2 == 0
            img = Image.new("RGB", (VIDEO_SIZE, VIDEO_SIZE), (220, 20, 30) if on else (255, 215, 0))
            draw = ImageDraw.Draw(img)
            ink = (255, 255, 255) if on else (0, 0, 0)
            draw.text((6, 20), "FREE GIFT", font=_font(16), fill=ink)
            draw.text((6, 44), "CARDS", font=_font(16), fill=ink)
            draw.text((6, 70), "send now", font=_font(12), fill=ink)
        frames.append(img)
    return frames


def studio_chord() -> np.ndarray:
    t = np.arange(VIDEO_SECONDS * SAMPLE_RATE) / SAMPLE_RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0))
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) * 8)
    return 0.2 * fade * chord / 3


# --- manifest and labels ----------------------------------------------------------------------


def manifest_row(item: SampleItem, media_notes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A manifest record; absent fields are left out (the CSV leaves their cells empty)."""
    metadata: dict[str, Any] = {"kind": item.kind, "channel": item.channel, **item.extra}
    for path in (item.audio, item.video):
        if path is not None:
            metadata.update(media_notes.get(Path(path).name, {}))
    row: dict[str, Any] = {"external_id": item.external_id}
    for name in ("text", "image", "audio", "video"):
        value = getattr(item, name)
        if value is not None:
            row[name] = value
    # English unless said otherwise, for anything with words in it; pictures get no language.
    language = item.language or ("en" if item.text or item.audio or item.video else None)
    if language is not None:
        row["language"] = language
    row["metadata"] = metadata
    return row


def _char_span(text: str, phrase: str, where: str) -> dict[str, int]:
    start = text.find(phrase)
    if start < 0:
        raise ValueError(f"{where}: span {phrase!r} is not in the item's text")
    return {"start": start, "end": start + len(phrase)}


def label_rows(items: list[SampleItem], labels: list[SampleLabel]) -> list[dict[str, Any]]:
    texts = {i.external_id: i.text for i in items}
    rows = []
    for n, label in enumerate(labels):
        where = f"label {n} ({label.external_id}/{label.reviewer})"
        spans: list[dict[str, Any]] = []
        for span in label.spans:
            if isinstance(span, TextSpan):
                text = texts[label.external_id]
                if text is None:
                    raise ValueError(f"{where}: a text span on an item without text")
                spans.append(_char_span(text, span.phrase, where))
            else:
                spans.append({"start_s": span.start_s, "end_s": span.end_s})
        # Spread the labels over a working morning, seven and a half minutes apart.
        created = LABEL_START + timedelta(minutes=7.5 * n)
        rows.append(
            {
                "external_id": label.external_id,
                "reviewer": label.reviewer,
                "decision": label.decision,
                "policies": list(label.policies),
                "severity": label.severity,
                "rationale": label.rationale,
                "spans": spans,
                "created_at": created.isoformat(),
            }
        )
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_manifest_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    for row in rows:
        cells = []
        for name in MANIFEST_FIELDS:
            value = row.get(name)
            if name == "metadata":
                value = json.dumps(value, ensure_ascii=False)
            cells.append("" if value is None else value)
        writer.writerow(cells)
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")


# --- driver -----------------------------------------------------------------------------------


def make_media(media: Path) -> dict[str, dict[str, Any]]:
    """Write every media file; returns notes per file name for the manifest's metadata."""
    notes: dict[str, dict[str, Any]] = {}
    low_tide = cover_low_tide()
    write_png(low_tide, media / "cover-0001.png")
    write_png(recoloured(low_tide), media / "cover-0002.png")
    write_png(cover_lofi(), media / "cover-0003.png")
    write_png(cover_night_shift(), media / "cover-0004.png")
    write_png(cover_gift_card_scam(), media / "cover-0005.png")

    have_espeak = shutil.which("espeak-ng") is not None
    if not have_espeak:
        print(
            "espeak-ng not found: the WAV clips are synthesised tones, not speech", file=sys.stderr
        )
    clips: dict[str, np.ndarray] = {}
    for name, speech in SPEECH.items():
        if have_espeak:
            clips[name] = speak(speech.text, speech.voice, MAX_CLIP_SECONDS)
            notes[name] = {"transcript": speech.text}
        else:
            clips[name] = melody(speech.text, MAX_CLIP_SECONDS)
            notes[name] = {"synthesised": "tones in place of speech (espeak-ng was missing)"}
        write_wav(clips[name], media / name)

    videos = {
        "video-0001.mp4": (_video_frames("studio"), studio_chord()),
        "video-0002.mp4": (_video_frames("scam"), clips["audio-0001.wav"]),
    }
    for name, (frames, audio) in videos.items():
        has_audio = write_mp4(frames, audio, media / name, VIDEO_FPS)
        notes[name] = {"has_audio": has_audio}
        if has_audio and name == "video-0002.mp4":
            notes[name].update(notes["audio-0001.wav"])
    return notes


def generate(out: Path) -> None:
    """Write manifest.jsonl, manifest.csv, labels.jsonl and media/ under `out`, replacing them."""
    media = out / "media"
    if media.exists():
        shutil.rmtree(media)
    media.mkdir(parents=True)
    notes = make_media(media)
    rows = [manifest_row(item, notes) for item in ITEMS]
    write_jsonl(rows, out / "manifest.jsonl")
    write_manifest_csv(rows, out / "manifest.csv")
    write_jsonl(label_rows(ITEMS, LABELS), out / "labels.jsonl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    generate(args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {len(ITEMS)} items and {len(LABELS)} labels to {args.out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
