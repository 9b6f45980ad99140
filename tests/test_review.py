"""The review flow at the service level: drafts survive reloads, submissions are idempotent,
undo supersedes, reviews are blind, roles are checked, and images are blurred on the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import join_every_project, make_items, make_project, make_user
from PIL import Image
from sqlalchemy import func, select

from workbench.db.models import Label, Lease, LeaseStatus, Role
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.auth import LocalPasswordAuthenticator, login
from workbench.services.labels.current import current_labels
from workbench.services.projects import project_settings_view, set_project_setting
from workbench.services.quality.overview import (
    lead_overview,
    overlap_items,
    reviewer_stats,
    spot_check_table,
)
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.review import flow as review
from workbench.services.review import wellbeing
from workbench.services.review.flow import ReviewForm
from workbench.services.review.media_view import display_image
from workbench.services.taxonomy import load_taxonomy_version, taxonomy_versions
from workbench.services.users import add_user
from workbench.taxonomy import default_taxonomy_json


def _setup(s, n=3, overlap=1):  # type: ignore[no-untyped-def]
    p = make_project(s)
    items = make_items(s, p, [f"text {k}" for k in range(n)])
    enqueue(
        s,
        p,
        [NewEntry(i.id, priority=-k, overlap_target=overlap) for k, i in enumerate(items)],
        Actor.system(),
    )
    return p, items


def _actor(user) -> Actor:  # type: ignore[no-untyped-def]
    return Actor.for_user(user.name, user.id, user.role)


def _ok(**fields) -> ReviewForm:  # type: ignore[no-untyped-def]
    return ReviewForm(decision="not_violating", **fields)


def test_reload_gives_back_the_same_item_with_the_draft(db) -> None:
    with db.sessions.begin() as s:
        p, items = _setup(s)
        alice = _actor(make_user(s, "alice"))
        first = review.current_item(s, p, alice)
        assert first is not None and first.item_id == items[0].id
        review.save_draft(
            s, p, alice, first.item_id, ReviewForm(decision="violating", rationale="slur in line 2")
        )
    with db.sessions.begin() as s:  # a new page run, as after a reload and a new login
        again = review.current_item(s, p, alice)
        assert again is not None and again.lease_id == first.lease_id
        assert again.draft == ReviewForm(decision="violating", rationale="slur in line 2")


def test_double_submit_makes_exactly_one_label_and_the_next_item_is_ready(db) -> None:
    with db.sessions.begin() as s:
        p, items = _setup(s)
        alice = _actor(make_user(s, "alice"))
        item = review.current_item(s, p, alice)
        assert item is not None and item.lease_id is not None
        one = review.submit_review(s, p, alice, item.lease_id, _ok())
        two = review.submit_review(s, p, alice, item.lease_id, _ok())
        assert one.created and not two.created and one.label_id == two.label_id
        assert s.scalar(select(func.count()).select_from(Label)) == 1
        assert s.get(Lease, item.lease_id).status == LeaseStatus.submitted
        nxt = review.current_item(s, p, alice)
        assert nxt is not None and nxt.item_id == items[1].id


def test_time_spent_is_recorded_from_when_the_item_was_shown(db) -> None:
    from datetime import timedelta

    from workbench.db.types import utcnow

    t0 = utcnow()
    with db.sessions.begin() as s:
        p, _ = _setup(s)
        alice = _actor(make_user(s, "alice"))
        item = review.current_item(s, p, alice, now=t0)
        res = review.submit_review(s, p, alice, item.lease_id, _ok(), now=t0 + timedelta(seconds=7))
        assert s.get(Label, res.label_id).time_spent_ms == 7000


def test_violating_without_rationale_is_refused_and_nothing_is_written(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _setup(s)
        alice = _actor(make_user(s, "alice"))
        item = review.current_item(s, p, alice)
        code = item.policies[1].code if item.policies[0].code == "none" else item.policies[0].code
        data = ReviewForm(decision="violating", policies=(code,))
        with pytest.raises(WorkbenchError, match="rationale"):
            review.submit_review(s, p, alice, item.lease_id, data)
        assert s.scalar(select(func.count()).select_from(Label)) == 0
        assert s.get(Lease, item.lease_id).status == LeaseStatus.active  # still the reviewer's


def test_skip_hands_the_item_on_and_never_back_to_the_same_reviewer(db) -> None:
    with db.sessions.begin() as s:
        p, items = _setup(s, n=1)
        alice, bob = _actor(make_user(s, "alice")), _actor(make_user(s, "bob"))
        item = review.current_item(s, p, alice)
        with pytest.raises(WorkbenchError, match="reason"):
            review.skip(s, p, alice, item.lease_id, " ")
        review.skip(s, p, alice, item.lease_id, "not my language")
        assert review.current_item(s, p, alice) is None
        assert review.current_item(s, p, bob).item_id == items[0].id


def test_undo_reopens_the_last_label_and_the_correction_supersedes_it(db) -> None:
    with db.sessions.begin() as s:
        p, items = _setup(s)
        alice = _actor(make_user(s, "alice"))
        item = review.current_item(s, p, alice)
        first = review.submit_review(s, p, alice, item.lease_id, _ok(rationale="fine"))
        reopened = review.undo_last(s, p, alice)
        assert reopened.item_id == items[0].id and reopened.supersedes_label_id == first.label_id
        assert reopened.draft == ReviewForm(decision="not_violating", rationale="fine")
        # A reload keeps the correction in front of the next queued item.
        assert review.current_item(s, p, alice).supersedes_label_id == first.label_id
        code = next(x.code for x in reopened.policies if x.code != "none")
        fixed = ReviewForm(decision="violating", policies=(code,), rationale="missed the slur")
        res = review.submit_correction(s, p, alice, first.label_id, fixed)
        again = review.submit_correction(s, p, alice, first.label_id, fixed)
        assert res.created and not again.created
        live = current_labels(s, p)
        assert [lab.id for lab in live] == [res.label_id]
        assert s.get(Label, res.label_id).supersedes_id == first.label_id
        assert review.current_item(s, p, alice).item_id == items[1].id


def test_undo_without_any_label_says_so(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _setup(s)
        alice = _actor(make_user(s, "alice"))
        with pytest.raises(WorkbenchError, match="no label of yours"):
            review.undo_last(s, p, alice)


def test_model_suggestion_is_shown_only_after_submit_and_only_when_the_project_allows(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (it,) = make_items(s, p, ["x"])
        (it2,) = make_items(s, p, ["y"], prefix="j")
        enqueue(
            s,
            p,
            [NewEntry(it.id, score=0.83, reason="near the boundary"), NewEntry(it2.id, score=0.5)],
            Actor.system(),
        )
        alice = _actor(make_user(s, "alice"))
        item = review.current_item(s, p, alice)
        assert not hasattr(item, "score")  # blind: nothing of the model before submitting
        assert review.submit_review(s, p, alice, item.lease_id, _ok()).model_suggestion is None
        set_project_setting(s, p, "show_model_suggestion_after_submit", True, Actor.system())
        item2 = review.current_item(s, p, alice)
        shown = review.submit_review(s, p, alice, item2.lease_id, _ok()).model_suggestion
        assert shown is not None and shown["score"] == 0.5


def test_blind_review_hides_other_reviewers_labels(db) -> None:
    with db.sessions.begin() as s:
        p, items = _setup(s, n=1, overlap=2)
        alice, bob = _actor(make_user(s, "alice")), _actor(make_user(s, "bob"))
        a = review.current_item(s, p, alice)
        review.submit_review(s, p, alice, a.lease_id, _ok(rationale="alice's secret reasoning"))
        b = review.current_item(s, p, bob)
        assert b is not None and b.item_id == items[0].id
        assert b.draft == ReviewForm() and "alice" not in repr(b)


def test_roles_are_checked_in_the_service_whatever_the_page_shows(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _setup(s)
        eng = make_user(s, "erin", Role.engineer)
        rev = make_user(s, "rita")
        with pytest.raises(PermissionDenied):
            review.current_item(s, p, _actor(eng))
        for lead_only in (
            wellbeing.affected_counts, reviewer_stats, spot_check_table, overlap_items,
            lead_overview,
        ):  # fmt: skip
            with pytest.raises(PermissionDenied):
                lead_only(s, p, _actor(rev))


def test_a_reviewer_cannot_submit_on_another_reviewers_lease(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _setup(s)
        alice, bob = _actor(make_user(s, "alice")), _actor(make_user(s, "bob"))
        a = review.current_item(s, p, alice)
        with pytest.raises(WorkbenchError, match="no lease"):
            review.submit_review(s, p, bob, a.lease_id, _ok())
        with pytest.raises(PermissionDenied):
            review.save_draft(s, p, bob, a.item_id, ReviewForm(rationale="x"))


def test_affected_flags_are_counted_in_aggregate_and_once_per_reviewer(db) -> None:
    with db.sessions.begin() as s:
        p, items = _setup(s, overlap=2)
        alice, bob = _actor(make_user(s, "alice")), _actor(make_user(s, "bob"))
        lead = _actor(make_user(s, "lee", Role.lead))
        assert wellbeing.flag_affected(s, p, alice, items[0].id)
        assert not wellbeing.flag_affected(s, p, alice, items[0].id)
        assert wellbeing.flag_affected(s, p, bob, items[0].id)
        assert review.current_item(s, p, alice).flagged_affected
        assert wellbeing.affected_counts(s, p, lead) == wellbeing.AffectedCounts(2, 1, 2)


def test_exposure_counter_reaches_the_cap_and_a_break_resets_it(db) -> None:
    from workbench.services.auth import reset_exposure, resolve_session

    with db.sessions.begin() as s:
        p, _ = _setup(s)
        user = add_user(s, "alice", Role.reviewer, Actor.system(), password="long enough pw")
        join_every_project(s, user)
        token, me = login(
            s, LocalPasswordAuthenticator(), {"user_name": "alice", "password": "long enough pw"}
        )
        wellbeing.update_wellbeing_settings(
            s, me.actor, wellbeing.WellbeingSettings(exposure_cap=2)
        )
        settings = wellbeing.wellbeing_settings(s, me.actor)
        assert settings.blur_images and settings.greyscale_images  # protective defaults kept
        counts = []
        for _ in range(2):
            item = review.current_item(s, p, me.actor)
            counts.append(
                review.submit_review(
                    s, p, me.actor, item.lease_id, _ok(), session_id=me.session_id
                ).items_reviewed_in_session
            )
        assert counts == [1, 2] and wellbeing.break_due(settings, counts[-1])
        reset_exposure(s, me.session_id)
        assert resolve_session(s, token).items_reviewed == 0
        assert user.id == me.user_id


def test_blurred_copy_is_grey_blurred_and_made_on_the_server(tmp_path: Path) -> None:
    src = tmp_path / "red.png"
    img = Image.new("RGB", (200, 200), (255, 0, 0))
    for x in range(0, 200, 10):  # sharp stripes: blur must smooth them
        for y in range(200):
            img.putpixel((x, y), (0, 0, 255))
    img.save(src)
    out = display_image(src, "abc", tmp_path / "blurred", blur=True, greyscale=True)
    assert out != src and out.parent == tmp_path / "blurred"
    with Image.open(out) as shown:
        rgb = shown.convert("RGB")
        r, g, b = (band.tobytes() for band in rgb.split())
        assert r == g == b  # greyscale
        row = [rgb.getpixel((x, 100))[0] for x in range(rgb.width)]
        assert max(row) - min(row) < 40  # stripes gone
    assert display_image(src, "abc", tmp_path / "blurred", blur=False, greyscale=False) == src


def test_lead_read_outs_count_only_the_current_label_after_a_correction(db) -> None:
    with db.sessions.begin() as s:
        p, items = _setup(s, n=1, overlap=2)
        alice, bob = _actor(make_user(s, "alice")), _actor(make_user(s, "bob"))
        lead = _actor(make_user(s, "lee", Role.lead))
        a = review.current_item(s, p, alice)
        first = review.submit_review(s, p, alice, a.lease_id, _ok())
        reopened = review.undo_last(s, p, alice)
        code = next(x.code for x in reopened.policies if x.code != "none")
        fixed = ReviewForm(decision="violating", policies=(code,), rationale="missed it")
        review.submit_correction(s, p, alice, first.label_id, fixed)
        b = review.current_item(s, p, bob)
        review.submit_review(s, p, bob, b.lease_id, _ok())

        stats = {r.reviewer: r for r in reviewer_stats(s, p, lead)}
        assert (stats["alice"].labels, stats["alice"].decisions) == (1, {"violating": 1})
        (overlap,) = overlap_items(s, p, lead)
        assert sorted((x.reviewer, x.decision) for x in overlap.labels) == [
            ("alice", "violating"), ("bob", "not_violating"),
        ]  # fmt: skip
        spots = spot_check_table(s, p, lead)
        assert sorted((r.reviewer, r.decision) for r in spots) == [
            ("alice", "violating"), ("bob", "not_violating"),
        ]  # fmt: skip
        assert {r.item_id for r in spots} == {items[0].id}
        overview = lead_overview(s, p, lead)
        assert overview.queue["done"] == 1 and overview.overlap == [overlap]


def test_spot_checks_list_an_unlabelled_item_once_without_a_decision(db) -> None:
    with db.sessions.begin() as s:
        p, items = _setup(s, n=2)
        lead = _actor(make_user(s, "lee", Role.lead))
        rows = spot_check_table(s, p, lead)
        assert [(r.item_id, r.decision, r.reviewer) for r in rows] == [
            (items[1].id, None, None), (items[0].id, None, None),
        ]  # fmt: skip


def test_project_settings_are_changed_only_by_engineers_and_admins(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _setup(s)
        rev, lead = make_user(s, "rita"), make_user(s, "lee", Role.lead)
        eng, admin = make_user(s, "erin", Role.engineer), make_user(s, "ada", Role.admin)
        for who in (rev, lead):
            with pytest.raises(PermissionDenied, match="change project settings"):
                set_project_setting(s, p, "batch_size", 7, _actor(who))
        set_project_setting(s, p, "batch_size", 7, _actor(eng))
        set_project_setting(s, p, "overlap_k", 2, _actor(admin))
        shown = project_settings_view(s, p, _actor(lead))
        assert (shown["batch_size"], shown["overlap_k"]) == (7, 2)
        with pytest.raises(PermissionDenied):
            project_settings_view(s, p, _actor(rev))


def test_a_taxonomy_is_loaded_from_an_upload_by_admins_only(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _setup(s)
        eng, admin = make_user(s, "erin", Role.engineer), make_user(s, "ada", Role.admin)
        raw = json.dumps(default_taxonomy_json() | {"name": "v2 policies"}).encode()
        with pytest.raises(PermissionDenied, match="load a policy taxonomy"):
            load_taxonomy_version(s, p, _actor(eng), raw, "upload.json")
        with pytest.raises(WorkbenchError, match=r"upload\.json: not a JSON file"):
            load_taxonomy_version(s, p, _actor(admin), b"{not json", "upload.json")
        assert load_taxonomy_version(s, p, _actor(admin), raw, "upload.json") == 2
        assert [v["name"] for v in taxonomy_versions(s, p, _actor(eng))][-1] == "v2 policies"
        with pytest.raises(PermissionDenied):
            taxonomy_versions(s, p, _actor(make_user(s, "rita")))
