"""The figures of the lead's agreement dashboard as pandas DataFrames, and Altair (Vega-Lite)
charts over them: alpha by ISO week and by policy with intervals and n, the reviewer ×
reviewer Cohen's kappa matrix with the items each pair shares, and confusion matrices between
reviewers.

Everything comes from one load of the counted labels (`agreement.load_counted_labels`) and the
same figure code as `workbench agreement`, so the page and the command line never disagree.
Charts carry user text (reviewer names, policy codes) only as data, which Vega draws as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from workbench.db.models import Project, Role
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.membership import require_project_role
from workbench.services.quality.agreement import (
    LABEL_COLUMNS,
    AgreementField,
    agreement_from_frame,
    field_values,
    load_counted_labels,
    parse_field,
)

SLICE_COLUMNS = [
    "alpha",
    "alpha_low",
    "alpha_high",
    "percent_agreement",
    "n_items",
    "n_labels",
    "n_reviewers",
]


def slice_frame(slices: dict[str, dict[str, Any]], name: str) -> pd.DataFrame:
    """One row per slice value (sorted), alpha with its interval and the n it rests on."""
    rows = []
    for value, fig in sorted(slices.items()):
        ci = fig.get("krippendorff_alpha_ci") or [None, None]
        rows.append(
            {
                name: value,
                "alpha": fig["krippendorff_alpha"],
                "alpha_low": ci[0],
                "alpha_high": ci[1],
                "percent_agreement": fig["percent_agreement"],
                "n_items": fig["n_items"],
                "n_labels": fig["n_labels"],
                "n_reviewers": fig["n_reviewers"],
            }
        )
    frame = pd.DataFrame(rows, columns=[name, *SLICE_COLUMNS])
    for column in ("alpha", "alpha_low", "alpha_high", "percent_agreement"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def kappa_frames(cohen: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Cohen's kappa, shared items) as square reviewer × reviewer frames; kappa NaN where a
    pair shares no item or kappa is undefined (both always gave one category)."""
    names = list(cohen["reviewers"])
    kappa = pd.DataFrame(
        np.array(
            [[np.nan if v is None else float(v) for v in row] for row in cohen["matrix"]],
            dtype=float,
        ).reshape(len(names), len(names)),
        index=names,
        columns=names,
    )
    shared = pd.DataFrame(
        np.array(cohen["n_items"], dtype=np.int64).reshape(len(names), len(names)),
        index=names,
        columns=names,
    )
    return kappa, shared


def kappa_long(kappa: pd.DataFrame, shared: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of different reviewers who share at least one item, each pair once
    (kappa is symmetric), in the matrix's order."""
    names = list(kappa.index)
    rows = [
        {
            "reviewer_a": a,
            "reviewer_b": b,
            "kappa": None if np.isnan(kappa.loc[a, b]) else float(kappa.loc[a, b]),
            "n_items": int(shared.loc[a, b]),
        }
        for n, a in enumerate(names)
        for b in names[n + 1 :]
        if shared.loc[a, b] > 0
    ]
    return pd.DataFrame(rows, columns=["reviewer_a", "reviewer_b", "kappa", "n_items"])


@dataclass(frozen=True)
class ReviewerConfusion:
    """Counts of (category of A, category of B) over label pairs on the same item.

    For two reviewers: rows are A's labels, columns B's, one pair per shared item. Pooled over
    all reviewer pairs (`reviewer_a` None): every pair of labels on an item is counted in both
    orders, so the matrix is symmetric and sums to twice `n_pairs`.
    """

    matrix: pd.DataFrame
    reviewer_a: str | None
    reviewer_b: str | None
    n_items: int
    n_pairs: int

    def long(self) -> pd.DataFrame:
        frame = self.matrix.rename_axis(index="label_a", columns="label_b").stack()
        return frame.rename("count").reset_index()


def confusion_from_frame(
    labels: pd.DataFrame,
    field: AgreementField | str,
    categories: list[str],
    reviewer_a: str | None = None,
    reviewer_b: str | None = None,
) -> ReviewerConfusion:
    """The confusion matrix of two reviewers on their shared items, or pooled over all pairs.

    `labels` is a counted-label frame (one row per item and reviewer); labels without a value
    for the field (no policy code, no severity) are left out, as in the agreement figures.
    """
    field = parse_field(field)
    if (reviewer_a is None) != (reviewer_b is None):
        raise WorkbenchError("name both reviewers, or neither for all pairs pooled")
    if reviewer_a is not None and reviewer_a == reviewer_b:
        raise WorkbenchError(f"pick two different reviewers, not {reviewer_a!r} twice")
    k = len(categories)
    index = {c: n for n, c in enumerate(categories)}
    frame = pd.DataFrame(
        {
            "item_id": labels["item_id"].to_numpy() if len(labels) else [],
            "reviewer": labels["reviewer"].astype(str).to_numpy() if len(labels) else [],
            "value": field_values(labels, field).map(index).to_numpy() if len(labels) else [],
        }
    ).dropna(subset=["value"])
    frame["value"] = frame["value"].astype(np.int64)
    counts = np.zeros((k, k), dtype=np.int64)
    if reviewer_a is not None:
        a = frame[frame["reviewer"] == reviewer_a].set_index("item_id")["value"]
        b = frame[frame["reviewer"] == reviewer_b].set_index("item_id")["value"]
        both = a.index.intersection(b.index)
        np.add.at(counts, (a.loc[both].to_numpy(), b.loc[both].to_numpy()), 1)
        n_items = n_pairs = len(both)
    else:
        pairs = frame.merge(frame, on="item_id", suffixes=("_a", "_b"))
        pairs = pairs[pairs["reviewer_a"] != pairs["reviewer_b"]]
        np.add.at(counts, (pairs["value_a"].to_numpy(), pairs["value_b"].to_numpy()), 1)
        n_items = int(pairs["item_id"].nunique())
        n_pairs = len(pairs) // 2
    matrix = pd.DataFrame(counts, index=list(categories), columns=list(categories))
    return ReviewerConfusion(matrix, reviewer_a, reviewer_b, int(n_items), int(n_pairs))


@dataclass(frozen=True)
class AgreementDashboard:
    """Everything the dashboard draws, each figure with the n it rests on."""

    project: str
    field: str
    categories: list[str]
    reviewers: list[str]
    overall: dict[str, Any]
    by_week: pd.DataFrame
    by_policy: pd.DataFrame
    kappa: pd.DataFrame  # reviewer × reviewer
    shared_items: pd.DataFrame  # reviewer × reviewer
    labels: pd.DataFrame  # the counted labels the figures rest on

    def kappa_pairs(self) -> pd.DataFrame:
        return kappa_long(self.kappa, self.shared_items)

    def confusion(
        self, reviewer_a: str | None = None, reviewer_b: str | None = None
    ) -> ReviewerConfusion:
        for name in (reviewer_a, reviewer_b):
            if name is not None and name not in self.reviewers:
                raise WorkbenchError(
                    f"no counted labels by reviewer {name!r} on field {self.field}"
                )
        return confusion_from_frame(
            self.labels, self.field, self.categories, reviewer_a, reviewer_b
        )


def dashboard_from_frame(
    labels: pd.DataFrame,
    project: str,
    field: AgreementField | str = AgreementField.decision,
    *,
    n_boot: int | None = None,
    seed: int = 0,
) -> AgreementDashboard:
    if labels.empty:
        labels = pd.DataFrame(columns=LABEL_COLUMNS)
    report = agreement_from_frame(labels, field, ["week", "policy"], n_boot=n_boot, seed=seed)
    kappa, shared = kappa_frames(report["cohen_kappa"])
    overall = {
        key: report[key]
        for key in (
            "krippendorff_alpha",
            "krippendorff_alpha_ci",
            "percent_agreement",
            "n_items",
            "n_labels",
            "n_items_total",
            "n_labels_total",
            "n_reviewers",
        )
    }
    return AgreementDashboard(
        project=project,
        field=report["field"],
        categories=list(report["categories"]),
        reviewers=list(report["cohen_kappa"]["reviewers"]),
        overall=overall,
        by_week=slice_frame(report["by"]["week"], "week"),
        by_policy=slice_frame(report["by"]["policy"], "policy"),
        kappa=kappa,
        shared_items=shared,
        labels=labels,
    )


def agreement_dashboard(
    session: Session,
    project: Project,
    actor: Actor,
    field: AgreementField | str = AgreementField.decision,
    *,
    n_boot: int | None = None,
    seed: int = 0,
    include_leads: bool = False,
) -> AgreementDashboard:
    """The dashboard's figures over the project's counted labels on one field (reviewers';
    leads' and admins' too with `include_leads`)."""
    require_project_role(
        session,
        actor,
        project,
        Role.lead,
        Role.engineer,
        Role.admin,
        action="see agreement figures",
    )
    labels = load_counted_labels(session, project, include_leads=include_leads)
    return dashboard_from_frame(labels, project.name, field, n_boot=n_boot, seed=seed)


# --- charts (Altair / Vega-Lite) ------------------------------------------------------------


MIN_TREND_POINTS = 2


def trend_points(by_week: pd.DataFrame) -> int:
    """Weeks with an alpha: a trend needs at least MIN_TREND_POINTS of them to be drawn."""
    return int(by_week["alpha"].notna().sum()) if "alpha" in by_week else 0


def alpha_over_time_chart(by_week: pd.DataFrame) -> Any:
    """Alpha per ISO week with its bootstrap interval; the tooltip gives the n."""
    import altair as alt

    data = by_week.dropna(subset=["alpha"])
    base = alt.Chart(data).encode(x=alt.X("week:O", title="ISO week", sort=None))
    band = base.mark_errorbar().encode(
        y=alt.Y("alpha_low:Q", title="Krippendorff's alpha"), y2="alpha_high:Q"
    )
    line = base.mark_line(point=True).encode(
        y=alt.Y("alpha:Q", scale=alt.Scale(domain=[-1, 1])),
        tooltip=["week:O", alt.Tooltip("alpha:Q", format=".3f"), "n_items:Q", "n_labels:Q"],
    )
    return (band + line).properties(height=260)


def alpha_by_policy_chart(by_policy: pd.DataFrame) -> Any:
    """Alpha per policy (the item's majority primary policy) with its interval and n."""
    import altair as alt

    data = by_policy.dropna(subset=["alpha"])
    # Every policy's name in full (no label limit), one 32 px row each.
    base = alt.Chart(data).encode(
        y=alt.Y("policy:N", title="policy", sort="-x", axis=alt.Axis(labelLimit=0))
    )
    alpha_axis = alt.X("alpha:Q", title="Krippendorff's alpha", scale=alt.Scale(domain=[-1, 1]))
    bars = base.mark_bar().encode(
        x=alpha_axis,
        tooltip=["policy:N", alt.Tooltip("alpha:Q", format=".3f"), "n_items:Q", "n_labels:Q"],
    )
    # The interval shares the bars' axis and its name (not "alpha_low, alpha_high").
    errors = base.mark_errorbar().encode(
        x=alt.X("alpha_low:Q", title="Krippendorff's alpha"), x2="alpha_high:Q"
    )
    return (bars + errors).properties(height=policy_chart_height(len(data)))


def policy_chart_height(n_policies: int) -> int:
    return 32 * max(n_policies, 1) + 10


def kappa_heatmap_chart(pairs: pd.DataFrame) -> Any:
    """Reviewer × reviewer Cohen's kappa (red −1 to green 1); the tooltip gives the shared items."""
    import altair as alt

    # Each pair is listed once; the heatmap shows it on both sides of the diagonal.
    mirrored = pairs.rename(columns={"reviewer_a": "reviewer_b", "reviewer_b": "reviewer_a"})
    pairs = pd.concat([pairs, mirrored[pairs.columns]], ignore_index=True)
    base = alt.Chart(pairs).encode(
        x=alt.X("reviewer_b:N", title=None), y=alt.Y("reviewer_a:N", title=None)
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "kappa:Q", scale=alt.Scale(scheme="redyellowgreen", domain=[-1, 1]), title="kappa"
        ),
        tooltip=[
            "reviewer_a:N",
            "reviewer_b:N",
            alt.Tooltip("kappa:Q", format=".2f"),
            "n_items:Q",
        ],
    )
    text = base.mark_text(fontSize=11).encode(text=alt.Text("kappa:Q", format=".2f"))
    side = max(200, 36 * pairs["reviewer_a"].nunique())
    return (cells + text).properties(width=side, height=side)


def confusion_chart(confusion: ReviewerConfusion) -> Any:
    """Counts of (A's label, B's label); the diagonal is agreement."""
    import altair as alt

    data = confusion.long()
    title_a = confusion.reviewer_a or "one reviewer"
    title_b = confusion.reviewer_b or "another reviewer"
    base = alt.Chart(data).encode(
        x=alt.X("label_b:N", title=title_b, sort=list(confusion.matrix.columns)),
        y=alt.Y("label_a:N", title=title_a, sort=list(confusion.matrix.index)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")),
        tooltip=["label_a:N", "label_b:N", "count:Q"],
    )
    text = base.mark_text(fontSize=12).encode(text="count:Q")
    side = max(200, 48 * len(confusion.matrix))
    return (cells + text).properties(width=side, height=side)
