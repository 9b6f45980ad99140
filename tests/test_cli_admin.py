"""The administration commands through the real app on SQLite and Postgres: projects and their
settings, taxonomy versions, users and roles; each checked against what the database holds."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from conftest import CLI
from sqlalchemy import select

from workbench.db.database import Database
from workbench.db.models import AuditEvent, PolicyVersion, Project, Role, User


def test_project_create_list_show_and_set(db: Database, cli: CLI) -> None:
    created = cli.json("project", "create", "beta")
    cli.json("project", "create", "alpha")
    assert cli.json("project", "list") == {"projects": ["alpha", "beta"]}
    with db.sessions() as s:
        assert s.scalar(select(Project.id).where(Project.name == "beta")) == created["id"]
    shown = cli.json("project", "show", "beta")
    assert (shown["project"], shown["id"], shown["policy_version"]) == ("beta", created["id"], 1)
    assert "hate" in shown["policy_codes"] and shown["settings"]["batch_size"] != 7
    changed = cli.json("project", "set", "beta", "batch_size", "7")
    assert changed == {"project": "beta", "settings": {**shown["settings"], "batch_size": 7}}
    assert cli.json("project", "show", "beta")["settings"]["batch_size"] == 7
    assert (
        cli.json("project", "show", "alpha")["settings"]["batch_size"]
        == shown["settings"]["batch_size"]
    )
    with db.sessions() as s:
        actions = list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions.count("project.created") == 2 and actions[-1] == "project.setting_changed"


def test_project_list_and_set_print_for_people_without_json(db: Database, cli: CLI) -> None:
    assert cli("project", "list").stdout == "(no projects)\n"
    cli("project", "create", "p")
    result = cli("project", "set", "p", "gold_rate", "0.1")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == "p: gold_rate = 0.1"
    assert cli("project", "list").stdout == "p\n"


def _default_taxonomy() -> dict:  # type: ignore[type-arg]
    text = resources.files("workbench.taxonomy").joinpath("default_taxonomy.json").read_text()
    spec: dict = json.loads(text)  # type: ignore[type-arg]
    return spec


def test_taxonomy_load_adds_a_version_and_show_reads_either(
    db: Database, cli: CLI, tmp_path: Path
) -> None:
    cli.json("project", "create", "p")
    spec = _default_taxonomy()
    spec["name"] = "stricter"
    spec["policies"] = [p for p in spec["policies"] if p["code"] != "ip"]
    file = tmp_path / "taxonomy.json"
    file.write_text(json.dumps(spec))
    assert cli.json("taxonomy", "load", str(file), "-p", "p") == {
        "project": "p",
        "version": 2,
        "created": True,
    }
    # The same file again is the same version, not a third one.
    assert cli.json("taxonomy", "load", str(file), "-p", "p")["created"] is False
    current = cli.json("taxonomy", "show", "-p", "p")
    first = cli.json("taxonomy", "show", "-p", "p", "--version", "1")
    assert (current["version"], current["name"]) == (2, "stricter")
    assert [p["code"] for p in current["policies"]] == [
        p["code"] for p in first["policies"] if p["code"] != "ip"
    ]
    assert current["policies"][0]["guideline"] and current["policies"][0]["severity_scale"]
    with db.sessions() as s:
        assert list(s.scalars(select(PolicyVersion.version).order_by(PolicyVersion.id))) == [1, 2]
    human = cli("taxonomy", "show", "-p", "p")
    assert human.stdout.splitlines()[0] == "stricter (version 2)"


def test_taxonomy_load_refuses_a_file_that_is_not_a_taxonomy(
    db: Database, cli: CLI, tmp_path: Path
) -> None:
    cli.json("project", "create", "p")
    file = tmp_path / "taxonomy.json"
    file.write_text(json.dumps({"name": "x", "policies": [{"title": "no code"}]}))
    data = cli.json("taxonomy", "load", str(file), "-p", "p", expect=1)
    assert data["ok"] is False and "taxonomy.json" in data["error"]
    with db.sessions() as s:
        assert list(s.scalars(select(PolicyVersion.version))) == [1]


def test_user_list_role_disable_and_enable(db: Database, cli: CLI) -> None:
    assert cli.json("user", "list") == {"users": []}
    assert (
        cli("user", "add", "zoe", "--role", "lead", input="a long enough password\n").exit_code == 0
    )
    cli("user", "add", "abe")  # no stdin: a generated password
    listed = cli.json("user", "list")["users"]
    assert [(u["name"], u["role"], u["disabled"], u["can_log_in"]) for u in listed] == [
        ("abe", "reviewer", False, True),
        ("zoe", "lead", False, True),
    ]
    assert cli.json("user", "role", "abe", "admin") == {"name": "abe", "role": "admin"}
    assert cli.json("user", "disable", "zoe") == {
        "name": "zoe",
        "disabled": True,
        "sessions_ended": 0,
    }
    with db.sessions() as s:
        users = {u.name: u for u in s.scalars(select(User))}
        assert users["abe"].role == Role.admin and users["zoe"].disabled is True
    assert cli("user", "list").stdout.splitlines() == [
        f"{'abe':<24} {'admin':<9}",
        f"{'zoe':<24} {'lead':<9} (disabled)",
    ]
    assert cli.json("user", "enable", "zoe") == {"name": "zoe", "disabled": False}
    with db.sessions() as s:
        assert s.scalar(select(User.disabled).where(User.name == "zoe")) is False
        actions = list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.entity_type == "user")
                .order_by(AuditEvent.id)
            )
        )
    assert actions[-3:] == ["user.role_changed", "user.disabled", "user.enabled"]
