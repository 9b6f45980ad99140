"""`workbench apikey`: a key is shown once, stored as a hash, listed without its token, revoked;
bad names and scopes are refused with exit 1; every change is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from workbench.db.database import open_database
from workbench.db.models import ApiKey, AuditEvent
from workbench.services.apikeys import InvalidApiKey, ScopeDenied, authenticate, hash_token


def test_apikey_create_list_revoke(cli) -> None:  # type: ignore[no-untyped-def]
    made = cli.json("apikey", "create", "uploader", "--scope", "scan", "--scope", "banks")
    assert made["name"] == "uploader" and made["key"].startswith("wbk_")
    assert made["scopes"] == ["scan", "banks"]
    listed = cli.json("apikey", "list")["keys"]
    assert [k["name"] for k in listed] == ["uploader"] and made["key"] not in str(listed)
    db = open_database()
    try:
        with db.sessions.begin() as s:
            row = s.scalar(select(ApiKey))
            assert row is not None and row.key_hash == hash_token(made["key"])
            assert authenticate(s, made["key"], "banks").name == "uploader"
        assert cli.json("apikey", "revoke", "uploader")["revoked_at"] is not None
        with db.sessions() as s:
            with pytest.raises(InvalidApiKey):
                authenticate(s, made["key"], "scan")
            actions = list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
        assert actions[-3:] == ["apikey.created", "apikey.used", "apikey.revoked"]
    finally:
        db.dispose()


def test_apikey_bad_input_exits_1(cli) -> None:  # type: ignore[no-untyped-def]
    assert (
        "unknown scope" in cli.json("apikey", "create", "k", "--scope", "admin", expect=1)["error"]
    )
    assert (
        "not allowed"
        in cli.json("apikey", "create", "bad name", "--scope", "scan", expect=1)["error"]
    )
    cli.json("apikey", "create", "k", "--scope", "scan")
    assert (
        "already exists" in cli.json("apikey", "create", "k", "--scope", "scan", expect=1)["error"]
    )
    assert "no API key" in cli.json("apikey", "revoke", "nobody", expect=1)["error"]


def test_a_key_without_the_scope_is_denied(cli) -> None:  # type: ignore[no-untyped-def]
    made = cli.json("apikey", "create", "curator", "--scope", "banks")
    db = open_database()
    try:
        with db.sessions() as s, pytest.raises(ScopeDenied, match="'scan'"):
            authenticate(s, made["key"], "scan")
    finally:
        db.dispose()
