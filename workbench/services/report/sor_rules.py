"""The EU DSA Transparency Database's rules for one statement of reasons, as one table.

Source: github.com/digital-services-act/transparency-database at commit
69e80a0bc8eb3cbfbe8246e898194c3bdf490a4b (2026-06-24): `app/Http/Requests/StatementStoreRequest.php`
(`rules()`: required, nullable, in, max, date_format, after_or_equal/before_or_equal,
required_if / required_without_all / exclude_unless, the puid regex), the enumerations of
`app/Models/Statement.php`, `app/Services/EuropeanCountriesService.php` (EUROPEAN_COUNTRY_CODES) and
`app/Services/EuropeanLanguagesService.php` (ALL_LANGUAGES), and the batch limit of
`app/Http/Controllers/Api/v1/StatementMultipleAPIController.php` (`statements` between 1 and 100).
This is the API schema in force since 1 July 2025 (`resources/markdown/api-documentation.md`).

One deliberate difference: the database silently drops a field that `exclude_unless` /
`excludeIf` rules out (say `illegal_content_explanation` on a terms-of-service decision); here
such a field is refused, so nothing the team wrote is lost without notice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from workbench.errors import Problem

# The multiple-statement endpoint takes between 1 and 100 statements per call.
MAX_BATCH = 100

DECISION_VISIBILITIES: tuple[str, ...] = (
    "DECISION_VISIBILITY_CONTENT_REMOVED",
    "DECISION_VISIBILITY_CONTENT_DISABLED",
    "DECISION_VISIBILITY_CONTENT_DEMOTED",
    "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_LABELLED",
    "DECISION_VISIBILITY_OTHER",
)

DECISION_MONETARIES: tuple[str, ...] = (
    "DECISION_MONETARY_SUSPENSION",
    "DECISION_MONETARY_TERMINATION",
    "DECISION_MONETARY_OTHER",
)

DECISION_PROVISIONS: tuple[str, ...] = (
    "DECISION_PROVISION_PARTIAL_SUSPENSION",
    "DECISION_PROVISION_TOTAL_SUSPENSION",
    "DECISION_PROVISION_PARTIAL_TERMINATION",
    "DECISION_PROVISION_TOTAL_TERMINATION",
)

DECISION_ACCOUNTS: tuple[str, ...] = (
    "DECISION_ACCOUNT_SUSPENDED",
    "DECISION_ACCOUNT_TERMINATED",
)

ACCOUNT_TYPES: tuple[str, ...] = (
    "ACCOUNT_TYPE_BUSINESS",
    "ACCOUNT_TYPE_PRIVATE",
)

DECISION_GROUNDS: tuple[str, ...] = (
    "DECISION_GROUND_ILLEGAL_CONTENT",
    "DECISION_GROUND_INCOMPATIBLE_CONTENT",
)

YES_NO: tuple[str, ...] = (
    "Yes",
    "No",
)

CONTENT_TYPES: tuple[str, ...] = (
    "CONTENT_TYPE_APP",
    "CONTENT_TYPE_AUDIO",
    "CONTENT_TYPE_IMAGE",
    "CONTENT_TYPE_PRODUCT",
    "CONTENT_TYPE_SYNTHETIC_MEDIA",
    "CONTENT_TYPE_TEXT",
    "CONTENT_TYPE_VIDEO",
    "CONTENT_TYPE_OTHER",
)

STATEMENT_CATEGORIES: tuple[str, ...] = (
    "STATEMENT_CATEGORY_ANIMAL_WELFARE",
    "STATEMENT_CATEGORY_CONSUMER_INFORMATION",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN",
    "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
    "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
    "STATEMENT_CATEGORY_NOT_SPECIFIED_NOTICE",
    "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
    "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
    "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "STATEMENT_CATEGORY_SELF_HARM",
    "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS",
    "STATEMENT_CATEGORY_VIOLENCE",
)

KEYWORDS: tuple[str, ...] = (
    "KEYWORD_ADULT_SEXUAL_MATERIAL",
    "KEYWORD_AGE_SPECIFIC_RESTRICTIONS",
    "KEYWORD_AGE_SPECIFIC_RESTRICTIONS_MINORS",
    "KEYWORD_ANIMAL_HARM",
    "KEYWORD_BIOMETRIC_DATA_BREACH",
    "KEYWORD_BULLYING_AGAINST_GIRLS",
    "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",
    "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL_DEEPFAKE",
    "KEYWORD_CONTENT_PROMOTING_EATING_DISORDERS",
    "KEYWORD_COORDINATED_HARM",
    "KEYWORD_COPYRIGHT_INFRINGEMENT",
    "KEYWORD_CYBER_BULLYING_INTIMIDATION",
    "KEYWORD_CYBER_HARASSMENT",
    "KEYWORD_CYBER_HARASSMENT_AGAINST_WOMEN",
    "KEYWORD_CYBER_INCITEMENT",
    "KEYWORD_CYBER_STALKING",
    "KEYWORD_CYBER_STALKING_AGAINST_WOMEN",
    "KEYWORD_DATA_FALSIFICATION",
    "KEYWORD_DEFAMATION",
    "KEYWORD_DESIGN_INFRINGEMENT",
    "KEYWORD_DISCRIMINATION",
    "KEYWORD_FEMALE_GENDERED_DISINFORMATION",
    "KEYWORD_GEOGRAPHIC_INDICATIONS_INFRINGEMENT",
    "KEYWORD_GEOGRAPHICAL_REQUIREMENTS",
    "KEYWORD_GOODS_SERVICES_NOT_PERMITTED",
    "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS",
    "KEYWORD_HATE_SPEECH",
    "KEYWORD_HIDDEN_ADVERTISEMENT",
    "KEYWORD_HUMAN_EXPLOITATION",
    "KEYWORD_HUMAN_TRAFFICKING",
    "KEYWORD_ILLEGAL_ORGANIZATIONS",
    "KEYWORD_IMPERSONATION_ACCOUNT_HIJACKING",
    "KEYWORD_INAUTHENTIC_ACCOUNTS",
    "KEYWORD_INAUTHENTIC_LISTINGS",
    "KEYWORD_INAUTHENTIC_USER_REVIEWS",
    "KEYWORD_INCITEMENT_AGAINST_WOMEN",
    "KEYWORD_INCITEMENT_VIOLENCE_HATRED",
    "KEYWORD_INSUFFICIENT_INFORMATION_ON_TRADERS",
    "KEYWORD_LANGUAGE_REQUIREMENTS",
    "KEYWORD_MISINFORMATION_DISINFORMATION",
    "KEYWORD_MISLEADING_INFO_CONSUMER_RIGHTS",
    "KEYWORD_MISLEADING_INFO_GOODS_SERVICES",
    "KEYWORD_MISSING_PROCESSING_GROUND",
    "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
    "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING_AGAINST_WOMEN",
    "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE",
    "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE_AGAINST_WOMEN",
    "KEYWORD_NONCOMPLIANCE_PRICING",
    "KEYWORD_NUDITY",
    "KEYWORD_PATENT_INFRINGEMENT",
    "KEYWORD_PHISHING",
    "KEYWORD_PROHIBITED_PRODUCTS",
    "KEYWORD_PYRAMID_SCHEMES",
    "KEYWORD_RIGHT_TO_BE_FORGOTTEN",
    "KEYWORD_RISK_ENVIRONMENTAL_DAMAGE",
    "KEYWORD_RISK_PUBLIC_HEALTH",
    "KEYWORD_SELF_MUTILATION",
    "KEYWORD_STALKING",
    "KEYWORD_SUICIDE",
    "KEYWORD_TERRORIST_CONTENT",
    "KEYWORD_TRADE_SECRET_INFRINGEMENT",
    "KEYWORD_TRADEMARK_INFRINGEMENT",
    "KEYWORD_TRAFFICKING_WOMEN_GIRLS",
    "KEYWORD_UNLAWFUL_SALE_ANIMALS",
    "KEYWORD_UNSAFE_CHALLENGES",
    "KEYWORD_UNSAFE_PRODUCTS",
    "KEYWORD_VIOLATION_EU_LAW",
    "KEYWORD_VIOLATION_NATIONAL_LAW",
    "KEYWORD_OTHER",
)

SOURCE_TYPES: tuple[str, ...] = (
    "SOURCE_ARTICLE_16",
    "SOURCE_TRUSTED_FLAGGER",
    "SOURCE_TYPE_OTHER_NOTIFICATION",
    "SOURCE_VOLUNTARY",
)

AUTOMATED_DECISIONS: tuple[str, ...] = (
    "AUTOMATED_DECISION_FULLY",
    "AUTOMATED_DECISION_PARTIALLY",
    "AUTOMATED_DECISION_NOT_AUTOMATED",
)

# EuropeanCountriesService::EUROPEAN_COUNTRY_CODES (the EU and EEA states).
EEA_COUNTRY_CODES: tuple[str, ...] = (
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IS",
    "IT",
    "LI",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "NO",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
)

# EuropeanLanguagesService::ALL_LANGUAGES keys (ISO 639-1, upper case).
LANGUAGE_CODES: tuple[str, ...] = (
    "AB",
    "AA",
    "AF",
    "AK",
    "SQ",
    "AM",
    "AR",
    "AN",
    "HY",
    "AS",
    "AV",
    "AE",
    "AY",
    "AZ",
    "BM",
    "BA",
    "EU",
    "BE",
    "BN",
    "BH",
    "BI",
    "BS",
    "BR",
    "BG",
    "MY",
    "CA",
    "KM",
    "CH",
    "CE",
    "NY",
    "ZH",
    "CU",
    "CV",
    "KW",
    "CO",
    "CR",
    "HR",
    "CS",
    "DA",
    "DV",
    "NL",
    "DZ",
    "EN",
    "EO",
    "ET",
    "EE",
    "FO",
    "FJ",
    "FI",
    "FR",
    "FF",
    "GD",
    "GL",
    "LG",
    "KA",
    "DE",
    "KI",
    "EL",
    "KL",
    "GN",
    "GU",
    "HT",
    "HA",
    "HE",
    "HZ",
    "HI",
    "HO",
    "HU",
    "IS",
    "IO",
    "IG",
    "ID",
    "IA",
    "IE",
    "IU",
    "IK",
    "GA",
    "IT",
    "JA",
    "JV",
    "KN",
    "KR",
    "KS",
    "KK",
    "RW",
    "KV",
    "KG",
    "KO",
    "KJ",
    "KU",
    "KY",
    "LO",
    "LA",
    "LV",
    "LB",
    "LI",
    "LN",
    "LT",
    "LU",
    "MK",
    "MG",
    "MS",
    "ML",
    "MT",
    "GV",
    "MI",
    "MR",
    "MH",
    "RO",
    "MN",
    "NA",
    "NV",
    "ND",
    "NG",
    "NE",
    "SE",
    "NO",
    "NB",
    "NN",
    "II",
    "OC",
    "OJ",
    "OR",
    "OM",
    "OS",
    "PI",
    "PA",
    "PS",
    "FA",
    "PL",
    "PT",
    "QU",
    "RM",
    "RN",
    "RU",
    "SM",
    "SG",
    "SA",
    "SC",
    "SR",
    "SN",
    "SD",
    "SI",
    "SK",
    "SL",
    "SO",
    "ST",
    "NR",
    "ES",
    "SU",
    "SW",
    "SS",
    "SV",
    "TL",
    "TY",
    "TG",
    "TA",
    "TT",
    "TE",
    "TH",
    "BO",
    "TI",
    "TO",
    "TS",
    "TN",
    "TR",
    "TK",
    "TW",
    "UG",
    "UK",
    "UR",
    "UZ",
    "VE",
    "VI",
    "VO",
    "WA",
    "CY",
    "FY",
    "WO",
    "XH",
    "YI",
    "YO",
    "ZA",
    "ZU",
)

RESTRICTION_FIELDS = (
    "decision_visibility",
    "decision_monetary",
    "decision_provision",
    "decision_account",
)

PUID_PATTERN = re.compile(r"^[a-zA-Z0-9\-_]+$")
URL_PATTERN = re.compile(r"^https?://[^\s/$.?#].[^\s]*$", re.IGNORECASE)

Kind = Literal["enum", "enum_list", "text", "date", "puid", "url"]


@dataclass(frozen=True)
class When:
    """A condition on another field: `equals` a value, or (a list field) `contains` it."""

    field: str
    op: Literal["equals", "contains"]
    value: str

    def holds(self, statement: Mapping[str, Any]) -> bool:
        got = statement.get(self.field)
        if self.op == "equals":
            return got == self.value
        return isinstance(got, list) and self.value in got

    def __str__(self) -> str:
        verb = "is" if self.op == "equals" else "contains"
        return f"{self.field} {verb} {self.value}"


@dataclass(frozen=True)
class FieldRule:
    """One field of a statement: its kind, allowed values, length and when it is required."""

    field: str
    kind: Kind
    allowed: tuple[str, ...] = ()
    max_chars: int | None = None
    required: bool = False
    required_if: When | None = None
    # required_without_all: required when none of these fields has a value.
    required_without_all: tuple[str, ...] = ()
    # exclude_unless / excludeIf: only allowed when the condition holds.
    only_if: When | None = None
    # excludeIf(source_type == SOURCE_VOLUNTARY): not allowed when the condition holds.
    not_if: When | None = None
    earliest: str | None = None
    latest: str | None = None


def _others(name: str) -> tuple[str, ...]:
    return tuple(f for f in RESTRICTION_FIELDS if f != name)


_ILLEGAL = When("decision_ground", "equals", "DECISION_GROUND_ILLEGAL_CONTENT")
_INCOMPATIBLE = When("decision_ground", "equals", "DECISION_GROUND_INCOMPATIBLE_CONTENT")
_VIS_OTHER = When("decision_visibility", "contains", "DECISION_VISIBILITY_OTHER")
_MON_OTHER = When("decision_monetary", "equals", "DECISION_MONETARY_OTHER")
_TYPE_OTHER = When("content_type", "contains", "CONTENT_TYPE_OTHER")
_VOLUNTARY = When("source_type", "equals", "SOURCE_VOLUNTARY")

# The table: StatementStoreRequest::rules(), field by field, in its order.
RULES: tuple[FieldRule, ...] = (
    FieldRule("decision_visibility", "enum_list", DECISION_VISIBILITIES,
              required_without_all=_others("decision_visibility")),
    FieldRule("decision_visibility_other", "text", max_chars=500, required_if=_VIS_OTHER,
              only_if=_VIS_OTHER),
    FieldRule("decision_monetary", "enum", DECISION_MONETARIES,
              required_without_all=_others("decision_monetary")),
    FieldRule("decision_monetary_other", "text", max_chars=500, required_if=_MON_OTHER,
              only_if=_MON_OTHER),
    FieldRule("decision_provision", "enum", DECISION_PROVISIONS,
              required_without_all=_others("decision_provision")),
    FieldRule("decision_account", "enum", DECISION_ACCOUNTS,
              required_without_all=_others("decision_account")),
    FieldRule("account_type", "enum", ACCOUNT_TYPES),
    FieldRule("category_specification", "enum_list", KEYWORDS),
    FieldRule("category_specification_other", "text", max_chars=500),
    FieldRule("decision_ground", "enum", DECISION_GROUNDS, required=True),
    FieldRule("decision_ground_reference_url", "url", max_chars=500),
    FieldRule("illegal_content_legal_ground", "text", max_chars=500, required_if=_ILLEGAL,
              only_if=_ILLEGAL),
    FieldRule("illegal_content_explanation", "text", max_chars=2000, required_if=_ILLEGAL,
              only_if=_ILLEGAL),
    FieldRule("incompatible_content_ground", "text", max_chars=500, required_if=_INCOMPATIBLE,
              only_if=_INCOMPATIBLE),
    FieldRule("incompatible_content_explanation", "text", max_chars=2000,
              required_if=_INCOMPATIBLE, only_if=_INCOMPATIBLE),
    FieldRule("incompatible_content_illegal", "enum", YES_NO, only_if=_INCOMPATIBLE),
    FieldRule("content_type", "enum_list", CONTENT_TYPES, required=True),
    FieldRule("content_type_other", "text", max_chars=500, required_if=_TYPE_OTHER,
              only_if=_TYPE_OTHER),
    FieldRule("category", "enum", STATEMENT_CATEGORIES, required=True),
    FieldRule("category_addition", "enum_list", STATEMENT_CATEGORIES),
    FieldRule("territorial_scope", "enum_list", EEA_COUNTRY_CODES),
    FieldRule("content_language", "enum", LANGUAGE_CODES),
    FieldRule("content_date", "date", required=True, earliest="2000-01-01", latest="2038-01-01"),
    FieldRule("application_date", "date", required=True, earliest="2020-01-01",
              latest="2038-01-01"),
    FieldRule("end_date_account_restriction", "date", latest="2038-01-01"),
    FieldRule("end_date_monetary_restriction", "date", latest="2038-01-01"),
    FieldRule("end_date_service_restriction", "date", latest="2038-01-01"),
    FieldRule("end_date_visibility_restriction", "date", latest="2038-01-01"),
    FieldRule("decision_facts", "text", max_chars=5000, required=True),
    FieldRule("source_type", "enum", SOURCE_TYPES, required=True),
    FieldRule("source_identity", "text", max_chars=500, not_if=_VOLUNTARY),
    FieldRule("automated_detection", "enum", YES_NO, required=True),
    FieldRule("automated_decision", "enum", AUTOMATED_DECISIONS, required=True),
    FieldRule("puid", "puid", max_chars=500, required=True),
)  # fmt: skip

RULES_BY_FIELD: dict[str, FieldRule] = {r.field: r for r in RULES}


def _empty(value: Any) -> bool:
    # Laravel's `required` fails on null, "" and [].
    return value is None or value == "" or value == []


def _check_value(rule: FieldRule, value: Any) -> str | None:
    """Why `value` breaks `rule`'s kind, allowed values or length; None when it passes."""
    if rule.kind == "enum_list":
        if not isinstance(value, list):
            return "must be a list"
        wrong = [v for v in value if v not in rule.allowed]
        if wrong:
            return f"{', '.join(map(str, wrong))} not allowed (one of {', '.join(rule.allowed)})"
        return None
    if not isinstance(value, str):
        return "must be a string"
    if rule.kind == "enum" and value not in rule.allowed:
        shown = ", ".join(rule.allowed) if len(rule.allowed) <= 40 else "see sor_rules"
        return f"{value!r} not allowed (one of {shown})"
    if rule.max_chars is not None and len(value) > rule.max_chars:
        return f"{len(value)} characters, at most {rule.max_chars}"
    if rule.kind == "puid" and not PUID_PATTERN.match(value):
        return f"{value!r} may hold only letters, digits, '-' and '_'"
    if rule.kind == "url" and not URL_PATTERN.match(value):
        return f"{value!r} is not a URL"
    if rule.kind == "date":
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError
            day = date.fromisoformat(value)
        except ValueError:
            return f"{value!r} is not a date YYYY-MM-DD"
        if rule.earliest and day < date.fromisoformat(rule.earliest):
            return f"{value} is before {rule.earliest}"
        if rule.latest and day > date.fromisoformat(rule.latest):
            return f"{value} is after {rule.latest}"
    return None


def validate_statement(statement: Mapping[str, Any]) -> list[Problem]:
    """Every way `statement` breaks the database's rules, each naming its field (empty: valid)."""
    problems = [
        Problem(field=name, reason="not a field of a statement of reasons")
        for name in sorted(statement)
        if name not in RULES_BY_FIELD
    ]
    for rule in RULES:
        value = statement.get(rule.field)
        if _empty(value):
            if rule.required:
                problems.append(Problem(field=rule.field, reason="is required"))
            elif rule.required_if is not None and rule.required_if.holds(statement):
                problems.append(
                    Problem(field=rule.field, reason=f"is required when {rule.required_if}")
                )
            elif rule.required_without_all and all(
                _empty(statement.get(f)) for f in rule.required_without_all
            ):
                problems.append(
                    Problem(
                        field=rule.field,
                        reason="is required when none of "
                        f"{', '.join(rule.required_without_all)} is given",
                    )
                )
            continue
        if rule.only_if is not None and not rule.only_if.holds(statement):
            problems.append(Problem(field=rule.field, reason=f"only allowed when {rule.only_if}"))
            continue
        if rule.not_if is not None and rule.not_if.holds(statement):
            problems.append(Problem(field=rule.field, reason=f"not allowed when {rule.not_if}"))
            continue
        why = _check_value(rule, value)
        if why:
            problems.append(Problem(field=rule.field, reason=why))
    return problems
