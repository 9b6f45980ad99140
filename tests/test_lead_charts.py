"""The lead's agreement dashboard: its figures are the agreement report's, the kappa matrix is
symmetric with the shared items, confusion matrices count by hand, and the page renders."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from quality_builders import Labels, add_fused_vectors, separable_vectors
from sklearn.metrics import cohen_kappa_score
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from workbench.db.database import Database
from workbench.db.models import EntryKind, QueueEntry, Role
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.auth import LocalPasswordAuthenticator, login
from workbench.services.projects import create_project, get_project
from workbench.services.quality import charts
from workbench.services.quality.agreement import agreement_report, load_counted_labels
from workbench.services.users import set_password
from workbench.ui.state import TOKEN

V, N, U = "hate", "none", "unsure"  # violating (policy hate), not violating, unsure
ODD_NAME = "**cat**<b>x</b>"  # a reviewer name that Markdown or HTML would render


def _two_weeks(lab: Labels) -> None:
    """Three reviewers over two ISO weeks, items violating (hate or spam) or not."""
    plan = {
        # item: (days, {reviewer: class})
        "a": (0, {"ann": V, "bob": V, ODD_NAME: V}),
        "b": (1, {"ann": N, "bob": N, ODD_NAME: V}),
        "c": (2, {"ann": V, "bob": N}),
        "d": (3, {"ann": N, "bob": N, ODD_NAME: N}),
        "e": (7, {"ann": "spam", "bob": "spam"}),
        "f": (8, {"ann": "spam", "bob": N, ODD_NAME: "spam"}),
        "g": (9, {"ann": N, ODD_NAME: N}),
        "h": (10, {"bob": V, ODD_NAME: U}),
        "i": (11, {"ann": V}),  # one label: counted, not pairable
    }
    for item, (days, labels) in plan.items():
        for reviewer, cls in labels.items():
            lab.label(item, reviewer, cls, days=days)


def _same(frame_value: float, report_value: float | None) -> bool:
    """A frame's NaN is the report's None (the figure is undefined on that slice)."""
    if report_value is None:
        return bool(np.isnan(frame_value))
    return bool(frame_value == pytest.approx(report_value))


@pytest.fixture
def project_db(db: Database) -> Database:
    with db.sessions.begin() as s:
        _two_weeks(Labels(s, create_project(s, "p", Actor.system())))
    return db


def test_alpha_by_week_and_by_policy_are_the_agreement_reports_figures(
    project_db: Database,
) -> None:
    with project_db.sessions() as s:
        project = get_project(s, "p")
        report = agreement_report(s, project, "decision", ["week", "policy"], n_boot=200)
        dash = charts.agreement_dashboard(s, project, Actor.system(), "decision", n_boot=200)
    assert dash.by_week["week"].tolist() == ["2026-W45", "2026-W46"]
    for dim, frame in (("week", dash.by_week), ("policy", dash.by_policy)):
        assert set(frame[dim]) == set(report["by"][dim])
        for row in frame.to_dict("records"):
            fig = report["by"][dim][row[dim]]
            ci = fig["krippendorff_alpha_ci"] or [None, None]
            assert _same(row["alpha"], fig["krippendorff_alpha"])
            assert _same(row["alpha_low"], ci[0]) and _same(row["alpha_high"], ci[1])
            assert (row["n_items"], row["n_labels"]) == (fig["n_items"], fig["n_labels"])
    assert dash.overall["krippendorff_alpha"] == pytest.approx(report["krippendorff_alpha"])
    assert dash.overall["n_items"] == report["n_items"] == 8


def test_kappa_matrix_is_symmetric_with_the_shared_items_of_each_pair(
    project_db: Database,
) -> None:
    with project_db.sessions() as s:
        project = get_project(s, "p")
        dash = charts.agreement_dashboard(s, project, Actor.system(), "decision", n_boot=10)
        labels = load_counted_labels(s, project)
    assert dash.reviewers == sorted(["ann", "bob", ODD_NAME])
    k, n = dash.kappa.to_numpy(), dash.shared_items.to_numpy()
    np.testing.assert_array_equal(np.isnan(k), np.isnan(k.T))
    np.testing.assert_allclose(np.nan_to_num(k), np.nan_to_num(k.T))
    np.testing.assert_array_equal(n, n.T)
    assert np.all(np.diag(n) == 0)
    by_item = labels.pivot(index="item_id", columns="reviewer", values="decision")
    for a in dash.reviewers:
        for b in dash.reviewers:
            if a == b:
                continue
            shared = by_item[[a, b]].dropna()
            assert dash.shared_items.loc[a, b] == len(shared)
            assert dash.kappa.loc[a, b] == pytest.approx(cohen_kappa_score(shared[a], shared[b]))
    pairs = dash.kappa_pairs()
    # Each pair once.
    assert len(pairs) == 3 and set(pairs["n_items"]) == {int(x) for x in n[n > 0]}
    named = zip(pairs["reviewer_a"], pairs["reviewer_b"], strict=True)
    assert len({frozenset(p) for p in named}) == 3


def test_confusion_matrix_of_two_reviewers_counts_their_shared_items_by_hand(
    project_db: Database,
) -> None:
    with project_db.sessions() as s:
        dash = charts.agreement_dashboard(s, get_project(s, "p"), Actor.system(), n_boot=10)
    conf = dash.confusion("ann", "bob")
    # ann (rows) × bob (columns) on a, b, c, d, e, f: the items both labelled.
    expected = {
        ("violating", "violating"): 2,  # a, e
        ("not_violating", "not_violating"): 2,  # b, d
        ("violating", "not_violating"): 2,  # c, f
    }
    for a in conf.matrix.index:
        for b in conf.matrix.columns:
            assert conf.matrix.loc[a, b] == expected.get((a, b), 0), (a, b)
    assert (conf.n_items, conf.n_pairs) == (6, 6)
    flipped = dash.confusion("bob", "ann")
    np.testing.assert_array_equal(flipped.matrix.to_numpy(), conf.matrix.to_numpy().T)


def test_pooled_confusion_counts_every_pair_both_ways(project_db: Database) -> None:
    with project_db.sessions() as s:
        dash = charts.agreement_dashboard(s, get_project(s, "p"), Actor.system(), n_boot=10)
    pooled = dash.confusion()
    m = pooled.matrix.to_numpy()
    np.testing.assert_array_equal(m, m.T)
    # Pairs: a, b, d, f have three labels (3 pairs each), c, e, g, h two (1 pair each).
    assert pooled.n_pairs == 16 and m.sum() == 32 and pooled.n_items == 8
    # h: bob violating, the odd-named reviewer unsure.
    assert pooled.matrix.loc["violating", "unsure"] == 1
    with pytest.raises(WorkbenchError, match="two different reviewers"):
        dash.confusion("ann", "ann")
    with pytest.raises(WorkbenchError, match="no counted labels by reviewer 'zed'"):
        dash.confusion("ann", "zed")


def test_reviewers_may_not_see_the_dashboard(project_db: Database) -> None:
    with project_db.sessions.begin() as s:
        lab = Labels(s, get_project(s, "p"))
        rita = lab.user("rita", Role.reviewer)
        with pytest.raises(PermissionDenied, match="agreement figures"):
            charts.agreement_dashboard(
                s, get_project(s, "p"), Actor.for_user("rita", rita.id, Role.reviewer)
            )


def test_charts_are_vega_lite_specs_over_the_figures(project_db: Database) -> None:
    with project_db.sessions() as s:
        dash = charts.agreement_dashboard(s, get_project(s, "p"), Actor.system(), n_boot=10)
    specs = [
        charts.alpha_over_time_chart(dash.by_week).to_dict(),
        charts.alpha_by_policy_chart(dash.by_policy).to_dict(),
        charts.kappa_heatmap_chart(dash.kappa_pairs()).to_dict(),
        charts.confusion_chart(dash.confusion("ann", "bob")).to_dict(),
    ]
    for spec in specs:
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
        rows = next(iter(spec["datasets"].values()))
        assert rows
    heat_rows = next(iter(specs[2]["datasets"].values()))
    assert {r["reviewer_a"] for r in heat_rows} == set(dash.reviewers)


def test_empty_project_gives_empty_figures_not_errors(db: Database) -> None:
    with db.sessions.begin() as s:
        project = create_project(s, "empty", Actor.system())
        dash = charts.agreement_dashboard(s, project, Actor.system(), n_boot=10)
    assert dash.by_week.empty and dash.kappa_pairs().empty and dash.overall["n_items"] == 0
    assert dash.confusion().matrix.to_numpy().sum() == 0


def test_alpha_by_policy_is_sized_to_its_data_and_names_its_axis(project_db: Database) -> None:
    with project_db.sessions() as s:
        dash = charts.agreement_dashboard(s, get_project(s, "p"), Actor.system(), n_boot=20)
    n = int(dash.by_policy["alpha"].notna().sum())
    spec = charts.alpha_by_policy_chart(dash.by_policy).to_dict()
    assert n >= 2 and spec["height"] == charts.policy_chart_height(n) >= 32 * n
    layers = spec["layer"]
    assert {layer["encoding"]["x"]["title"] for layer in layers} == {"Krippendorff's alpha"}
    assert all(layer["encoding"]["y"]["axis"]["labelLimit"] == 0 for layer in layers)


def test_a_trend_needs_two_weeks(project_db: Database) -> None:
    with project_db.sessions() as s:
        dash = charts.agreement_dashboard(s, get_project(s, "p"), Actor.system(), n_boot=10)
    assert charts.trend_points(dash.by_week) == 2
    assert charts.trend_points(dash.by_week.head(1)) < charts.MIN_TREND_POINTS
    assert charts.trend_points(pd.DataFrame()) == 0


def test_the_reviewers_table_counts_imported_labels_but_not_propagated_copies(
    db: Database,
) -> None:
    from sqlalchemy import update

    from workbench.db.models import Label, LabelSource, User
    from workbench.services.quality.overview import reviewer_stats

    with db.sessions.begin() as s:
        # One transaction: Postgres refuses to change a label once committed.
        project = create_project(s, "p", Actor.system())
        _two_weeks(Labels(s, project))
        s.flush()
        ann = s.scalar(select(User.id).where(User.name == "ann"))
        bob = s.scalar(select(User.id).where(User.name == "bob"))
        s.execute(update(Label).where(Label.reviewer_id == ann).values(source=LabelSource.import_))
        s.execute(
            update(Label).where(Label.reviewer_id == bob).values(source=LabelSource.propagated)
        )
        stats = {r.reviewer: r.labels for r in reviewer_stats(s, project, Actor.system())}
    assert stats == {"ann": 8, ODD_NAME: 6}


def test_read_out_tables_show_n_a_never_none_or_nan() -> None:
    from workbench.ui.views.lead import readable

    frame = pd.DataFrame(
        {"policy": ["hate", "spam"], "alpha": [0.33333, np.nan], "n": [2, 3],
         "median seconds": [None, 4.5]}
    )  # fmt: skip
    shown = readable(frame)
    assert shown.to_dict("list") == {
        "policy": ["hate", "spam"], "alpha": ["0.333", "n/a"], "n": [2, 3],
        "median seconds": ["n/a", "4.500"],
    }  # fmt: skip


# --- the page ---------------------------------------------------------------------------------


def _lead_page() -> None:
    # Runs inside AppTest: imports here, the user comes from session state.
    from datetime import UTC, datetime

    import streamlit as st

    from workbench.db.models import Role
    from workbench.services.auth import SessionUser
    from workbench.ui.state import current_user
    from workbench.ui.views import lead

    assert current_user() is not None, "the test's session must be live"
    me = SessionUser(
        user_id=st.session_state["lead_id"], name="lena", role=Role.lead, session_id=0,
        expires_at=datetime.now(UTC), items_reviewed=0,
    )  # fmt: skip
    lead.render(me, "p")


LEAD_TOKENS: dict[int, str] = {}


@pytest.fixture
def page_db(sqlite_db: Database) -> tuple[Database, int]:
    """Agreement labels over two weeks, and 45 single-labelled items with vectors of which
    three are labelled with the wrong class."""
    st.cache_resource.clear()  # the app caches its database; each test has its own
    vectors, truth = separable_vectors(["hate", "none", "spam"], 15)
    flipped = {3: "spam", 20: "hate", 37: "none"}
    with sqlite_db.sessions.begin() as s:
        lab = Labels(s, create_project(s, "p", Actor.system()))
        _two_weeks(lab)
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        for n, item in enumerate(items):
            lab.label(item.external_id, "ann", flipped.get(n, truth[n]))
        pairable = [lab.items[k] for k in "abcdefghi"]
        agreement_vectors = vectors[[0, 15, 1, 16, 30, 31, 17, 2, 4]]
        add_fused_vectors(
            s, sqlite_db.settings, lab.project, pairable + items,
            np.vstack([agreement_vectors, vectors]),
        )  # fmt: skip
        lena = lab.user("lena", Role.lead)
        set_password(s, lena, "lena-password-1", Actor.system())
        lead_id = lena.id
    with sqlite_db.sessions.begin() as s:
        # Page actions resolve the browser's session again (ui.state.acting): a real one.
        token, _ = login(
            s, LocalPasswordAuthenticator(), {"user_name": "lena", "password": "lena-password-1"}
        )
    LEAD_TOKENS[lead_id] = token
    return sqlite_db, lead_id


def _charts(at: AppTest) -> list[object]:
    return list(at.get("vega_lite_chart"))


def test_lead_page_draws_the_dashboard_and_keeps_user_text_inert(
    page_db: tuple[Database, int],
) -> None:
    _, lead_id = page_db
    at = AppTest.from_function(_lead_page, default_timeout=60)
    at.session_state["lead_id"] = lead_id
    at.session_state[TOKEN] = LEAD_TOKENS[lead_id]
    at.run()
    assert not at.exception, at.exception
    assert [h.value for h in at.header] == ["Agreement", "Suspected mislabels", "Audit trail"]
    assert len(_charts(at)) == 4  # alpha by week, by policy, kappa heatmap, pooled confusion
    at.selectbox(key="confusion_a").set_value("ann")
    at.selectbox(key="confusion_b").set_value("bob")
    at.run()
    assert not at.exception, at.exception
    assert "6 shared items, 6 label pairs" in [t.value for t in at.text]
    # Pooled, the caption's count is the cells' sum.
    at.selectbox(key="confusion_a").set_value("(all pairs)")
    at.run()
    assert "8 shared items, 16 label pairs, each counted in both orders: 32 in the cells" in [
        t.value for t in at.text
    ]
    assert not [i for i in at.info if "Not enough data" in i.value]  # two weeks: a trend
    assert not any("<b>" in m.value or "**cat**" in m.value for m in at.markdown)


def test_lead_page_finds_mislabels_and_prepares_the_audit_csv(
    page_db: tuple[Database, int],
) -> None:
    db, lead_id = page_db
    at = AppTest.from_function(_lead_page, default_timeout=120)
    at.session_state["lead_id"] = lead_id
    at.session_state[TOKEN] = LEAD_TOKENS[lead_id]
    at.run()
    next(b for b in at.button if b.label == "Find suspected mislabels").click()
    at.run()
    assert not at.exception, at.exception
    report = at.session_state["mislabels_report"]
    assert {s["external_id"] for s in report["suspects"]} >= {"x3", "x20", "x37"}
    assert any(t.value.startswith("checked ") for t in at.text)

    def queued() -> set[int]:
        with db.sessions() as s:
            return set(
                s.scalars(select(QueueEntry.item_id).where(QueueEntry.kind == EntryKind.rereview))
            )

    # The suspects are listed and nothing is sent back until the lead confirms.
    assert queued() == set() and report["sent_back"] == 0
    n = len(report["suspects"])
    confirm = at.checkbox(key="mislabels_send")
    assert confirm.label == f"Send these {n} suspects back to review" and not confirm.value
    assert at.button(key="mislabels_confirm").disabled
    confirm.check().run()
    at.button(key="mislabels_confirm").click().run()
    assert not at.exception, at.exception
    report = at.session_state["mislabels_report"]
    assert len(queued()) == report["sent_back"] >= 3
    next(b for b in at.button if b.label == "Prepare audit CSV").click()
    at.run()
    assert not at.exception, at.exception
    data, rows = at.session_state["audit_csv"]
    assert data.startswith(b"id,at,actor,action,project,entity_type,entity_id,details")
    assert len(pd.read_csv(io.BytesIO(data))) == rows > 0
    assert f"{rows} events" in [t.value for t in at.text]
    assert [b.label for b in at.get("download_button")] == ["Download audit CSV"]


def test_lead_page_shows_a_refusal_as_text(page_db: tuple[Database, int]) -> None:
    _, lead_id = page_db
    at = AppTest.from_function(_lead_page, default_timeout=60)
    at.session_state["lead_id"] = lead_id
    at.session_state[TOKEN] = LEAD_TOKENS[lead_id]
    at.run()
    at.date_input(key="audit_since").set_value(datetime(2026, 11, 5, tzinfo=UTC).date())
    at.date_input(key="audit_until").set_value(datetime(2026, 11, 1, tzinfo=UTC).date())
    next(b for b in at.button if b.label == "Prepare audit CSV").click()
    at.run()
    assert not at.exception, at.exception
    assert any("time window is empty" in t.value for t in at.text)
    assert "audit_csv" not in at.session_state
