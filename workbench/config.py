"""Process-wide configuration: one pydantic-settings object read from `WORKBENCH_*` variables.

Defaults give a working embedded setup: a SQLite file and media/vector files under `./.workbench`.
"""

from __future__ import annotations

import logging
import os
import stat
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

# The home holds password and session hashes (the database) and harmful media: no other account
# on the machine may read it. Files get 0600 and folders 0700 whatever the umask.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents as folders only their owner can open (0700).

    `Path.mkdir(mode=...)` gives the mode to the last folder only, and parents get the umask's.
    """
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made by a concurrent process meanwhile
            continue
        os.chmod(p, PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Make an existing file readable and writable by its owner only (0600)."""
    os.chmod(path, PRIVATE_FILE)
    return path


class IngestLimits(BaseSettings):
    """Limits that make hostile or broken input fail early with a clear message.

    Each can be set as `WORKBENCH_INGEST_<NAME>`, e.g. `WORKBENCH_INGEST_MAX_TEXT_BYTES=200000`.
    """

    model_config = SettingsConfigDict(env_prefix="WORKBENCH_INGEST_", extra="ignore")

    max_text_bytes: int = Field(100_000, gt=0, description="UTF-8 bytes of one item's text")
    max_file_bytes: int = Field(512 * 1024 * 1024, gt=0, description="bytes of one media file")
    max_image_pixels: int = Field(
        50_000_000, gt=0, description="width x height declared by an image (decompression bombs)"
    )
    max_media_seconds: float = Field(
        4 * 3600.0, gt=0, description="duration of one audio or video file"
    )
    max_metadata_bytes: int = Field(64_000, gt=0, description="JSON bytes of one item's metadata")
    max_full_decode_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "audio/video up to this long is decoded completely at ingest; longer files are "
            "demuxed to the end (truncation) and only their first packets decoded"
        ),
    )


class Settings(BaseSettings):
    """Where the workbench keeps its state. Env prefix `WORKBENCH_`."""

    model_config = SettingsConfigDict(env_prefix="WORKBENCH_", extra="ignore")

    home: Path = Field(Path(".workbench"), description="folder for the SQLite file, media, indexes")
    # repr=False: the URL may hold a password, and a logged or printed Settings must not show it.
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<home>/workbench.db", repr=False
    )
    sqlite_busy_timeout_ms: int = Field(30_000, gt=0)

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    def ensure_home(self) -> Path:
        """The home folder, created private (0700); an existing one that other accounts can
        open is tightened, and a warning says so."""
        home = self.resolved_home
        if not home.exists():
            return private_dir(home)
        st = home.stat()
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077 and st.st_uid == getattr(os, "geteuid", lambda: -1)():
            os.chmod(home, PRIVATE_DIR)
            log.warning(
                "WORKBENCH_HOME %s was open to other accounts (mode %s); made it %s (owner "
                "only): it holds password hashes and the media under review",
                home,
                oct(mode),
                oct(PRIVATE_DIR),
            )
        return home

    @property
    def url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'workbench.db'}"

    @property
    def media_dir(self) -> Path:
        return self.resolved_home / "media"

    @property
    def backups_dir(self) -> Path:
        """Copies of the SQLite file taken before each automatic schema upgrade."""
        return self.resolved_home / "backups"

    @property
    def staging_dir(self) -> Path:
        return self.resolved_home / "staging"

    @property
    def blurred_dir(self) -> Path:
        """Blurred and greyscale copies of images, made for the review page."""
        return self.resolved_home / "blurred"

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def ingest_limits(self) -> IngestLimits:
        return IngestLimits()


def get_settings() -> Settings:
    """Read settings from the environment now (not cached: tests and the CLI change it)."""
    return Settings()
