"""Create the Postgres database a URL names if it does not exist (used by `make bench`).

Usage: python benchmarks/create_database.py postgresql+psycopg://USER@HOST:PORT/DB
"""

from __future__ import annotations

import sys

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def create_database(url: str) -> bool:
    """Create the database of `url` on its server; True when it was made, False when present."""
    target = make_url(url)
    if target.get_backend_name() != "postgresql" or not target.database:
        raise SystemExit(f"expected a postgresql+psycopg://USER@HOST:PORT/DB URL, found {url!r}")
    # CREATE DATABASE cannot run inside a transaction, and not while connected to the target.
    server = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            ).scalar()
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
            return True
    finally:
        server.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    made = create_database(sys.argv[1])
    print(f"{make_url(sys.argv[1]).database}: {'created' if made else 'exists'}", file=sys.stderr)
