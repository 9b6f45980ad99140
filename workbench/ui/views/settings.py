"""My settings: wellbeing (blur, greyscale, exposure cap), each user for themself."""

from __future__ import annotations

import streamlit as st

from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.review import wellbeing
from workbench.ui.state import acting, show_error, tx


def render(me: SessionUser) -> None:
    st.title("My settings")
    with tx() as s:
        current = wellbeing.wellbeing_settings(s, me.actor)
    with st.form("wellbeing"):
        blur = st.checkbox("Blur images until I reveal them", value=current.blur_images)
        grey = st.checkbox(
            "Show images in greyscale until I reveal them", value=current.greyscale_images
        )
        cap_on = st.checkbox("Remind me to take a break", value=current.exposure_cap is not None)
        cap = st.number_input(
            "after this many items in one session", min_value=1, max_value=10_000,
            value=current.exposure_cap or 50,
        )  # fmt: skip
        saved = st.form_submit_button("Save")
    st.caption("Video is always muted and never plays by itself.")
    if saved:
        try:
            with acting() as (s, me):
                wellbeing.update_wellbeing_settings(
                    s,
                    me.actor,
                    wellbeing.WellbeingSettings(blur, grey, int(cap) if cap_on else None),
                )
            st.success("Saved.")
        except WorkbenchError as exc:
            show_error(exc)
