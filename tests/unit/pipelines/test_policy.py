"""Moderation policy files: the packaged one, named policies, tenants, and mistakes named by line."""

from __future__ import annotations

import pathlib

import pytest

from understanding.domain import CATEGORIES, Decision, InvalidInput
from understanding.pipelines.policy import PolicyError, Rule, load_policy, parse_policy

GOOD = """\
version = "7"

[policy.default.category.offensive]
review = 0.5
block = 0.9

[policy.default.category."contact.phone"]
review = 0.5

[policy.strict]
extends = "default"
[policy.strict.category."contact.phone"]
block = 0.5

[tenant.acme]
policy = "strict"
[tenant.acme.category.offensive]
review = 0.3

[tenant.quiet.category."contact.phone"]
review = "never"
"""


def test_packaged_policy_loads_and_judges_every_category() -> None:
    policies = load_policy()
    policy = policies.resolve("anyone")
    assert policy.name == "default" and policy.version == policies.version
    assert set(policy.rules) == set(CATEGORIES)
    assert policy.rules["offensive"] == Rule(review=0.5, block=0.9, zero_shot=Decision.REVIEW)
    assert policy.rules["contact.url"].review is None  # URLs are ordinary by default
    assert "strict" in policies.names and policies.resolve("t", "strict").rules["contact.phone"].block == 0.5


def test_named_policies_extends_and_tenant_overrides() -> None:
    policies = parse_policy(GOOD, source="p.toml")
    default = policies.resolve("nobody")
    assert default.name == "default" and default.version == "7"
    assert default.rules["contact.phone"] == Rule(review=0.5, block=None)
    # acme uses strict by default (inherits default's rules), with its own offensive review threshold.
    acme = policies.resolve("acme")
    assert acme.name == "strict"
    assert acme.rules["contact.phone"] == Rule(review=0.5, block=0.5)
    assert acme.rules["offensive"] == Rule(review=0.3, block=0.9)
    # A request naming a policy gets it, still with the tenant's overrides.
    assert policies.resolve("acme", "default").rules["offensive"].review == 0.3
    assert policies.resolve("acme", "default").rules["contact.phone"].block is None
    assert policies.resolve("quiet").rules["contact.phone"].review is None
    with pytest.raises(InvalidInput) as error:
        policies.resolve("acme", "lenient")
    assert error.value.field == "moderation.policy" and "lenient" in error.value.message


def test_rule_severity_and_zero_shot_cap() -> None:
    rule = Rule(review=0.5, block=0.9, zero_shot=Decision.REVIEW)
    assert rule.severity(0.2) is Decision.ALLOW
    assert rule.severity(0.5) is Decision.REVIEW
    assert rule.severity(0.95) is Decision.BLOCK
    assert rule.severity(0.95, zero_shot=True) is Decision.REVIEW
    assert Rule(review=0.5, zero_shot=Decision.ALLOW).severity(0.99, zero_shot=True) is Decision.ALLOW


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            'version = "1"\n[policy.default.category.offensive]\nreview = 0.5\n[policy.default.category.nudes]\nreview = 1\n',
            4,
            "unknown category 'nudes'",
        ),
        ('version = "1"\n\n[policy.default.category.offensive]\nreview = 1.5\n', 4, "within [0, 1]"),
        (
            'version = "1"\n[policy.default.category.offensive]\nreview = 0.9\nblock = 0.5\n',
            4,
            "block 0.5 is below review 0.9",
        ),
        ('version = "1"\n[policy.default.category.offensive]\nreveiw = 0.5\n', 3, "unknown key 'reveiw'"),
        (
            'version = "1"\n[policy.default.category.offensive]\nreview = 0.5\n[policy.x]\nextends = "nope"\n',
            5,
            "unknown policy 'nope'",
        ),
        (
            'version = "1"\n[policy.default.category.offensive]\nreview = 0.5\nzero_shot = "maybe"\n',
            4,
            "zero_shot must be",
        ),
        (
            'version = "1"\n[policy.default.category.offensive]\nreview = 0.5\n[tenant.a]\npolicy = "gone"\n',
            5,
            "unknown policy 'gone'",
        ),
        ("[policy.default.category.offensive]\nreview = 0.5\n", None, "`version` is required"),
        ('version = "1"\n[policy.default.category.offensive\nreview = 0.5\n', 2, "not valid TOML"),
        (
            'version = "1"\ndefault_policy = "main"\n[policy.default.category.offensive]\nreview = 0.5\n',
            2,
            "'main' is not defined",
        ),
        (
            'version = "1"\n[policy.default.category]\noffensive = { review = 0.5, bloc = 0.9 }\n',
            3,
            "unknown key 'bloc'",
        ),
        (
            'version = "1"\n[policy.default.category.offensive]\nreview = 0.5\n[tenant.t.category.offensive]\nblock = 0.1\n',
            5,
            "below review",
        ),
    ],
)
def test_mistakes_name_the_line(text: str, line: int | None, words: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(text, source="mine.toml")
    assert error.value.line == line, str(error.value)
    assert words in str(error.value)
    assert str(error.value).startswith(f"mine.toml line {line}:" if line else "mine.toml:")


def test_unreadable_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"version = '\xff'\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(binary)
