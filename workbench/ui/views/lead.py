"""The lead's page: queue health, reviewers' labels and time, overlap items, wellbeing flags,
and a table of items with scores and labels for spot checks."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.services import review
from workbench.services.auth import SessionUser
from workbench.services.queue import queue_health
from workbench.ui.state import load_project, show_error, tx


def render(me: SessionUser, project_name: str) -> None:
    st.title("Lead")
    try:
        with tx() as s:
            project = load_project(s, project_name)
            # Reading stats is role-checked in the review service; queue health rides along.
            stats = review.reviewer_stats(s, project, me.actor)
            health = queue_health(s, project)
            overlap = review.overlap_items(s, project, me.actor)
            flags = review.affected_counts(s, project, me.actor)
            table = review.spot_check_table(s, project, me.actor)
    except WorkbenchError as exc:
        show_error(exc)
        return
    st.subheader("Queue health")
    cols = st.columns(5)
    cols[0].metric("Pending", health["pending"])
    cols[1].metric("Leased", health["leased"])
    cols[2].metric("Done", health["done"])
    cols[3].metric("Submitted last hour", health["submitted_last_hour"])
    age = health["oldest_lease_age_seconds"]
    cols[4].metric("Oldest lease", "none" if age is None else f"{age / 60:.0f} min")

    st.subheader("Reviewers")
    st.dataframe(
        pd.DataFrame(
            [
                {"reviewer": r.reviewer, "labels": r.labels, "skips": r.skips,
                 "median seconds": r.median_seconds, **r.decisions}
                for r in stats
            ]
        ),
        hide_index=True,
    )  # fmt: skip
    st.subheader('"This affected me"')
    st.text(f"{flags['flags']} flags on {flags['items']} items from {flags['reviewers']} reviewers")

    st.subheader("Overlap items")
    st.dataframe(
        pd.DataFrame(
            [
                {"item": o["external_id"], "target": o["overlap_target"],
                 "completed": o["completed"],
                 "labels": "; ".join(f"{x['reviewer']}: {x['decision']}" for x in o["labels"])}
                for o in overlap
            ]
        ),
        hide_index=True,
    )  # fmt: skip

    st.subheader("Spot checks")
    frame = pd.DataFrame(table)
    event = st.dataframe(frame, hide_index=True, on_select="rerun", selection_mode="single-row")
    rows = event.selection.rows if event is not None else []
    if rows:
        st.text(frame.iloc[rows[0]].to_string())
