"""Agreement between reviewers: Krippendorff's alpha, Fleiss' kappa, pairwise Cohen's kappa and
percent agreement, with item-bootstrap confidence intervals, overall and by slice.

The figures are pure functions over arrays (one row per label: item, reviewer, category code);
`agreement_report` loads the counted labels of a project and runs them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Literal

import krippendorff
import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from workbench.db.models import Decision, Item, Label, Project, Role, User
from workbench.errors import WorkbenchError
from workbench.services.labels.current import HUMAN_SOURCES, is_current

Level = Literal["nominal", "ordinal"]


class AgreementField(StrEnum):
    """What a label is compared on."""

    decision = "decision"  # violating / not_violating / unsure
    policy = "policy"  # the primary (first) policy code
    severity = "severity"  # 1..4, ordinal


class SliceDimension(StrEnum):
    """How figures can be broken down (`--by`)."""

    policy = "policy"  # the item's majority primary policy
    reviewer = "reviewer"  # the items a reviewer labelled (all labels on them)
    language = "language"  # Item.language
    modality = "modality"  # each modality in Item.modalities (an item can be in several)
    week = "week"  # ISO week of the label's created_at


FIELD_LEVEL: dict[AgreementField, Level] = {
    AgreementField.decision: "nominal",
    AgreementField.policy: "nominal",
    AgreementField.severity: "ordinal",
}
SEVERITY_LEVELS = ("1", "2", "3", "4")
NO_POLICY = "(none)"
UNKNOWN = "unknown"
COUNTED_LABELS = (
    "current (not superseded), made by people (human or import, not propagated), "
    "by users whose role is reviewer, the latest per reviewer and item"
)
COUNTED_LABELS_WITH_LEADS = COUNTED_LABELS.replace(
    "whose role is reviewer", "whose role is reviewer, lead or admin"
)


# --- count matrices and the figures computed from them -------------------------------------


def count_matrix(units: np.ndarray, values: np.ndarray, n_categories: int) -> np.ndarray:
    """Units × categories matrix: how many labels of unit u gave category c.

    `units` are dense codes 0..U-1 and `values` category codes 0..K-1, one entry per label.
    """
    units = np.asarray(units, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    n_units = int(units.max()) + 1 if units.size else 0
    flat = np.bincount(units * n_categories + values, minlength=n_units * n_categories)
    return flat.reshape(n_units, n_categories)


def disagreement_matrix(marginals: np.ndarray, level: Level) -> np.ndarray:
    """Krippendorff's squared difference δ²(c, k) for one (K) or many (B×K) marginal vectors.

    Nominal: 1 when c ≠ k. Ordinal: (Σ_{g=c..k} n_g − (n_c + n_k)/2)², which depends on how
    often each category was used (Krippendorff 2011, section E), hence the marginals.
    """
    n = np.asarray(marginals, dtype=np.float64)
    k = n.shape[-1]
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(k), (*n.shape[:-1], k, k)).copy()
    idx = np.arange(k)
    lo = np.minimum.outer(idx, idx)
    hi = np.maximum.outer(idx, idx)
    cumulative = np.cumsum(n, axis=-1)
    between = cumulative[..., hi] - cumulative[..., lo] + n[..., lo]
    delta: np.ndarray = (between - (n[..., :, None] + n[..., None, :]) / 2.0) ** 2
    return delta


def krippendorff_alpha(counts: np.ndarray, level: Level = "nominal") -> float | None:
    """Krippendorff's alpha of a units × categories count matrix, by the `krippendorff` library.

    Units with fewer than two labels are not pairable and do not count (missing data). None
    when nothing is pairable or every pairable label has the same value (alpha undefined).
    """
    counts = np.asarray(counts)
    counts = counts[counts.sum(axis=1) >= 2]
    if counts.shape[0] == 0 or counts.shape[1] < 2 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(krippendorff.alpha(value_counts=counts, level_of_measurement=level))
    return value if np.isfinite(value) else None


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa by statsmodels; every unit must have the same number of labels (≥ 2)."""
    counts = np.asarray(counts)
    if counts.shape[0] < 2:
        return None
    per_unit = counts.sum(axis=1)
    if per_unit[0] < 2 or np.any(per_unit != per_unit[0]):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of labels on every item")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statsmodels_fleiss_kappa(counts, method="fleiss"))
    return value if np.isfinite(value) else None


def percent_agreement(counts: np.ndarray) -> float | None:
    """Share of agreeing pairs among all pairable label pairs within items.

    Each item with m labels contributes m(m−1)/2 pairs, of which Σ_c n_c(n_c−1)/2 agree; the
    figure is total agreeing pairs over total pairs (so items with more labels weigh more).
    """
    counts = np.asarray(counts, dtype=np.float64)
    m = counts.sum(axis=1)
    pairs = float((m * (m - 1)).sum() / 2)
    if pairs == 0:
        return None
    return float((counts * (counts - 1)).sum() / 2 / pairs)


def modal_labels_per_item(counts: np.ndarray) -> int | None:
    """The most common number of labels among pairable items (ties: the larger number)."""
    m = np.asarray(counts).sum(axis=1)
    m = m[m >= 2]
    if m.size == 0:
        return None
    sizes, freq = np.unique(m, return_counts=True)
    return int(sizes[np.flatnonzero(freq == freq.max())[-1]])


# The bootstrap resamples items. Every figure is a function of sums over items of a few
# per-item quantities, so one resample is one weight vector and all of them one matrix product:
# no per-resample Python loop over items, which keeps a million labels within seconds.


def _unit_columns(
    counts: np.ndarray, level: Level, fleiss_m: int | None
) -> tuple[np.ndarray, dict[str, slice]]:
    counts = np.asarray(counts, dtype=np.float64)
    n_units, k = counts.shape
    m = counts.sum(axis=1)
    sum_sq = (counts**2).sum(axis=1)
    parts: list[tuple[str, np.ndarray]] = [("n", counts)]
    if level == "nominal":
        # Σ_{c≠k} n_uc n_uk / (m_u − 1): the unit's share of observed disagreement.
        parts.append(("do", ((m**2 - sum_sq) / (m - 1))[:, None]))
    else:
        # Ordinal δ² depends on the resample's marginals, so keep the whole coincidence matrix.
        outer = counts[:, :, None] * counts[:, None, :] / (m - 1)[:, None, None]
        parts.append(("do", outer.reshape(n_units, k * k)))
    parts.append(("agree", ((sum_sq - m) / 2)[:, None]))
    parts.append(("pairs", (m * (m - 1) / 2)[:, None]))
    f = (m == fleiss_m).astype(np.float64) if fleiss_m else np.zeros(n_units)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_unit = np.where(f > 0, (sum_sq - m) / (m * (m - 1)), 0.0)
    parts.append(("f", f[:, None]))
    parts.append(("fP", p_unit[:, None]))
    parts.append(("fn", counts * f[:, None]))
    layout: dict[str, slice] = {}
    start = 0
    for name, block in parts:
        layout[name] = slice(start, start + block.shape[1])
        start += block.shape[1]
    return np.hstack([b for _, b in parts]), layout


def _figures_from_sums(
    sums: np.ndarray, layout: dict[str, slice], level: Level, fleiss_m: int | None
) -> dict[str, np.ndarray]:
    """alpha, Fleiss' kappa and percent agreement for each row of summed unit columns."""
    n_c = sums[:, layout["n"]]
    n = n_c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if level == "nominal":
            observed = sums[:, layout["do"]][:, 0]
            expected = n**2 - (n_c**2).sum(axis=1)
        else:
            k = n_c.shape[1]
            delta = disagreement_matrix(n_c, level)
            coincidence = sums[:, layout["do"]].reshape(-1, k, k)
            observed = np.einsum("bck,bck->b", delta, coincidence)
            expected = np.einsum("bc,bck,bk->b", n_c, delta, n_c)
        alpha = np.where(expected > 0, 1.0 - (n - 1) * observed / expected, np.nan)
        percent = sums[:, layout["agree"]][:, 0] / sums[:, layout["pairs"]][:, 0]
        n_f = sums[:, layout["f"]][:, 0]
        p_bar = sums[:, layout["fP"]][:, 0] / n_f
        p_j = sums[:, layout["fn"]] / (n_f * (fleiss_m or 1))[:, None]
        p_e = (p_j**2).sum(axis=1)
        kappa = np.where((n_f >= 2) & (p_e < 1), (p_bar - p_e) / (1 - p_e), np.nan)
    return {"krippendorff_alpha": alpha, "fleiss_kappa": kappa, "percent_agreement": percent}


def fast_krippendorff_alpha(counts: np.ndarray, level: Level = "nominal") -> float | None:
    """Krippendorff's alpha from the per-item sums the bootstrap uses (tested against the
    `krippendorff` library); units with fewer than two labels are ignored."""
    counts = np.asarray(counts)
    counts = counts[counts.sum(axis=1) >= 2]
    if counts.shape[0] == 0:
        return None
    columns, layout = _unit_columns(counts, level, None)
    value = float(
        _figures_from_sums(columns.sum(axis=0)[None, :], layout, level, None)["krippendorff_alpha"][
            0
        ]
    )
    return value if np.isfinite(value) else None


def distinct_rows(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a count matrix and how often each occurs.

    Rows are packed into one integer (mixed radix) and hashed, because `np.unique(axis=0)`
    sorts a structured view and takes seconds on a few hundred thousand rows.
    """
    counts = np.asarray(counts, dtype=np.int64)
    base = int(counts.max()) + 1 if counts.size else 1
    if counts.shape[1] * np.log2(max(base, 2)) > 62:
        rows, frequency = np.unique(counts, axis=0, return_counts=True)
        return rows, frequency
    keys = counts @ (base ** np.arange(counts.shape[1], dtype=np.int64))
    codes, _ = pd.factorize(keys)
    first = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)
    return counts[first], np.bincount(codes)


def default_resamples(n_patterns: int) -> int:
    """1000 resamples unless the items have very many distinct count vectors, then fewer
    (such data is large, and its intervals narrow), so the bootstrap stays within seconds."""
    if n_patterns <= 20_000:
        return 1000
    return max(200, 20_000_000 // n_patterns)


def bootstrap_figures(
    counts: np.ndarray,
    level: Level,
    fleiss_m: int | None,
    *,
    n_boot: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], int]:
    """Each figure on `n_boot` (default: `default_resamples`) resamples of the pairable items.

    Items with the same count vector contribute the same sums, so the items are grouped into
    their distinct count vectors first: drawing U items uniformly with replacement is drawing
    a multinomial over those groups with their frequencies, which is exact and makes the cost
    depend on the number of distinct vectors (dozens for a few labels per item), not on U.
    """
    counts = np.asarray(counts)
    counts = counts[counts.sum(axis=1) >= 2]
    n_units = counts.shape[0]
    names = ("krippendorff_alpha", "fleiss_kappa", "percent_agreement")
    if n_units == 0:
        return {name: np.empty(0) for name in names}, n_boot or 0
    patterns, frequency = distinct_rows(counts)
    if n_boot is None:
        n_boot = default_resamples(patterns.shape[0])
    columns, layout = _unit_columns(patterns, level, fleiss_m)
    rng = np.random.default_rng(seed)
    # Bounded memory: a chunk of resamples' weights is at most ~4M cells.
    chunk = max(1, min(n_boot, 4_000_000 // patterns.shape[0]))
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        weights = rng.multinomial(n_units, frequency / n_units, size=b)
        sums = weights.astype(np.float64) @ columns
        for name, values in _figures_from_sums(sums, layout, level, fleiss_m).items():
            out[name].append(values)
    if n_boot <= 0:
        return {name: np.empty(0) for name in names}, 0
    return {name: np.concatenate(parts) for name, parts in out.items()}, n_boot


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval over the resamples where the figure is defined."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


# --- pairwise (reviewer × reviewer) ---------------------------------------------------------


def within_item_pairs(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j), i before j, of every pair of labels on the same unit."""
    units = np.asarray(units)
    if units.size and np.all(units[1:] >= units[:-1]):
        order = np.arange(units.size)  # already grouped (the common case): no sort needed
    else:
        order = np.argsort(units, kind="stable")
    sorted_units = units[order]
    n = sorted_units.size
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_units[1:] != sorted_units[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    partners = np.repeat(sizes, sizes) - 1 - rank
    left = np.repeat(np.arange(n), partners)
    offsets = np.arange(left.size) - np.repeat(np.cumsum(partners) - partners, partners) + 1
    return order[left], order[left + offsets]


def cohen_kappa_from_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of each K×K contingency table (P×K×K); NaN where undefined."""
    tables = np.asarray(tables, dtype=np.float64)
    n = tables.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.trace(tables, axis1=1, axis2=2) / n
        expected = (tables.sum(axis=2) * tables.sum(axis=1)).sum(axis=1) / n**2
        kappa: np.ndarray = np.where(
            (n > 0) & (expected < 1 - 1e-12), (observed - expected) / (1 - expected), np.nan
        )
    return kappa


def pairwise_agreement(
    units: np.ndarray, reviewers: np.ndarray, values: np.ndarray, n_reviewers: int, k: int
) -> dict[str, np.ndarray]:
    """Reviewer × reviewer matrices: Cohen's kappa, shared items, agreeing items.

    One contingency table per pair of reviewers who share an item, built for all pairs at
    once (sklearn's `cohen_kappa_score` per pair would be thousands of calls); each reviewer
    has at most one label per unit. Tested against `cohen_kappa_score`.
    """
    reviewers = np.asarray(reviewers, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    i, j = within_item_pairs(units)
    ra, rb, va, vb = reviewers[i], reviewers[j], values[i], values[j]
    if np.any(ra == rb):
        raise ValueError("a reviewer has two labels on one item; keep only the latest")
    swap = ra > rb
    ra, rb = np.where(swap, rb, ra), np.where(swap, ra, rb)
    va, vb = np.where(swap, vb, va), np.where(swap, va, vb)
    pair_index, pair_codes = pd.factorize(ra * n_reviewers + rb)
    tables = np.bincount(
        pair_index * k * k + va * k + vb, minlength=pair_codes.size * k * k
    ).reshape(-1, k, k)
    kappa = np.full((n_reviewers, n_reviewers), np.nan)
    shared = np.zeros((n_reviewers, n_reviewers), dtype=np.int64)
    agree = np.zeros((n_reviewers, n_reviewers), dtype=np.int64)
    a, b = pair_codes // n_reviewers, pair_codes % n_reviewers
    kappa[a, b] = kappa[b, a] = cohen_kappa_from_tables(tables)
    shared[a, b] = shared[b, a] = tables.sum(axis=(1, 2))
    agree[a, b] = agree[b, a] = np.trace(tables, axis1=1, axis2=2)
    return {"kappa": kappa, "shared": shared, "agree": agree}


# --- one slice of labels ---------------------------------------------------------------------


def _number(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _matrix(values: np.ndarray) -> list[list[float | None]]:
    cells = values.astype(object)
    cells[~np.isfinite(values)] = None
    matrix: list[list[float | None]] = cells.tolist()
    return matrix


def agreement_figures(
    units: np.ndarray,
    reviewers: np.ndarray,
    values: np.ndarray,
    *,
    categories: Sequence[str],
    reviewer_names: Sequence[str],
    level: Level = "nominal",
    n_boot: int | None = None,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Every agreement figure for one set of labels, with the items and labels each rests on.

    One entry per label: `units` any integer item ids, `reviewers` codes into
    `reviewer_names`, `values` codes into `categories` (missing values already dropped), at
    most one label per reviewer and item. alpha and percent agreement rest on the pairable
    items (≥ 2 labels: `n_items`, `n_labels`); Fleiss' kappa on the pairable items with the
    most common number of labels (`fleiss_n_items`, null below two); Cohen's kappa on each
    pair's shared items (`cohen_kappa.n_items`). Intervals: percentile bootstrap over items.
    """
    units = np.asarray(units)
    k = len(categories)
    n_reviewers = len(reviewer_names)
    dense_units = pd.factorize(units)[0] if units.size else units.astype(np.int64)
    counts_all = count_matrix(dense_units, values, k)
    per_item = counts_all.sum(axis=1)
    pairable = per_item >= 2
    counts = counts_all[pairable]
    fleiss_m = modal_labels_per_item(counts)
    fleiss_rows = counts[counts.sum(axis=1) == fleiss_m] if fleiss_m else counts[:0]
    boot, resamples = bootstrap_figures(counts, level, fleiss_m, n_boot=n_boot, seed=seed)
    pairs = pairwise_agreement(dense_units, reviewers, values, n_reviewers, k)
    fleiss_value = fleiss_kappa(fleiss_rows) if fleiss_rows.shape[0] >= 2 else None
    n_pairs = int((per_item * (per_item - 1) // 2).sum())
    result: dict[str, Any] = {
        "krippendorff_alpha": krippendorff_alpha(counts, level),
        "krippendorff_alpha_ci": percentile_interval(boot["krippendorff_alpha"], confidence),
        "fleiss_kappa": fleiss_value,
        "fleiss_kappa_ci": (
            percentile_interval(boot["fleiss_kappa"], confidence)
            if fleiss_value is not None
            else None
        ),
        "fleiss_n_items": int(fleiss_rows.shape[0]),
        "fleiss_labels_per_item": fleiss_m,
        "percent_agreement": percent_agreement(counts),
        "percent_agreement_ci": percentile_interval(boot["percent_agreement"], confidence),
        "n_pairs": n_pairs,
        "n_items": int(pairable.sum()),
        "n_labels": int(per_item[pairable].sum()),
        "n_items_total": int(counts_all.shape[0]),
        "n_labels_total": int(per_item.sum()),
        "n_reviewers": int(np.unique(reviewers).size),
        "cohen_kappa": {
            "reviewers": list(reviewer_names),
            "matrix": _matrix(pairs["kappa"]),
            "n_items": pairs["shared"].tolist(),
        },
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence},
    }
    result["_pairs"] = pairs  # used by the reviewer slices, removed before returning JSON
    return result


# --- labels as a frame, slices ---------------------------------------------------------------


def _categories(labels: pd.DataFrame, field: AgreementField) -> list[str]:
    if field is AgreementField.decision:
        return [d.value for d in Decision]
    if field is AgreementField.severity:
        return list(SEVERITY_LEVELS)
    return sorted(labels["primary_policy"].dropna().astype(str).unique())


def _encode(values: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Category code of each value, −1 for missing; factorize first (few distinct values)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    index = {c: n for n, c in enumerate(categories)}
    lookup = np.array([index.get(str(u), -1) for u in uniques] + [-1], dtype=np.int64)
    return lookup[codes]


def field_values(labels: pd.DataFrame, field: AgreementField) -> pd.Series:
    if field is AgreementField.decision:
        return labels["decision"].astype("string")
    if field is AgreementField.severity:
        sev = pd.to_numeric(labels["severity"], errors="coerce")
        return sev.map(lambda v: None if pd.isna(v) else str(int(v))).astype("string")
    return labels["primary_policy"].astype("string")


def majority_policy(labels: pd.DataFrame) -> pd.Series:
    """Each item's most frequent primary policy code (ties: alphabetical; none: "(none)")."""
    items = pd.Index(labels["item_id"].unique())
    with_code = labels.dropna(subset=["primary_policy"])
    votes = with_code.groupby(["item_id", "primary_policy"]).size().rename("n").reset_index()
    votes = votes.sort_values(["item_id", "n", "primary_policy"], ascending=[True, False, True])
    top = votes.drop_duplicates("item_id").set_index("item_id")["primary_policy"]
    return top.reindex(items).fillna(NO_POLICY)


def iso_week(timestamps: pd.Series) -> pd.Series:
    ts = pd.to_datetime(timestamps, utc=True)
    iso = ts.dt.isocalendar()
    return iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)


def agreement_from_frame(
    labels: pd.DataFrame,
    field: AgreementField | str = AgreementField.decision,
    by: Sequence[SliceDimension | str] = (),
    *,
    n_boot: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Agreement over counted labels given as a frame, overall and by the requested slices.

    Columns: `item_id`, `reviewer` and the field's column (`decision`, `primary_policy` or
    `severity`); slices also use `language`, `modalities` (list) and `created_at`. Labels
    without a value for the field (no policy code, no severity) are missing data.
    """
    field = parse_field(field)
    dimensions = [parse_dimension(d) for d in by]
    level = FIELD_LEVEL[field]
    categories = _categories(labels, field)
    codes = _encode(field_values(labels, field), categories)
    present = codes >= 0
    valid = labels.loc[present]
    value_codes = np.asarray(codes[present], dtype=np.int64)
    reviewer_codes, reviewer_names = pd.factorize(valid["reviewer"], sort=True)
    names = [str(n) for n in reviewer_names]
    item_ids = valid["item_id"].to_numpy()

    def figures(mask: np.ndarray | None) -> dict[str, Any]:
        if mask is None:
            u, r, v = item_ids, reviewer_codes, value_codes
        else:
            u, r, v = item_ids[mask], reviewer_codes[mask], value_codes[mask]
        local, local_names = pd.factorize(r, sort=True)
        return agreement_figures(
            u,
            local,
            v,
            categories=categories,
            reviewer_names=[names[int(x)] for x in local_names],
            level=level,
            n_boot=n_boot,
            seed=seed,
        )

    overall = figures(None)
    pairs = overall.pop("_pairs")
    report: dict[str, Any] = {
        "field": field.value,
        "level": level,
        "categories": categories,
        "counted_labels": COUNTED_LABELS,
        **overall,
    }
    if not dimensions:
        return report
    report["by"] = {}
    for dim in dimensions:
        slices: dict[str, Any] = {}
        for value, mask in _slices(labels, valid, present, dim):
            if not mask.any():
                continue
            fig = figures(mask)
            fig.pop("_pairs")
            if dim is SliceDimension.reviewer:
                fig.update(_reviewer_extras(value, names, pairs))
            slices[value] = fig
        report["by"][dim.value] = slices
    return report


def _reviewer_extras(name: str, names: list[str], pairs: dict[str, np.ndarray]) -> dict[str, Any]:
    r = names.index(name)
    shared = pairs["shared"][r]
    others = [o for o in range(len(names)) if o != r and shared[o] > 0]
    total = int(shared.sum())
    return {
        "cohen_kappa_with": {names[o]: _number(pairs["kappa"][r, o]) for o in others},
        "agreement_with_others": (float(pairs["agree"][r].sum()) / total) if total else None,
        "pairs_with_others": total,
    }


def _slices(
    labels: pd.DataFrame, valid: pd.DataFrame, present: np.ndarray, dim: SliceDimension
) -> list[tuple[str, np.ndarray]]:
    """(slice value, mask over the valid labels) for one dimension, values sorted."""
    items = valid["item_id"]
    out: list[tuple[str, np.ndarray]] = []
    if dim is SliceDimension.reviewer:
        for name in sorted(valid["reviewer"].astype(str).unique()):
            their_items = valid.loc[valid["reviewer"].astype(str) == name, "item_id"].unique()
            out.append((name, items.isin(their_items).to_numpy()))
        return out
    if dim is SliceDimension.week:
        weeks = iso_week(valid["created_at"]).to_numpy()
        return [(w, weeks == w) for w in sorted(set(weeks))]
    if dim is SliceDimension.policy:
        # Sliced on all counted labels of the item, even those missing for the field.
        item_value = majority_policy(labels)
    elif dim is SliceDimension.language:
        item_value = (
            labels.drop_duplicates("item_id").set_index("item_id")["language"].fillna(UNKNOWN)
        )
    else:
        per_item = labels.drop_duplicates("item_id").set_index("item_id")["modalities"]
        exploded = per_item.map(lambda m: list(m) if m else [UNKNOWN]).explode()
        for modality in sorted(exploded.astype(str).unique()):
            its = exploded.index[exploded.astype(str) == modality]
            out.append((modality, items.isin(its).to_numpy()))
        return out
    mapped = items.map(item_value).astype(str).to_numpy()
    return [(v, mapped == v) for v in sorted(set(mapped))]


def parse_field(field: AgreementField | str) -> AgreementField:
    try:
        return AgreementField(field)
    except ValueError:
        expected = ", ".join(f.value for f in AgreementField)
        raise WorkbenchError(f"unknown field {field!r}: expected one of {expected}") from None


def parse_dimension(dim: SliceDimension | str) -> SliceDimension:
    try:
        return SliceDimension(dim)
    except ValueError:
        expected = ", ".join(d.value for d in SliceDimension)
        raise WorkbenchError(f"unknown --by {dim!r}: expected one of {expected}") from None


# --- the database side -----------------------------------------------------------------------


LABEL_COLUMNS = [
    "label_id",
    "item_id",
    "external_id",
    "reviewer",
    "decision",
    "primary_policy",
    "severity",
    "created_at",
    "language",
    "modalities",
]


def counted_roles(include_leads: bool = False) -> tuple[Role, ...]:
    """Whose labels count: reviewers'; leads' and admins' too only when a lead asks.

    Why: leads and admins also review, but they see the read-outs of other people's labels, so
    their labels are not the independent judgements agreement and aggregation assume.
    """
    return (Role.reviewer, Role.lead, Role.admin) if include_leads else (Role.reviewer,)


def load_counted_labels(
    session: Session, project: Project, *, include_leads: bool = False
) -> pd.DataFrame:
    """The labels agreement and aggregation count: one row per (item, reviewer).

    Current (no label supersedes it), made by people (source human or import; propagated
    copies are never a judgement), by users of a role in `counted_roles` (reviewers, unless
    `include_leads`), and of several current labels by one reviewer on one item only the latest
    (created_at, then id).
    """
    rows = session.execute(
        select(
            Label.id,
            Label.item_id,
            Item.external_id,
            User.name,
            Label.decision,
            Label.policies,
            Label.severity,
            Label.created_at,
            Item.language,
            Item.modalities,
        )
        .join(User, User.id == Label.reviewer_id)
        .join(Item, Item.id == Label.item_id)
        .where(
            Label.project_id == project.id,
            Label.source.in_(HUMAN_SOURCES),
            User.role.in_(counted_roles(include_leads)),
            is_current(),
        )
    ).all()
    frame = pd.DataFrame(
        [
            (
                r[0],
                r[1],
                r[2],
                r[3],
                r[4].value if isinstance(r[4], Decision) else r[4],
                (r[5][0] if r[5] else None),
                r[6],
                r[7],
                r[8],
                list(r[9] or []),
            )
            for r in rows
        ],
        columns=LABEL_COLUMNS,
    )
    if frame.empty:
        return frame
    frame = frame.sort_values(["created_at", "label_id"], kind="stable")
    frame = frame.drop_duplicates(["item_id", "reviewer"], keep="last")
    return frame.sort_values("label_id", kind="stable").reset_index(drop=True)


def agreement_report(
    session: Session,
    project: Project,
    field: AgreementField | str = AgreementField.decision,
    by: Sequence[SliceDimension | str] = (),
    *,
    n_boot: int | None = None,
    seed: int = 0,
    include_leads: bool = False,
) -> dict[str, Any]:
    """Agreement of a project's counted labels on one field, overall and by slice (reviewers'
    labels; leads' and admins' too with `include_leads`)."""
    field = parse_field(field)
    dims = [parse_dimension(d) for d in by]
    labels = load_counted_labels(session, project, include_leads=include_leads)
    if labels.empty:
        labels = pd.DataFrame(columns=LABEL_COLUMNS)
    report = agreement_from_frame(labels, field, dims, n_boot=n_boot, seed=seed)
    if include_leads:
        report["counted_labels"] = COUNTED_LABELS_WITH_LEADS
    return {"project": project.name, **report}
