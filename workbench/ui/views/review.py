"""The review page: one leased item, its content shown as inert text or safe media, the label
form saved as a draft on every change, keyboard shortcuts, skip, undo and wellbeing controls."""

from __future__ import annotations

from typing import Any

import streamlit as st

from workbench.db.models import Decision
from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser, reset_exposure
from workbench.services.review import flow as review
from workbench.services.review import wellbeing
from workbench.services.review.flow import ReviewForm, ReviewItem
from workbench.services.review.media_view import display_image
from workbench.ui import shortcuts
from workbench.ui.safe_text import escape_markdown
from workbench.ui.state import acting, database, load_project, show_error, tx

DECISIONS = [Decision.violating.value, Decision.not_violating.value, Decision.unsure.value]
DECISION_LABELS = {
    "violating": "Violating (v)",
    "not_violating": "Not violating (n)",
    "unsure": "Unsure, escalate (e)",
}
DECISION_KEYS = {"v": "(v)", "n": "(n)", "e": "(e)"}
SEVERITIES: list[int | None] = [None, 1, 2, 3, 4]
CONFIDENCES: list[float | None] = [None, 0.25, 0.5, 0.75, 1.0]
SUBMIT = "Submit (Enter)"
# The action row sticks to the bottom of the screen, so Submit is visible however long the
# form; the page's own fixed style, no user content.
_COMPACT_CSS = """<style>
[data-testid="stLayoutWrapper"]:has(> .st-key-wb-actions) { position: sticky; bottom: 0;
  z-index: 5; padding: 0.4rem 0; background: var(--background-color, white); }
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
</style>"""
UNDO = "Undo last label (u)"


def _k(form: str, name: str) -> str:
    return f"{name}::{form}"


def _parse_spans(raw: str, media: bool) -> list[dict[str, Any]]:
    """ "12-30, 40-52" as character ranges (text) or seconds (audio/video)."""
    spans: list[dict[str, Any]] = []
    for part in [p.strip() for p in raw.split(",") if p.strip()]:
        a, sep, b = part.partition("-")
        if not sep:
            raise WorkbenchError(f"span {part!r}: write it as start-end, e.g. 12-30")
        try:
            if media:
                spans.append({"start_s": float(a), "end_s": float(b)})
            else:
                spans.append({"start": int(a), "end": int(b)})
        except ValueError:
            raise WorkbenchError(f"span {part!r}: start and end must be numbers") from None
    return spans


def _spans_text(spans: list[dict[str, Any]]) -> str:
    out = []
    for s in spans or []:
        if "start" in s:
            out.append(f"{s['start']}-{s['end']}")
        else:
            out.append(f"{s['start_s']:g}-{s['end_s']:g}")
    return ", ".join(out)


def _form(form: str, codes: list[str], media: bool, *, strict: bool) -> ReviewForm:
    """The widgets' values as a typed form. Half-typed spans raise when `strict` (a submission);
    for a draft they stay in their field and are left out of the saved form."""
    ss = st.session_state
    spans_text = ss.get(_k(form, "spans")) or ""
    try:
        spans = _parse_spans(spans_text, media)
    except WorkbenchError:
        if strict:
            raise
        spans = []
    return ReviewForm(
        decision=ss.get(_k(form, "decision")),
        policies=tuple(c for c in codes if ss.get(_k(form, f"policy-{c}"))),
        severity=ss.get(_k(form, "severity")),
        rationale=ss.get(_k(form, "rationale")) or "",
        spans=tuple(spans),
        confidence=ss.get(_k(form, "confidence")),
    )


def _init_widgets(form: str, item: ReviewItem) -> None:
    """Fill a fresh form from the saved draft (after a reload, a login or an undo)."""
    ss = st.session_state
    if ss.get(_k(form, "init")):
        return
    d = item.draft
    ss[_k(form, "decision")] = d.decision
    for p in item.policies:
        ss[_k(form, f"policy-{p.code}")] = p.code in d.policies
    ss[_k(form, "severity")] = d.severity
    ss[_k(form, "rationale")] = d.rationale
    ss[_k(form, "spans")] = _spans_text(list(d.spans))
    ss[_k(form, "confidence")] = d.confidence
    ss[_k(form, "init")] = True


# The callbacks below run before the page script: each resolves the session again (`acting`)
# rather than take the previous run's user, so a revoked session cannot act even once.
def _save(project_name: str, item: ReviewItem, media: bool) -> None:
    codes = [p.code for p in item.policies]
    try:
        form = _form(item.idempotency_key, codes, media, strict=False)
        with acting() as (s, me):
            review.save_draft(s, load_project(s, project_name), me.actor, item.item_id, form)
    except WorkbenchError as exc:
        st.session_state["review_error"] = exc


def _submit(project_name: str, item: ReviewItem, media: bool) -> None:
    codes = [p.code for p in item.policies]
    try:
        form = _form(item.idempotency_key, codes, media, strict=True)
        with acting() as (s, me):
            project = load_project(s, project_name)
            if item.supersedes_label_id is not None:
                result = review.submit_correction(
                    s, project, me.actor, item.supersedes_label_id, form
                )
            else:
                assert item.lease_id is not None
                result = review.submit_review(
                    s, project, me.actor, item.lease_id, form, session_id=me.session_id
                )
        st.session_state["last_result"] = result
        st.session_state.pop("review_error", None)
    except WorkbenchError as exc:
        # Keep the draft (with the half-finished spans too) so nothing typed is lost.
        _save(project_name, item, media)
        st.session_state["review_error"] = exc


def _skip(project_name: str, item: ReviewItem) -> None:
    reason = st.session_state.get(_k(item.idempotency_key, "skip_reason")) or ""
    try:
        with acting() as (s, me):
            project = load_project(s, project_name)
            if item.supersedes_label_id is not None:
                review.cancel_correction(s, project, me.actor)
            else:
                assert item.lease_id is not None
                review.skip(s, project, me.actor, item.lease_id, reason)
        st.session_state.pop("review_error", None)
    except WorkbenchError as exc:
        st.session_state["review_error"] = exc


def _undo(project_name: str) -> None:
    try:
        with acting() as (s, me):
            review.undo_last(s, load_project(s, project_name), me.actor)
        st.session_state.pop("review_error", None)
    except WorkbenchError as exc:
        st.session_state["review_error"] = exc


def _flag(project_name: str, item_id: int) -> None:
    try:
        with acting() as (s, me):
            wellbeing.flag_affected(s, load_project(s, project_name), me.actor, item_id)
    except WorkbenchError as exc:
        st.session_state["review_error"] = exc


def _show_content(item: ReviewItem, protection: wellbeing.WellbeingSettings) -> None:
    # st.text never interprets Markdown or HTML: user content stays inert, whatever it holds.
    if item.text:
        st.text(item.text)
    cache = database().settings.blurred_dir
    for asset in item.assets:
        if asset.modality == "image":
            reveal_key = f"reveal::{item.item_id}"
            revealed = st.session_state.get(reveal_key, False)
            protect = not revealed and (protection.blur_images or protection.greyscale_images)
            try:
                path = display_image(
                    asset.path, asset.sha256, cache,
                    blur=protect and protection.blur_images,
                    greyscale=protect and protection.greyscale_images,
                )  # fmt: skip
            except OSError as exc:
                st.text(f"image cannot be shown: {exc}")
                continue
            st.image(str(path), caption="blurred" if protect else None)
            if protect:
                st.button(
                    "Reveal image", key=f"reveal-btn::{item.item_id}",
                    on_click=lambda k=reveal_key: st.session_state.__setitem__(k, True),
                )  # fmt: skip
        elif asset.modality == "audio":
            st.audio(str(asset.path))
        elif asset.modality == "video":
            # Muted and never autoplaying: the reviewer chooses when to watch and hear.
            st.video(str(asset.path), muted=True, autoplay=False)


def render(me: SessionUser, project_name: str) -> None:
    ss = st.session_state
    try:
        with tx() as s:
            project = load_project(s, project_name)
            protection = wellbeing.wellbeing_settings(s, me.actor)
            item = review.current_item(
                s, project, me.actor, media_root=database().settings.media_dir
            )
            left_in_queue = review.items_left(s, project)
    except WorkbenchError as exc:
        show_error(exc)
        return

    st.html(_COMPACT_CSS)
    head, count = st.columns([3, 2], vertical_alignment="bottom")
    head.title("Review")
    count.caption(
        f"{me.items_reviewed} done this session · {left_in_queue} left in the queue",
        help="Done: items you labelled since you logged in. Left: queued items still "
        "waiting for a label in this project.",
    )
    error = ss.pop("review_error", None)
    if isinstance(error, WorkbenchError):
        show_error(error)
    last = ss.pop("last_result", None)
    if last is not None and last.model_suggestion is not None:
        sug = last.model_suggestion
        if sug.get("available"):
            st.info(f"Model's suggestion for the item you just labelled: score {sug['score']}")
    if wellbeing.break_due(protection, me.items_reviewed):
        st.warning(
            f"You have reviewed {me.items_reviewed} items in this session. Time for a break."
        )
        if st.button("I have had a break"):
            with tx() as s:
                reset_exposure(s, me.session_id)
            st.rerun()
        return

    if item is None:
        st.success("Nothing left to review in this project right now.")
        st.button(UNDO, on_click=_undo, args=(project_name,))
        st.button("Check again")
        shortcuts.install({"u": "(u)"}, SUBMIT)
        return

    form = item.idempotency_key
    media = bool({"audio", "video"} & set(item.modalities))
    _init_widgets(form, item)
    save = (project_name, item, media)

    left, right = st.columns([3, 2])
    with left:
        if item.supersedes_label_id is not None:
            st.warning("Correcting your earlier label of this item (undo).")
        st.text(f"Item {item.external_id}")  # an id is data: never Markdown
        _show_content(item, protection)
        if item.flagged_affected:
            st.caption("You marked this item as affecting you.")
        else:
            st.button("This affected me", on_click=_flag, args=(project_name, item.item_id))

    with right:
        st.radio(
            "Decision", DECISIONS, format_func=DECISION_LABELS.__getitem__, index=None,
            key=_k(form, "decision"), on_change=_save, args=save,
        )  # fmt: skip
        st.markdown(f"**Policies** (taxonomy v{item.policy_version})")
        key_map = dict(DECISION_KEYS)
        # Two columns of policies: the whole form and its Submit fit a 1366×768 screen.
        policy_cols = st.columns(2, gap="small")
        for n, p in enumerate(item.policies, start=1):
            hint = f" ({n})" if n <= 9 else ""
            if n <= 9:
                key_map[str(n)] = f"({n})"
            # Labels and help texts render Markdown; codes, titles and guidelines come from an
            # uploaded taxonomy.
            # The code and its key fit the column; the title and guideline are in the help.
            policy_cols[(n - 1) % 2].checkbox(
                escape_markdown(p.code) + hint,
                key=_k(form, f"policy-{p.code}"), on_change=_save, args=save,
                help=escape_markdown(f"{p.title}: {p.guideline}"),
            )  # fmt: skip
        with st.expander("Guidelines"):
            for p in item.policies:
                st.text(f"{p.code}: {p.title}\n{p.guideline}")
        sev_col, conf_col = st.columns(2, gap="small")
        sev_col.radio(
            "Severity", SEVERITIES, format_func=lambda v: "none" if v is None else str(v),
            horizontal=True, key=_k(form, "severity"), on_change=_save, args=save,
        )  # fmt: skip
        conf_col.radio(
            "Confidence", CONFIDENCES, format_func=lambda v: "unset" if v is None else f"{v:g}",
            horizontal=True, key=_k(form, "confidence"), on_change=_save, args=save,
        )  # fmt: skip
        st.text_area(
            "Rationale (required when violating; r to type, Esc to leave)",
            key=_k(form, "rationale"), on_change=_save, args=save, height=68,
        )  # fmt: skip
        st.text_input(
            "Spans (" + ("seconds" if media else "characters") + ", e.g. 12-30, 40-52)",
            key=_k(form, "spans"), on_change=_save, args=save,
        )  # fmt: skip
        # One row, each button as wide as its words, kept on screen by _COMPACT_CSS.
        with st.container(key="wb-actions", horizontal=True, gap="small"):
            st.button(SUBMIT, type="primary", on_click=_submit, args=save, key=_k(form, "submit"))
            st.button(
                "Cancel correction" if item.supersedes_label_id else "Skip",
                on_click=_skip, args=(project_name, item), key=_k(form, "skip"),
            )  # fmt: skip
            st.button(UNDO, on_click=_undo, args=(project_name,), key=_k(form, "undo"))
        st.text_input("Skip reason (optional)", key=_k(form, "skip_reason"))
        key_map["u"] = "(u)"
        key_map["r"] = "@rationale"
        shortcuts.install(key_map, SUBMIT)
        if item.lease_expires_at is not None:
            st.caption(f"Lease held until {item.lease_expires_at:%H:%M:%S} UTC")
