"""The Transparency Database's statement rules (services/report/sor_rules.py), value by value:
every enumeration value is accepted, a wrong one is refused naming its field, and each
conditional rule (required_if, required_without_all, exclude_unless) triggers."""

from __future__ import annotations

from typing import Any

import pytest

from workbench.services.report import sor_rules
from workbench.services.report.sor_rules import RULES_BY_FIELD, validate_statement


def valid() -> dict[str, Any]:
    return {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": "Community Guidelines: Spam",
        "incompatible_content_explanation": "Phishing link.",
        "content_type": ["CONTENT_TYPE_TEXT"],
        "category": "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
        "content_date": "2026-11-01",
        "application_date": "2026-11-02",
        "decision_facts": "A reviewer judged the content to be a scam.",
        "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": "No",
        "automated_decision": "AUTOMATED_DECISION_NOT_AUTOMATED",
        "puid": "wb-p1-label-7",
        "territorial_scope": ["DE", "FR"],
        "content_language": "EN",
    }


# A missing or wrong decision_ground also puts the ground's own fields out of place.
GROUND_FIELDS = {
    "illegal_content_legal_ground",
    "illegal_content_explanation",
    "incompatible_content_ground",
    "incompatible_content_explanation",
}


def fields(statement: dict[str, Any]) -> list[str | None]:
    return [p.field for p in validate_statement(statement)]


def test_the_baseline_statement_is_valid() -> None:
    assert validate_statement(valid()) == []


# Each enumerated field with the values the database lists, and how to put one in a statement
# that stays valid otherwise (some values need their companion field).
def _with(field: str, value: str) -> dict[str, Any]:
    s = valid()
    rule = RULES_BY_FIELD[field]
    s[field] = [value] if rule.kind == "enum_list" else value
    if field in ("decision_monetary", "decision_provision", "decision_account"):
        s.pop("decision_visibility")
    if value == "DECISION_VISIBILITY_OTHER":
        s["decision_visibility_other"] = "shadow limited"
    if value == "DECISION_MONETARY_OTHER":
        s["decision_monetary_other"] = "payout held"
    if value == "CONTENT_TYPE_OTHER":
        s["content_type_other"] = "a livestream chat"
    if value == "DECISION_GROUND_ILLEGAL_CONTENT":
        for f in ("incompatible_content_ground", "incompatible_content_explanation"):
            s.pop(f)
        s["illegal_content_legal_ground"] = "Article 130 StGB"
        s["illegal_content_explanation"] = "Incites hatred."
    return s


ENUM_CASES = [
    (rule.field, value)
    for rule in sor_rules.RULES
    if rule.kind in ("enum", "enum_list") and rule.field != "incompatible_content_illegal"
    for value in rule.allowed
]


@pytest.mark.parametrize(("field", "value"), ENUM_CASES)
def test_every_listed_value_is_accepted(field: str, value: str) -> None:
    assert validate_statement(_with(field, value)) == []


@pytest.mark.parametrize("value", sor_rules.YES_NO)
def test_incompatible_content_illegal_takes_yes_or_no(value: str) -> None:
    s = valid() | {"incompatible_content_illegal": value}
    assert validate_statement(s) == []


ENUM_FIELDS = sorted({f for f, _ in ENUM_CASES} | {"incompatible_content_illegal"})


@pytest.mark.parametrize("field", ENUM_FIELDS)
def test_a_value_outside_the_list_is_refused_naming_the_field(field: str) -> None:
    rule = RULES_BY_FIELD[field]
    s = _with(field, rule.allowed[0])
    s[field] = ["NOT_A_VALUE"] if rule.kind == "enum_list" else "NOT_A_VALUE"
    problems = {p.field: p.reason for p in validate_statement(s)}
    assert "NOT_A_VALUE" in problems[field]
    # Only the wrong field (a wrong ground also makes its companion fields out of place).
    assert set(problems) - GROUND_FIELDS == {field}


def test_the_enumerations_match_the_source_counts() -> None:
    # Counts as listed in the database's Statement model and services at the pinned commit.
    assert len(sor_rules.DECISION_VISIBILITIES) == 7
    assert len(sor_rules.STATEMENT_CATEGORIES) == 16
    assert len(sor_rules.CONTENT_TYPES) == 8
    assert len(sor_rules.SOURCE_TYPES) == 4
    assert len(sor_rules.EEA_COUNTRY_CODES) == 30
    assert "EN" in sor_rules.LANGUAGE_CODES and "en" not in sor_rules.LANGUAGE_CODES
    assert "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT" not in (
        sor_rules.STATEMENT_CATEGORIES
    )


@pytest.mark.parametrize(
    "field",
    ["decision_ground", "content_type", "category", "content_date", "application_date",
     "decision_facts", "source_type", "automated_detection", "automated_decision", "puid"],
)  # fmt: skip
def test_required_fields_are_required(field: str) -> None:
    s = valid()
    s.pop(field)
    assert set(fields(s)) - GROUND_FIELDS == {field}
    s[field] = ""
    assert set(fields(s)) - GROUND_FIELDS == {field}


def test_at_least_one_restriction_is_required() -> None:
    s = valid()
    s.pop("decision_visibility")
    assert fields(s) == sorted(
        sor_rules.RESTRICTION_FIELDS, key=list(sor_rules.RULES_BY_FIELD).index
    )
    s["decision_account"] = "DECISION_ACCOUNT_SUSPENDED"
    assert fields(s) == []


@pytest.mark.parametrize(
    ("trigger", "value", "needed"),
    [
        ("decision_visibility", ["DECISION_VISIBILITY_OTHER"], "decision_visibility_other"),
        ("content_type", ["CONTENT_TYPE_OTHER"], "content_type_other"),
    ],
)
def test_other_in_a_list_requires_its_description(trigger: str, value: Any, needed: str) -> None:
    s = valid() | {trigger: value}
    assert fields(s) == [needed]
    s[needed] = "x" * 500
    assert fields(s) == []
    s[needed] = "x" * 501
    assert fields(s) == [needed]


def test_monetary_other_requires_its_description() -> None:
    s = valid()
    s.pop("decision_visibility")
    s["decision_monetary"] = "DECISION_MONETARY_OTHER"
    assert fields(s) == ["decision_monetary_other"]


@pytest.mark.parametrize("needed", ["illegal_content_legal_ground", "illegal_content_explanation"])
def test_an_illegal_content_ground_requires_the_legal_ground_and_explanation(needed: str) -> None:
    s = _with("decision_ground", "DECISION_GROUND_ILLEGAL_CONTENT")
    s.pop(needed)
    assert fields(s) == [needed]


@pytest.mark.parametrize(
    "needed", ["incompatible_content_ground", "incompatible_content_explanation"]
)
def test_a_terms_ground_requires_the_clause_and_explanation(needed: str) -> None:
    s = valid()
    s.pop(needed)
    assert fields(s) == [needed]


def test_fields_of_the_other_ground_are_refused() -> None:
    s = valid() | {"illegal_content_legal_ground": "Article 130 StGB"}
    problems = validate_statement(s)
    assert [p.field for p in problems] == ["illegal_content_legal_ground"]
    assert "only allowed when decision_ground is" in problems[0].reason
    s = _with("decision_ground", "DECISION_GROUND_ILLEGAL_CONTENT") | {
        "incompatible_content_illegal": "Yes"
    }
    assert fields(s) == ["incompatible_content_illegal"]


def test_source_identity_is_refused_for_own_initiative() -> None:
    s = valid() | {"source_identity": "a notifier"}
    assert fields(s) == ["source_identity"]
    s["source_type"] = "SOURCE_ARTICLE_16"
    assert fields(s) == []


@pytest.mark.parametrize(
    ("field", "limit"),
    [("decision_facts", 5000), ("incompatible_content_ground", 500),
     ("incompatible_content_explanation", 2000), ("puid", 500)],
)  # fmt: skip
def test_lengths_are_capped(field: str, limit: int) -> None:
    s = valid() | {field: "a" * limit}
    assert fields(s) == []
    s[field] = "a" * (limit + 1)
    assert fields(s) == [field]


@pytest.mark.parametrize("puid", ["has space", "dot.ted", "slash/ed", "ümlaut"])
def test_puid_allows_letters_digits_dash_and_underscore_only(puid: str) -> None:
    assert fields(valid() | {"puid": puid}) == ["puid"]
    assert fields(valid() | {"puid": "Ab-9_z"}) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("content_date", "1999-12-31"), ("content_date", "2038-01-02"),
     ("application_date", "2019-12-31"), ("content_date", "2026-13-01"),
     ("content_date", "01/11/2026"), ("end_date_visibility_restriction", "2038-01-02")],
)  # fmt: skip
def test_dates_are_checked_for_format_and_range(field: str, value: str) -> None:
    assert fields(valid() | {field: value}) == [field]


def test_bounds_of_the_date_ranges_are_inclusive() -> None:
    s = valid() | {"content_date": "2000-01-01", "application_date": "2038-01-01"}
    assert fields(s) == []


def test_lower_case_language_and_non_eea_country_are_refused() -> None:
    assert fields(valid() | {"content_language": "en"}) == ["content_language"]
    assert fields(valid() | {"territorial_scope": ["DE", "GB"]}) == ["territorial_scope"]


def test_an_unknown_field_is_refused() -> None:
    assert fields(valid() | {"decision_visibilty": []}) == ["decision_visibilty"]
