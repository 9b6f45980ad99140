"""Every `workbench` command through the real app: wrong usage exits 2, bad input exits 1 with one
`error:` line that names the problem and no traceback, and `--json` then prints one object.

The catalogue below lists each command once per contract; a command added to the app without an
entry here fails `test_every_command_is_in_the_catalogue`. Happy paths live beside the feature
they prove (HAPPY names the test), most of them in tests/test_cli_*.py.
"""

from __future__ import annotations

import ast
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from builders import make_items, make_project, make_user
from conftest import CLI

from workbench.cli import app
from workbench.config import Settings
from workbench.db.database import open_database

TESTS = Path(__file__).parent

# Command -> arguments after it that click refuses (exit 2) before any work is done.
USAGE: dict[str, list[str]] = {
    "bench engine": ["--texts", "1"],
    "dsa statements": ["-p", "p"],  # --out missing
    "dsa report": ["-p", "p", "--out", "r"],  # --period missing
    "dsa decisions": ["--bogus"],
    "dsa override": ["-p", "p", "wb-1"],  # --note missing
    "dsa appeal": ["-p", "p", "wb-1"],  # --complaint missing
    "dsa appeal-decide": ["-p", "p", "one", "--outcome", "upheld", "--note", "n"],
    "ingest": [],  # PATH and --project missing
    "embed": [],
    "similar": ["-p", "p", "-k", "0"],
    "serve": ["--port", "http"],
    "retrain": ["-p", "p", "--bogus"],
    "worker": ["--poll-seconds", "soon"],
    "select": ["-p", "p", "--batch", "0"],
    "demo": ["--port", "http"],
    "agreement": ["-p", "p", "--field", "colour"],
    "mislabels": ["-p", "p", "--folds", "1"],
    "status": [],
    "db upgrade": ["head", "extra"],
    "db downgrade": [],
    "db current": ["extra"],
    "project create": [],
    "project list": ["extra"],
    "project show": [],
    "project set": ["p", "batch_size"],
    "taxonomy show": [],
    "taxonomy load": ["-p", "p"],
    "user add": [],
    "user list": ["--bogus"],
    "user disable": [],
    "user enable": [],
    "user passwd": [],
    "user role": ["ann"],
    "user add-to-project": ["ann"],  # --project missing
    "user remove-from-project": ["ann"],
    "user projects": [],
    "project members": [],
    "media gc": ["--bogus"],
    "bench embed-text": ["--limit", "0"],
    "bench embed-media": ["--seconds", "0"],
    "bench knn": ["--fit-texts", "20"],
    "bench al": ["--seeds", "0"],
    "bench select": ["--pool-size", "10"],
    "bench agreement": ["--data"],
    "bench agreement-scale": ["--labels", "10"],
    "bench queue": [],
    "bench queue-latency": ["--iterations", "1"],
    "bench review-latency": ["--port", "-1"],
    "labels import": ["-p", "p"],
    "labels export": ["-p", "p", "--json"],  # the labels themselves would go to stdout
    "labels propagate": [],
    "adjudicate refresh": [],
    "adjudicate list": ["-p", "p", "--limit", "0"],
    "adjudicate show": ["one", "-p", "p"],
    "adjudicate open": ["-p", "p", "--item", "i0"],  # --note is required
    "adjudicate resolve": ["1", "-p", "p", "--decision", "maybe", "--note", "x"],
    "adjudicate dismiss": ["1", "-p", "p"],
    "gold mark": ["-p", "p"],  # neither --item nor --file
    "gold retire": ["-p", "p"],
    "gold list": [],
    "gold accuracy": ["-p", "p", "--window-days", "-1"],
    "audit export": ["-p", "p"],  # --out missing
    "bank create": ["KNOWN_BAD"],  # --action missing
    "bank add": ["KNOWN_BAD"],  # --file missing
    "bank import": ["KNOWN_BAD"],
    "bank export": ["KNOWN_BAD"],
    "bank list": ["extra"],
    "bank disable": [],
    "bank enable": [],
    "bench pdq": ["--n", "10"],
    "api": ["--port", "http"],
    "apikey create": ["k"],  # --scope missing
    "apikey list": ["extra"],
    "apikey revoke": [],
    "scan": [],  # --project missing
    "bench scan": ["--clients", "0"],
    "evalset create": [],
    "evalset sample": ["golden", "-p", "p", "--n", "0"],
    "evalset list": ["--bogus"],
    "evalset show": [],
    "evalset freeze": [],
    "evalset retire": [],
    "evaluate online": ["--bogus"],
    "models compare": ["1"],
    "models promote": ["v2"],
    "models rollback": ["--bogus"],
    "prevalence plan": ["-p", "p", "--policy", "hate"],  # --n and --out missing
    "prevalence estimate": ["-p", "p"],  # --policy missing
    "drift": ["-p", "p", "--bogus"],
    "bench eval": ["--reps", "1"],
}

NOT_A_DATABASE = "file is not a database"
NO_PROJECT = "no project named 'nope'"

# Command -> (arguments after it, what the one error line must say), run against a home with
# project `p` (items i0-i2, no labels, no vectors) and user `ann`. `{tmp}` is a folder holding
# nothing. BROKEN_DATABASE commands run with WORKBENCH_DATABASE_URL naming a file that is not a
# database: they take no other input that could be wrong.
BAD_INPUT: dict[str, tuple[list[str], str]] = {
    "bench engine": (["--data", "{tmp}/missing.csv"], "missing.csv"),
    "dsa statements": (["-p", "nope", "--out", "{tmp}/s.jsonl"], NO_PROJECT),
    "dsa report": (
        ["-p", "nope", "--period", "2026-01-01/2026-06-30", "--out", "{tmp}/r"],
        NO_PROJECT,
    ),
    "dsa decisions": (["-p", "nope"], NO_PROJECT),
    "dsa override": (["-p", "nope", "wb-1", "--note", "n"], NO_PROJECT),
    "dsa appeal": (["-p", "nope", "wb-1", "--complaint", "c"], NO_PROJECT),
    "dsa appeal-decide": (["-p", "nope", "1", "--outcome", "upheld", "--note", "n"], NO_PROJECT),
    "ingest": (["{tmp}/items.jsonl", "-p", "p"], "items.jsonl: no such file or folder"),
    "embed": (["-p", "nope"], NO_PROJECT),
    "similar": (["-p", "p"], "give exactly one of --item EXTERNAL_ID or --text TEXT"),
    "serve": ([], NOT_A_DATABASE),
    "retrain": (["-p", "p"], "failed: project 'p' has no usable labels yet"),
    "worker": (["--once"], NOT_A_DATABASE),
    "select": (["-p", "p"], "project 'p' has no fused vectors yet"),
    "demo": (["--fixtures", "{tmp}/demo", "--no-serve"], "manifest.jsonl: demo fixture missing"),
    "agreement": (["-p", "nope"], NO_PROJECT),
    "mislabels": (["-p", "p"], "project 'p' has no usable labels yet"),
    "status": (["-p", "nope"], NO_PROJECT),
    "db upgrade": (["nonsense"], "nonsense"),
    "db downgrade": (["nonsense"], "cannot downgrade to 'nonsense'"),
    "db current": ([], NOT_A_DATABASE),
    "project create": (["bad name!"], "project name 'bad name!' is not allowed"),
    "project list": ([], NOT_A_DATABASE),
    "project show": (["nope"], NO_PROJECT),
    "project set": (["p", "batch_size", "-1"], "invalid value -1 for 'batch_size'"),
    "taxonomy show": (["-p", "p", "--version", "9"], "project 'p' has no policy version 9"),
    "taxonomy load": (["{tmp}/tax.json", "-p", "p"], "tax.json: no such taxonomy file"),
    "user add": (["zed", "--role", "boss"], "unknown role 'boss'"),
    "user list": ([], NOT_A_DATABASE),
    "user disable": (["nobody"], "no user named 'nobody'"),
    "user enable": (["nobody"], "no user named 'nobody'"),
    "user passwd": (["nobody"], "no user named 'nobody'"),
    "user role": (["ann", "boss"], "unknown role 'boss'"),
    "user add-to-project": (["nobody", "-p", "p"], "no user named 'nobody'"),
    "user remove-from-project": (["ann", "-p", "nope"], NO_PROJECT),
    "user projects": (["nobody"], "no user named 'nobody'"),
    "project members": (["-p", "nope"], NO_PROJECT),
    "media gc": ([], NOT_A_DATABASE),
    "bench embed-text": (["--data", "{tmp}/texts.csv"], "no such file"),
    "bench knn": (["--data", "{tmp}/texts.csv"], "texts.csv: no such file"),
    "bench al": (["--data", "{tmp}/votes.csv"], "votes.csv: no such file"),
    "bench select": (["--strategies", "bogus", "--pool-size", "100"], "unknown strategy 'bogus'"),
    "bench agreement": (["--data", "{tmp}/votes.csv"], "votes.csv: no such file"),
    "bench queue": (["-p", "bad name!", "--items", "2"], "project name 'bad name!' is not allowed"),
    "bench queue-latency": (["--sizes", "ten"], "sizes must be whole numbers"),
    "bench review-latency": (["--items", "2"], "the review-latency target is for Postgres"),
    "labels import": (["{tmp}/labels.csv", "-p", "p"], "labels.csv: no such file"),
    "labels export": (["-p", "p", "--out", "{tmp}/labels.txt"], "unsupported file type '.txt'"),
    "labels propagate": (["-p", "nope"], NO_PROJECT),
    "adjudicate refresh": (["-p", "nope"], NO_PROJECT),
    "adjudicate list": (["-p", "p", "--status", "bogus"], "unknown case status 'bogus'"),
    "adjudicate show": (["99", "-p", "p"], "no adjudication case 99 in project 'p'"),
    "adjudicate open": (["-p", "p", "--item", "nope", "--note", "x"], "no item with external_id"),
    "adjudicate resolve": (
        ["99", "-p", "p", "--decision", "not_violating", "--note", "x"],
        "no adjudication case 99 in project 'p'",
    ),
    "adjudicate dismiss": (["99", "-p", "p", "--note", "x"], "no adjudication case 99"),
    "gold mark": (["-p", "p", "--file", "{tmp}/gold.csv"], "gold.csv: no such file"),
    "gold retire": (["-p", "p", "--item", "nope"], "no item with external_id 'nope' in 'p'"),
    "gold list": (["-p", "nope"], NO_PROJECT),
    "gold accuracy": (["-p", "nope"], NO_PROJECT),
    "audit export": (["--out", "{tmp}/audit.csv", "--since", "soon"], "--since 'soon'"),
    "bank create": (["bad name", "--action", "block"], "bank name 'bad name' is not valid"),
    "bank add": (["NOPE", "--file", "{tmp}/x.jpg"], "x.jpg: no such file"),
    "bank import": (["NOPE", "{tmp}/bank.csv"], "no bank named 'NOPE'"),
    "bank export": (["NOPE", "{tmp}/bank.csv"], "no bank named 'NOPE'"),
    "bank list": ([], NOT_A_DATABASE),
    "bank disable": (["NOPE", "--until", "soon"], "'soon' is not a date"),
    "bank enable": (["NOPE"], "no bank named 'NOPE'"),
    "bench pdq": (["--n", "1000", "--queries", "3000"], "raise --n"),
    "api": ([], NOT_A_DATABASE),
    "apikey create": (["k", "--scope", "admin"], "unknown scope 'admin'"),
    "apikey list": ([], NOT_A_DATABASE),
    "apikey revoke": (["nobody"], "no API key named 'nobody'"),
    "scan": (["-p", "nope"], NO_PROJECT),
    "bench scan": (["--data", "{tmp}/texts.csv"], "texts.csv: no such file"),
    "evalset create": (["g", "-p", "p", "--labels", "{tmp}/l.jsonl"], "l.jsonl: no such file"),
    "evalset sample": (["g", "-p", "p", "--n", "9"], "a sample of 9 is larger than the pool of 3"),
    "evalset list": (["-p", "nope"], NO_PROJECT),
    "evalset show": (["nope", "-p", "p"], "no evaluation set 'nope'"),
    "evalset freeze": (["nope", "-p", "p"], "no evaluation set 'nope'"),
    "evalset retire": (["nope", "-p", "p"], "no evaluation set 'nope'"),
    "evaluate online": (["-p", "nope"], NO_PROJECT),
    "models compare": (["1", "2", "-p", "p", "--evalset", "nope"], "no evaluation set 'nope'"),
    "models promote": (["9", "-p", "p"], "no model version 9"),
    "models rollback": (["-p", "p"], "project 'p' has no champion to roll back"),
    "prevalence plan": (
        ["-p", "p", "--policy", "nope", "--n", "2", "--out", "{tmp}/plan.csv"],
        "unknown policy 'nope'",
    ),
    "prevalence estimate": (["-p", "p", "--policy", "hate"], "no prevalence plan for policy"),
    "drift": (["-p", "p"], "has 0 items"),
    "bench eval": (["--data", "{tmp}/missing.csv"], "missing.csv: no such file"),
}
BROKEN_DATABASE = {c for c, (_, needle) in BAD_INPUT.items() if needle == NOT_A_DATABASE}
NO_JSON_FLAG = {"serve", "worker", "api"}  # long-running: they print no result object

# Commands whose every input is checked by click (ranges, choices): nothing reaches them that
# could be bad beyond their usage.
ONLY_USAGE_CAN_BE_WRONG = {"bench embed-media", "bench agreement-scale"}

# Command -> the test that runs it on real data and checks what it did.
HAPPY: dict[str, tuple[str, str]] = {
    "bench engine": (
        "test_engines.py",
        "test_bench_engine_compares_local_and_ray_on_the_same_texts",
    ),
    "dsa statements": (
        "test_dsa_statements.py",
        "test_an_invalid_statement_is_named_and_nothing_is_written",
    ),
    "dsa report": ("test_dsa_report.py", "test_the_cli_writes_the_report"),
    "dsa decisions": (
        "test_dsa_statements.py",
        "test_the_cli_lists_overrides_and_takes_complaints",
    ),
    "dsa override": ("test_dsa_statements.py", "test_the_cli_lists_overrides_and_takes_complaints"),
    "dsa appeal": ("test_dsa_statements.py", "test_the_cli_lists_overrides_and_takes_complaints"),
    "dsa appeal-decide": (
        "test_dsa_statements.py",
        "test_the_cli_lists_overrides_and_takes_complaints",
    ),
    "ingest": ("test_ingest.py", "test_99_good_and_1_bad_with_skip_invalid_writes_99"),
    "embed": ("test_cli_loop.py", "test_embed_adds_only_new_items_to_the_vectors"),
    "similar": ("test_cli_loop.py", "test_similar_finds_neighbours_of_an_item_and_of_a_text"),
    "serve": ("test_cli_commands.py", "test_serve_has_help_and_refuses_a_bad_option"),
    "retrain": ("test_cli_loop.py", "test_retrain_trains_a_new_model_version_now"),
    "worker": ("test_cli_loop.py", "test_worker_once_runs_a_queued_round_and_stops"),
    "select": ("test_cli_loop.py", "test_select_queues_unlabelled_items_with_a_reason_each"),
    "demo": (
        "test_cli_loop.py",
        "test_demo_sets_up_a_trained_project_and_a_second_run_changes_nothing",
    ),
    "agreement": ("test_agreement.py", "test_agreement_cli_json_has_the_documented_keys"),
    "mislabels": (
        "test_mislabels.py",
        "test_mislabels_cli_reports_one_json_object_and_queues_on_request",
    ),
    "status": ("test_cli_loop.py", "test_status_counts_what_the_database_holds"),
    "db upgrade": ("test_migrations.py", "test_db_downgrade_accepts_alembic_syntax"),
    "db downgrade": ("test_migrations.py", "test_db_downgrade_accepts_alembic_syntax"),
    "db current": ("test_migrations.py", "test_db_downgrade_accepts_alembic_syntax"),
    "project create": ("test_cli_admin.py", "test_project_create_list_show_and_set"),
    "project list": ("test_cli_admin.py", "test_project_create_list_show_and_set"),
    "project show": ("test_cli_admin.py", "test_project_create_list_show_and_set"),
    "project set": ("test_cli_admin.py", "test_project_create_list_show_and_set"),
    "taxonomy show": (
        "test_cli_admin.py",
        "test_taxonomy_load_adds_a_version_and_show_reads_either",
    ),
    "taxonomy load": (
        "test_cli_admin.py",
        "test_taxonomy_load_adds_a_version_and_show_reads_either",
    ),
    "user add": ("test_users.py", "test_generated_password_in_json_mode_is_one_json_field"),
    "user list": ("test_cli_admin.py", "test_user_list_role_disable_and_enable"),
    "user disable": ("test_cli_admin.py", "test_user_list_role_disable_and_enable"),
    "user enable": ("test_cli_admin.py", "test_user_list_role_disable_and_enable"),
    "user passwd": (
        "test_users.py",
        "test_password_reset_and_disable_from_the_cli_end_the_users_sessions",
    ),
    "user role": ("test_cli_admin.py", "test_user_list_role_disable_and_enable"),
    "user add-to-project": ("test_membership.py", "test_cli_adds_removes_and_lists_members"),
    "user remove-from-project": ("test_membership.py", "test_cli_adds_removes_and_lists_members"),
    "user projects": ("test_membership.py", "test_cli_adds_removes_and_lists_members"),
    "project members": ("test_membership.py", "test_cli_adds_removes_and_lists_members"),
    "media gc": ("test_media_gc.py", "test_cli_media_gc_json"),
    "bench embed-text": ("test_cli_bench.py", "test_bench_embed_text_compares_a_variant_with_fp32"),
    "bench embed-media": ("test_cli_bench.py", "test_bench_embed_media_times_each_offline_default"),
    "bench knn": ("test_cli_bench.py", "test_bench_knn_measures_recall_against_exact_search"),
    "bench al": (
        "test_al_benchmark.py",
        "test_bench_al_runs_end_to_end_and_reports_every_strategy",
    ),
    "bench select": (
        "test_al_benchmark.py",
        "test_bench_select_times_each_strategy_in_its_own_process",
    ),
    "bench agreement": (
        "test_cli_bench.py",
        "test_bench_agreement_reads_crowd_votes_and_aggregates",
    ),
    "bench agreement-scale": (
        "test_cli_bench.py",
        "test_bench_agreement_scale_times_synthetic_labels",
    ),
    "bench queue": (
        "test_bench_queue.py",
        "test_queue_throughput_bench_loses_and_duplicates_nothing_with_killed_reviewers",
    ),
    "bench queue-latency": (
        "test_bench_queue.py",
        "test_queue_latency_bench_tops_up_what_earlier_runs_labelled",
    ),
    "bench review-latency": (
        "test_bench_browser.py",
        "test_review_latency_bench_measures_every_label_and_stores_each_once",
    ),
    "labels import": ("test_labels.py", "test_cli_import_then_export_round_trips_through_files"),
    "labels export": ("test_labels.py", "test_cli_import_then_export_round_trips_through_files"),
    "labels propagate": ("test_propagation.py", "test_cli_propagate_reports_counts"),
    "adjudicate refresh": ("test_adjudication.py", "test_adjudicate_cli_json_shapes"),
    "adjudicate list": ("test_adjudication.py", "test_adjudicate_cli_json_shapes"),
    "adjudicate show": ("test_adjudication.py", "test_adjudicate_cli_json_shapes"),
    "adjudicate open": ("test_adjudication.py", "test_adjudicate_cli_json_shapes"),
    "adjudicate resolve": ("test_adjudication.py", "test_adjudicate_cli_json_shapes"),
    "adjudicate dismiss": ("test_adjudication.py", "test_adjudicate_cli_json_shapes"),
    "gold mark": ("test_gold.py", "test_gold_cli_json_shapes"),
    "gold retire": ("test_gold.py", "test_gold_cli_json_shapes"),
    "gold list": ("test_gold.py", "test_gold_cli_json_shapes"),
    "gold accuracy": ("test_gold.py", "test_gold_cli_json_shapes"),
    "audit export": (
        "test_audit_export.py",
        "test_audit_export_cli_writes_the_file_and_one_json_object",
    ),
    "bank create": ("test_banks_cli.py", "test_bank_cli_create_add_list_disable_and_enable"),
    "bank add": ("test_banks_cli.py", "test_bank_cli_create_add_list_disable_and_enable"),
    "bank import": ("test_banks_cli.py", "test_bank_cli_import_export_round_trip"),
    "bank export": ("test_banks_cli.py", "test_bank_cli_import_export_round_trip"),
    "bank list": ("test_banks_cli.py", "test_bank_cli_create_add_list_disable_and_enable"),
    "bank disable": ("test_banks_cli.py", "test_bank_cli_create_add_list_disable_and_enable"),
    "bank enable": ("test_banks_cli.py", "test_bank_cli_create_add_list_disable_and_enable"),
    "bench pdq": (
        "test_banks_cli.py",
        "test_bench_pdq_writes_results_with_recall_against_brute_force",
    ),
    "api": ("test_api_cli.py", "test_workbench_api_serves_health_and_scans"),
    "apikey create": ("test_apikeys.py", "test_apikey_create_list_revoke"),
    "apikey list": ("test_apikeys.py", "test_apikey_create_list_revoke"),
    "apikey revoke": ("test_apikeys.py", "test_apikey_create_list_revoke"),
    "scan": (
        "test_scan_sweep.py",
        "test_scan_cli_sweeps_and_a_rerun_after_it_finished_starts_over",
    ),
    "bench scan": ("test_scan_bench.py", "test_bench_scan_reports_latency_and_loses_no_record"),
    "evalset create": (
        "test_evalsets.py",
        "test_create_from_a_label_file_aggregates_reviewers_and_freezes",
    ),
    "evalset list": (
        "test_evalsets.py",
        "test_create_from_a_label_file_aggregates_reviewers_and_freezes",
    ),
    "evalset show": (
        "test_evalsets.py",
        "test_sample_is_stratified_queued_with_overlap_and_freezes_when_complete",
    ),
    "evalset sample": (
        "test_evalsets.py",
        "test_sample_is_stratified_queued_with_overlap_and_freezes_when_complete",
    ),
    "evalset freeze": (
        "test_evalsets.py",
        "test_sample_is_stratified_queued_with_overlap_and_freezes_when_complete",
    ),
    "evalset retire": (
        "test_evalsets.py",
        "test_sample_is_stratified_queued_with_overlap_and_freezes_when_complete",
    ),
    "evaluate online": (
        "test_evaluate.py",
        "test_online_metrics_per_iso_week_from_the_review_stream",
    ),
    "models compare": (
        "test_model_registry.py",
        "test_compare_promote_and_rollback_by_hand_are_audited",
    ),
    "models promote": (
        "test_model_registry.py",
        "test_compare_promote_and_rollback_by_hand_are_audited",
    ),
    "models rollback": (
        "test_model_registry.py",
        "test_compare_promote_and_rollback_by_hand_are_audited",
    ),
    "prevalence plan": ("test_prevalence.py", "test_plan_label_estimate_end_to_end"),
    "prevalence estimate": ("test_prevalence.py", "test_plan_label_estimate_end_to_end"),
    "drift": ("test_drift.py", "test_drift_alerts_on_shifted_new_items"),
    "bench eval": ("test_bench_eval.py", "test_bench_eval_writes_every_figure"),
}


def app_commands() -> set[str]:
    """Every runnable command of the app, as typed after `workbench`."""
    found: set[str] = set()

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            found.add(" ".join(path))

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_is_in_the_catalogue() -> None:
    commands = app_commands()
    assert "bench knn" in commands and "status" in commands  # the walk sees groups and leaves
    assert set(USAGE) == commands
    assert set(BAD_INPUT) | ONLY_USAGE_CAN_BE_WRONG == commands
    assert not set(BAD_INPUT) & ONLY_USAGE_CAN_BE_WRONG
    assert set(HAPPY) == commands


@pytest.mark.parametrize("command", sorted(HAPPY))
def test_each_happy_path_test_exists(command: str) -> None:
    file, name = HAPPY[command]
    tree = ast.parse((TESTS / file).read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert name in names, f"{command}: {file}::{name} is gone; name the test that runs it"
    assert name.startswith("test_")


@pytest.fixture(scope="module")
def catalogue_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One home for every case here: project `p` with three items, user `ann`."""
    root = tmp_path_factory.mktemp("catalogue")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(root / "home"))
        mp.delenv("WORKBENCH_DATABASE_URL", raising=False)
        mp.setenv("WORKBENCH_BENCHMARKS_DIR", str(root / "benchmarks"))
        db = open_database(Settings())
        with db.sessions.begin() as s:
            make_items(s, make_project(s, "p"), ["one", "two", "three"])
            make_user(s, "ann")
        db.dispose()
        (root / "empty").mkdir()
        (root / "not-a-database.db").write_text("these are not the bytes of a database\n")
        yield root


def _args(command: str, extra: list[str], root: Path) -> list[str]:
    return [*command.split(), *(a.replace("{tmp}", str(root / "empty")) for a in extra)]


@pytest.mark.parametrize("command", sorted(USAGE))
def test_wrong_usage_exits_2_with_clicks_message(command: str, catalogue_home: Path) -> None:
    result = CLI()(*_args(command, USAGE[command], catalogue_home))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Error" in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", sorted(BAD_INPUT))
def test_bad_input_exits_1_with_one_error_line_and_one_json_object(
    command: str, catalogue_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra, needle = BAD_INPUT[command]
    if command in BROKEN_DATABASE:
        monkeypatch.setenv(
            "WORKBENCH_DATABASE_URL", f"sqlite:///{catalogue_home / 'not-a-database.db'}"
        )
    args = _args(command, extra, catalogue_home)
    cli = CLI()
    sigterm = signal.getsignal(signal.SIGTERM)  # `worker` installs its own handler
    try:
        result = cli(*args)
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    if command in NO_JSON_FLAG:
        assert result.stdout == ""
        return
    data = cli.json(*args, expect=1)
    assert data["ok"] is False and needle in data["error"]
    assert not list((catalogue_home / "empty").iterdir())  # nothing written where it failed


def test_an_unknown_command_is_wrong_usage(catalogue_home: Path) -> None:
    result = CLI()("frobnicate")
    assert result.exit_code == 2 and "No such command 'frobnicate'" in result.stderr


def test_serve_has_help_and_refuses_a_bad_option(catalogue_home: Path) -> None:
    """`serve` runs until stopped, so its happy path here is its help; its bad database is in
    BAD_INPUT (it checks the database before it starts any process)."""
    helped = CLI()("serve", "--help")
    assert helped.exit_code == 0 and "--no-worker" in helped.stdout
    refused = CLI()("serve", "--bogus")
    assert refused.exit_code == 2 and "No such option: --bogus" in refused.stderr


def test_json_flag_is_offered_by_every_command_that_prints_a_result() -> None:
    commands = typer.main.get_command(app)
    missing = []
    for path in sorted(app_commands() - NO_JSON_FLAG):
        command = commands
        for part in path.split():
            command = command.commands[part]
        if not any("--json" in p.opts for p in command.params):
            missing.append(path)
    assert missing == []


def test_help_of_every_group_lists_its_commands(catalogue_home: Path) -> None:
    groups: dict[str, set[str]] = {}
    for path in app_commands():
        if " " in path:
            group, name = path.split(" ", 1)
            groups.setdefault(group, set()).add(name)
    for group, names in groups.items():
        result = CLI()(group, "--help")
        assert result.exit_code == 0
        assert all(name in result.stdout for name in names), (group, result.stdout)
