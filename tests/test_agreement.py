"""Agreement figures: published worked examples, the fast paths against the libraries, and the
counted-label rules and CLI output on SQLite and Postgres."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import krippendorff as krippendorff_lib
import numpy as np
import pytest
from conftest import CLI
from sklearn.metrics import cohen_kappa_score
from sqlalchemy.orm import Session
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from workbench.db.database import Database
from workbench.db.models import Decision, Item, Label, LabelSource, Project, Role, User
from workbench.services.audit import Actor
from workbench.services.projects import create_project
from workbench.services.quality import agreement as ag
from workbench.services.taxonomy import current_policy_version

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, values 1-5, None = the observer did not code the unit.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]

# Fleiss (1971), Table 1 (also R irr's `diagnoses`): 30 patients, 6 psychiatrists each, counts
# of depression, personality disorder, schizophrenia, neurosis, other.
FLEISS_1971 = [
    [0, 0, 0, 6, 0], [0, 3, 0, 0, 3], [0, 1, 4, 0, 1], [0, 0, 0, 0, 6], [0, 3, 0, 3, 0],
    [2, 0, 4, 0, 0], [0, 0, 4, 0, 2], [2, 0, 3, 1, 0], [2, 0, 0, 4, 0], [0, 0, 0, 0, 6],
    [1, 0, 0, 5, 0], [1, 1, 0, 4, 0], [0, 3, 3, 0, 0], [1, 0, 0, 5, 0], [0, 2, 0, 3, 1],
    [0, 0, 5, 0, 1], [3, 0, 0, 1, 2], [5, 1, 0, 0, 0], [0, 2, 0, 4, 0], [1, 0, 2, 0, 3],
    [0, 0, 0, 0, 6], [0, 1, 0, 5, 0], [0, 2, 0, 1, 3], [2, 0, 0, 4, 0], [1, 0, 0, 4, 1],
    [0, 5, 0, 1, 0], [4, 0, 0, 0, 2], [0, 2, 0, 4, 0], [1, 0, 5, 0, 0], [0, 0, 0, 0, 6],
]  # fmt: skip


def _krippendorff_2011_counts() -> np.ndarray:
    counts = np.zeros((12, 5), dtype=np.int64)
    for observer in KRIPPENDORFF_2011:
        for unit, value in enumerate(observer):
            if value is not None:
                counts[unit, value - 1] += 1
    return counts


def _cohen_example() -> tuple[list[str], list[str]]:
    # 50 items: yes/yes 20, no/no 15, yes/no 5, no/yes 10.
    a = ["yes"] * 20 + ["no"] * 15 + ["yes"] * 5 + ["no"] * 10
    b = ["yes"] * 20 + ["no"] * 15 + ["no"] * 5 + ["yes"] * 10
    return a, b


# --- worked examples --------------------------------------------------------------------------


def test_krippendorff_2011_nominal_example_with_missing_values_gives_0_743() -> None:
    counts = _krippendorff_2011_counts()
    assert round(ag.krippendorff_alpha(counts, "nominal") or 0, 3) == 0.743
    assert round(ag.fast_krippendorff_alpha(counts, "nominal") or 0, 3) == 0.743
    # The same paper's ordinal figure for the same data.
    assert round(ag.fast_krippendorff_alpha(counts, "ordinal") or 0, 3) == 0.815


def test_krippendorff_2011_example_through_label_rows_gives_0_743() -> None:
    units, reviewers, values = [], [], []
    for observer, row in enumerate(KRIPPENDORFF_2011):
        for unit, value in enumerate(row):
            if value is not None:
                units.append(unit)
                reviewers.append(observer)
                values.append(value - 1)
    fig = ag.agreement_figures(
        np.array(units),
        np.array(reviewers),
        np.array(values),
        categories=["1", "2", "3", "4", "5"],
        reviewer_names=["A", "B", "C", "D"],
        n_boot=200,
    )
    assert round(fig["krippendorff_alpha"], 3) == 0.743
    # Unit 12 has one value only: not pairable, so 11 items and 40 of 41 values count.
    assert (fig["n_items"], fig["n_labels"], fig["n_labels_total"]) == (11, 40, 41)


def test_fleiss_1971_table_gives_0_430() -> None:
    counts = np.array(FLEISS_1971)
    assert round(ag.fleiss_kappa(counts) or 0, 3) == 0.430
    columns, layout = ag._unit_columns(counts, "nominal", 6)
    fast = ag._figures_from_sums(columns.sum(axis=0)[None, :], layout, "nominal", 6)
    assert round(float(fast["fleiss_kappa"][0]), 3) == 0.430


def test_cohen_two_by_two_example_gives_0_40() -> None:
    a, b = _cohen_example()
    table = np.zeros((1, 2, 2))
    for x, y in zip(a, b, strict=True):
        table[0, int(x == "no"), int(y == "no")] += 1
    assert round(float(ag.cohen_kappa_from_tables(table)[0]), 2) == 0.40
    codes = {"yes": 0, "no": 1}
    units = np.r_[np.arange(50), np.arange(50)]
    reviewers = np.r_[np.zeros(50, int), np.ones(50, int)]
    values = np.array([codes[v] for v in a + b])
    pairs = ag.pairwise_agreement(units, reviewers, values, 2, 2)
    assert round(float(pairs["kappa"][0, 1]), 2) == 0.40
    assert pairs["shared"][0, 1] == 50 and pairs["agree"][0, 1] == 35


# --- our fast paths against the libraries ------------------------------------------------------


@pytest.mark.parametrize("level", ["nominal", "ordinal"])
def test_fast_alpha_matches_krippendorff_library_on_random_data(level: ag.Level) -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        k = int(rng.integers(2, 6))
        counts = rng.integers(0, 4, size=(int(rng.integers(3, 80)), k))
        expected = krippendorff_lib.alpha(value_counts=counts, level_of_measurement=level)
        assert ag.fast_krippendorff_alpha(counts, level) == pytest.approx(expected, abs=1e-9)


def test_fast_fleiss_matches_statsmodels_on_random_data() -> None:
    rng = np.random.default_rng(3)
    for m in (2, 3, 5):
        votes = rng.integers(0, 4, size=(60, m))
        counts = np.stack([(votes == c).sum(axis=1) for c in range(4)], axis=1)
        columns, layout = ag._unit_columns(counts, "nominal", m)
        fast = ag._figures_from_sums(columns.sum(axis=0)[None, :], layout, "nominal", m)
        assert float(fast["fleiss_kappa"][0]) == pytest.approx(statsmodels_fleiss(counts))


def test_pairwise_kappa_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(11)
    units = np.repeat(np.arange(150), 3)
    reviewers = np.concatenate([rng.permutation(6)[:3] for _ in range(150)])
    values = rng.integers(0, 3, units.size)
    pairs = ag.pairwise_agreement(units, reviewers, values, 6, 3)
    by_reviewer: dict[int, dict[int, int]] = {r: {} for r in range(6)}
    for u, r, v in zip(units, reviewers, values, strict=True):
        by_reviewer[int(r)][int(u)] = int(v)
    for a in range(6):
        for b in range(a + 1, 6):
            shared = sorted(set(by_reviewer[a]) & set(by_reviewer[b]))
            expected = cohen_kappa_score(
                [by_reviewer[a][u] for u in shared], [by_reviewer[b][u] for u in shared]
            )
            assert pairs["kappa"][a, b] == pytest.approx(expected)
            assert pairs["kappa"][b, a] == pytest.approx(expected)
            assert pairs["shared"][a, b] == len(shared)


def test_distinct_rows_groups_like_numpy_unique() -> None:
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 3, size=(500, 4))
    rows, freq = ag.distinct_rows(counts)
    expected_rows, expected_freq = np.unique(counts, axis=0, return_counts=True)
    order = np.lexsort(rows.T[::-1])
    assert np.array_equal(rows[order], expected_rows)
    assert np.array_equal(freq[order], expected_freq)


def test_percent_agreement_is_agreeing_pairs_over_all_pairs() -> None:
    # [a, a, b]: 1 of 3 pairs agree; [a, a]: 1 of 1 -> 2 of 4.
    assert ag.percent_agreement(np.array([[2, 1], [2, 0], [1, 0]])) == pytest.approx(0.5)


def test_bootstrap_is_repeatable_and_brackets_the_estimate() -> None:
    counts = np.array(FLEISS_1971)
    first, n = ag.bootstrap_figures(counts, "nominal", 6, n_boot=500, seed=1)
    second, _ = ag.bootstrap_figures(counts, "nominal", 6, n_boot=500, seed=1)
    assert n == 500
    assert np.array_equal(first["fleiss_kappa"], second["fleiss_kappa"])
    low, high = ag.percentile_interval(first["fleiss_kappa"]) or [0.0, 0.0]
    assert low < 0.430 < high


def test_fleiss_is_null_when_fewer_than_two_items_share_the_modal_count() -> None:
    # One item with 2 labels, one with 3: the modal count (tie: larger) is 3, held by 1 item.
    fig = ag.agreement_figures(
        np.array([1, 1, 2, 2, 2]),
        np.array([0, 1, 0, 1, 2]),
        np.array([0, 0, 0, 1, 1]),
        categories=["a", "b"],
        reviewer_names=["r0", "r1", "r2"],
        n_boot=50,
    )
    assert fig["fleiss_kappa"] is None and fig["fleiss_kappa_ci"] is None
    assert fig["fleiss_n_items"] == 1 and fig["fleiss_labels_per_item"] == 3
    assert fig["krippendorff_alpha"] is not None


def test_unknown_field_is_a_clear_error() -> None:
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="expected one of decision, policy, severity"):
        ag.parse_field("colour")


# --- the database: which labels count --------------------------------------------------------


class LabelMaker:
    """Items, users and labels of one project, made with the ORM."""

    def __init__(self, session: Session, project: Project) -> None:
        self.s = session
        self.project = project
        self.pv = current_policy_version(session, project)
        self.users: dict[str, User] = {}
        self.items: dict[str, Item] = {}
        self.n = 0
        self.t0 = datetime(2026, 11, 2, 12, tzinfo=UTC)  # a Monday: ISO week 2026-W45

    def user(self, name: str) -> User:
        if name not in self.users:
            user = User(name=name, role=Role.reviewer, password_hash=None)
            self.s.add(user)
            self.s.flush()
            self.users[name] = user
        return self.users[name]

    def item(self, ext: str, *, language: str | None = "en", modalities: list[str] | None = None):  # type: ignore[no-untyped-def]
        if ext not in self.items:
            item = Item(
                project_id=self.project.id,
                external_id=ext,
                text=ext,
                language=language,
                modalities=modalities or ["text"],
                content_hash=hashlib.sha256(ext.encode()).hexdigest(),
            )
            self.s.add(item)
            self.s.flush()
            self.items[ext] = item
        return self.items[ext]

    def label(
        self,
        ext: str,
        reviewer: str,
        decision: str,
        *,
        policies: list[str] | None = None,
        severity: int | None = None,
        source: LabelSource = LabelSource.human,
        supersedes: Label | None = None,
        days: float = 0,
    ) -> Label:
        self.n += 1
        label = Label(
            project_id=self.project.id,
            item_id=self.item(ext).id,
            reviewer_id=self.user(reviewer).id,
            policy_version_id=self.pv.id,
            decision=Decision(decision),
            policies=policies if policies is not None else [],
            severity=severity,
            source=source,
            idempotency_key=f"k{self.n}",
            supersedes_id=supersedes.id if supersedes else None,
            created_at=self.t0 + timedelta(days=days, minutes=self.n),
        )
        self.s.add(label)
        self.s.flush()
        return label


@pytest.fixture
def maker(db: Database) -> Iterator[LabelMaker]:
    with db.sessions.begin() as s:
        project = create_project(s, "p", Actor.system())
        yield LabelMaker(s, project)


def test_counted_labels_are_current_human_and_latest_per_reviewer(maker: LabelMaker) -> None:
    v, n = "violating", "not_violating"
    old = maker.label("a", "ann", v)
    maker.label("a", "ann", n, supersedes=old)  # a correction: only it counts
    maker.label("a", "bob", v)
    maker.label("a", "bob", n, days=1)  # bob again, later, no supersedes: the later counts
    maker.label("a", "cat", v, source=LabelSource.propagated)  # never a judgement
    maker.label("a", "dan", v, source=LabelSource.import_)  # imported labels count
    frame = ag.load_counted_labels(maker.s, maker.project)
    got = sorted(zip(frame["reviewer"], frame["decision"], strict=True))
    assert got == [("ann", n), ("bob", n), ("dan", v)]


def test_report_excludes_superseded_and_propagated_labels(maker: LabelMaker) -> None:
    for ext in ("a", "b", "c"):
        maker.label(ext, "ann", "violating")
        wrong = maker.label(ext, "bob", "not_violating")
        maker.label(ext, "bob", "violating", supersedes=wrong)
        maker.label(ext, "cat", "not_violating", source=LabelSource.propagated)
    report = ag.agreement_report(maker.s, maker.project, "decision", n_boot=50)
    assert report["percent_agreement"] == 1.0
    assert (report["n_items"], report["n_labels"]) == (3, 6)
    assert report["cohen_kappa"]["reviewers"] == ["ann", "bob"]


def test_policy_field_compares_primary_codes_and_severity_is_ordinal(maker: LabelMaker) -> None:
    maker.label("a", "ann", "violating", policies=["hate", "spam"], severity=3)
    maker.label("a", "bob", "violating", policies=["hate"], severity=4)
    maker.label("b", "ann", "violating", policies=["spam"], severity=1)
    maker.label("b", "bob", "not_violating")  # no code, no severity: missing data
    maker.label("c", "ann", "violating", policies=["spam"], severity=2)
    maker.label("c", "bob", "violating", policies=["hate"], severity=2)
    policy = ag.agreement_report(maker.s, maker.project, "policy", n_boot=20)
    assert policy["categories"] == ["hate", "spam"]
    assert (policy["n_items"], policy["percent_agreement"]) == (2, 0.5)
    severity = ag.agreement_report(maker.s, maker.project, "severity", n_boot=20)
    assert severity["level"] == "ordinal" and severity["n_items"] == 2


def test_slices_by_policy_reviewer_language_modality_and_week(maker: LabelMaker) -> None:
    maker.item("x", language="de", modalities=["text", "image"])
    for ext in ("w", "x", "y", "z"):
        maker.label(ext, "ann", "violating", policies=["hate"], days=0)
        maker.label(ext, "bob", "violating", policies=["hate"], days=0)
        maker.label(ext, "cat", "not_violating" if ext == "z" else "violating", days=8)
    dims = ["policy", "reviewer", "language", "modality", "week"]
    report = ag.agreement_report(maker.s, maker.project, "decision", dims, n_boot=20)
    by = report["by"]
    assert set(by) == set(dims)
    assert set(by["policy"]) == {"hate"}
    assert set(by["language"]) == {"de", "en"} and by["language"]["de"]["n_items"] == 1
    assert set(by["modality"]) == {"image", "text"} and by["modality"]["text"]["n_items"] == 4
    assert set(by["week"]) == {"2026-W45", "2026-W46"}
    # Week 46 holds cat's labels only: one per item, nothing pairable.
    assert by["week"]["2026-W46"]["n_items"] == 0
    cat = by["reviewer"]["cat"]
    assert set(cat["cohen_kappa_with"]) == {"ann", "bob"}
    assert cat["agreement_with_others"] == pytest.approx(6 / 8)
    for key in ("krippendorff_alpha", "fleiss_kappa", "percent_agreement", "n_items"):
        assert key in cat


# --- the CLI ---------------------------------------------------------------------------------


def _seed_cli_project(db: Database) -> None:
    with db.sessions.begin() as s:
        maker = LabelMaker(s, create_project(s, "p", Actor.system()))
        for n in range(6):
            for r, reviewer in enumerate(("ann", "bob", "cat")):
                decision = "violating" if (n + (r == 2 and n % 3 == 0)) % 2 else "not_violating"
                maker.label(f"i{n}", reviewer, decision, policies=["hate"])
        maker.label("i6", "ann", "violating")  # one label: counted, not pairable


def test_agreement_cli_json_has_the_documented_keys(db: Database, cli: CLI) -> None:
    _seed_cli_project(db)
    data = cli.json("agreement", "--project", "p", "--by", "reviewer", "--resamples", "100")
    for key in ("krippendorff_alpha", "fleiss_kappa", "percent_agreement"):
        assert isinstance(data[key], float)
        low, high = data[f"{key}_ci"]
        assert low <= high
    assert (data["n_items"], data["n_labels"], data["n_labels_total"]) == (6, 18, 19)
    assert data["fleiss_n_items"] == 6
    assert data["cohen_kappa"]["reviewers"] == ["ann", "bob", "cat"]
    assert len(data["cohen_kappa"]["matrix"]) == 3
    assert set(data["by"]["reviewer"]) == {"ann", "bob", "cat"}
    assert "krippendorff_alpha_ci" in data["by"]["reviewer"]["ann"]


def test_agreement_cli_writes_a_kappa_heatmap(db: Database, cli: CLI, tmp_path: Path) -> None:
    _seed_cli_project(db)
    png = tmp_path / "kappa.png"
    result = cli("agreement", "--project", "p", "--plot", str(png), "--resamples", "10")
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_agreement_cli_rejects_an_unknown_field_with_usage_error(db: Database, cli: CLI) -> None:
    _seed_cli_project(db)
    result = cli("agreement", "--project", "p", "--field", "colour")
    assert result.exit_code == 2 and "colour" in result.stderr


def test_agreement_cli_on_a_missing_project_fails_clearly(db: Database, cli: CLI) -> None:
    data = cli.json("agreement", "--project", "nope", expect=1)
    assert data["ok"] is False and "no project named 'nope'" in data["error"]
    result = cli("agreement", "--project", "nope")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: {data['error']}"
    ]
