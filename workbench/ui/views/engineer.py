"""The engineer's page: launch a retrain round (run by `workbench worker`, never here), follow
its progress and log, compare model versions, set the selection mix and batch size, fill the queue.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.projects import project_settings_view, set_project_setting
from workbench.services.select.batch import select_batch
from workbench.services.train import rounds
from workbench.services.train.train import list_model_versions
from workbench.ui.state import (
    acting,
    database,
    flash_and_rerun,
    load_project,
    show_error,
    show_flash,
    tx,
)


def _rounds_section(me: SessionUser, project_name: str) -> None:
    st.subheader("Retrain rounds")
    if st.button("Launch a retrain round"):
        try:
            with acting() as (s, me):
                rnd, created = rounds.request_round(s, load_project(s, project_name), me.actor)
            st.success(
                f"Round {rnd.number} queued for the worker." if created
                else f"Round {rnd.number} is already {rnd.status.value}."
            )  # fmt: skip
        except WorkbenchError as exc:
            show_error(exc)
    with tx() as s:
        listed = rounds.list_rounds(s, load_project(s, project_name), me.actor)
    if not listed:
        st.caption("No rounds yet.")
        return
    latest = listed[0]
    st.text(f"Round {latest.number}: {latest.status.value}")
    st.progress(min(1.0, max(0.0, float(latest.progress or 0.0))))
    with st.expander("Log of the latest round"):
        st.text(latest.log or "(empty)")
    st.dataframe(
        pd.DataFrame(
            [
                {"round": r.number, "status": r.status.value, "progress": r.progress,
                 "trigger": r.trigger, "by": r.requested_by, "created": r.created_at,
                 "finished": r.finished_at, "error": r.error or ""}
                for r in listed
            ]
        ),
        hide_index=True,
    )  # fmt: skip
    st.button("Refresh")  # the page never waits on a round: refresh to see progress


def _models_section(me: SessionUser, project_name: str) -> None:
    st.subheader("Model versions")
    with tx() as s:
        versions = list_model_versions(s, load_project(s, project_name), me.actor)
    if not versions:
        st.caption("No model versions yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {"version": v.version, "status": v.status.value, "head": v.head,
                 "trained on": v.trained_on, "calibrated": v.calibrated,
                 "metrics": json.dumps(v.metrics, default=str)[:300]}
                for v in versions
            ]
        ),
        hide_index=True,
    )  # fmt: skip


def _selection_section(me: SessionUser, project_name: str) -> None:
    st.subheader("Selection")
    try:
        with tx() as s:
            settings = project_settings_view(s, load_project(s, project_name), me.actor)
    except WorkbenchError as exc:
        show_error(exc)
        return
    _mix_sliders(project_name, settings["selection_mix"])
    with st.form("selection"):
        batch = st.number_input("Batch size", 1, 100_000, int(settings["batch_size"]))
        save = st.form_submit_button("Save batch size")
    if save:
        try:
            with acting() as (s, me):
                project = load_project(s, project_name)
                set_project_setting(s, project, "batch_size", int(batch), me.actor)
        except WorkbenchError as exc:
            show_error(exc)
        else:
            flash_and_rerun("Saved the batch size.")
    if st.button("Fill the queue (one batch)"):
        try:
            # Checked in a transaction of its own: the selection opens its own, and a write
            # transaction held across them would lock SQLite against itself.
            with acting() as (_, me):
                actor = me.actor
            with st.spinner("Selecting..."):
                result = select_batch(database(), project_name, None, None, actor)
            st.text(json.dumps(result, default=str, indent=1)[:2000])
        except WorkbenchError as exc:
            show_error(exc)


def normalise_mix(weights: dict[str, float]) -> dict[str, float]:
    """Slider weights as shares that sum to exactly 1 (three decimals; the largest share takes
    the rounding), leaving out strategies weighted 0."""
    kept = {k: float(v) for k, v in weights.items() if v > 0}
    total = sum(kept.values())
    if total <= 0:
        raise WorkbenchError("give at least one strategy a share above 0")
    shares = {k: round(v / total, 3) for k, v in kept.items()}
    top = max(shares, key=lambda k: shares[k])
    shares[top] = round(1.0 - sum(v for k, v in shares.items() if k != top), 3)
    return shares


def _mix_sliders(project_name: str, mix: dict[str, float]) -> None:
    """The selection mix as one slider per strategy; the shares saved are the weights scaled
    to sum to 1, shown before saving."""
    from workbench.services.select.strategies.base import STRATEGIES

    known = sorted(set(STRATEGIES) - {"mix"} | set(mix))
    chosen = st.multiselect(
        "Strategies in the selection mix", known, default=list(mix), key="mix_strategies"
    )
    weights = {
        name: st.slider(name, 0.0, 1.0, float(mix.get(name, 0.0)), 0.05, key=f"mix_{name}")
        for name in chosen
    }
    try:
        shares = normalise_mix(weights)
    except WorkbenchError as exc:
        show_error(exc)
        return
    st.caption(
        "Saved as shares of each batch (they sum to 1): "
        + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
    )
    if st.button("Save selection mix", disabled=shares == mix):
        try:
            with acting() as (s, me):
                project = load_project(s, project_name)
                set_project_setting(s, project, "selection_mix", shares, me.actor)
        except WorkbenchError as exc:
            show_error(exc)
        else:
            flash_and_rerun("Saved the selection mix.")


def render(me: SessionUser, project_name: str) -> None:
    st.title("Engineer")
    show_flash()
    _rounds_section(me, project_name)
    _models_section(me, project_name)
    _selection_section(me, project_name)
