"""Moderation policies: a versioned TOML file of per-category thresholds.

Trust & Safety tunes thresholds without a release, so the policy is data: the packaged
`data/moderation_policy.toml`, or a file named by `UNDERSTANDING_MODERATION_POLICY_PATH`.
One file holds one version of a set of named policies and per-tenant overrides::

    version = "2026-12-1"           # required: recorded with every decision
    default_policy = "default"      # used when a request names none (default: "default")

    [policy.default.category.offensive]
    review = 0.5                    # score at which this category calls for REVIEW
    block = 0.9                     # ... and BLOCK; absent or "never": never
    zero_shot = "review"            # the most an embedding-similarity signal alone may call for

    [policy.strict]
    extends = "default"             # every rule of `default`, then these
    [policy.strict.category."contact.phone"]
    block = 0.5

    [tenant.acme]
    policy = "strict"               # the tenant's default policy
    [tenant.acme.category.offensive]
    review = 0.3                    # overrides on top of whichever policy the tenant uses

A mistake (malformed TOML, an unknown key or category, a threshold out of [0, 1], BLOCK
below REVIEW, an unknown `extends`) is a `PolicyError` naming the file and line, raised at
start-up: a policy that does not say what its author meant must not moderate anything.
"""

from __future__ import annotations

import pathlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from understanding.domain import CATEGORIES, Decision, InvalidInput

__all__ = ["DEFAULT_POLICY", "Policy", "PolicyError", "PolicySet", "Rule", "load_policy", "parse_policy"]

DEFAULT_POLICY = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOP_KEYS = {"version", "default_policy", "description", "policy", "tenant"}
_POLICY_KEYS = {"description", "extends", "category"}
_TENANT_KEYS = {"policy", "category"}
_RULE_KEYS = {"review", "block", "zero_shot"}
_ZERO_SHOT = {"allow": Decision.ALLOW, "review": Decision.REVIEW, "block": Decision.BLOCK}
NEVER = "never"


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the line."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = f"{source} line {line}" if line else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line


@dataclass(frozen=True, slots=True)
class Rule:
    """One category's thresholds: a score >= `block` calls for BLOCK, >= `review` for REVIEW
    (None: never). A zero-shot signal alone calls for at most `zero_shot`."""

    review: float | None = None
    block: float | None = None
    zero_shot: Decision = Decision.REVIEW

    def severity(self, score: float, *, zero_shot: bool = False) -> Decision:
        if self.block is not None and score >= self.block:
            found = Decision.BLOCK
        elif self.review is not None and score >= self.review:
            found = Decision.REVIEW
        else:
            found = Decision.ALLOW
        if zero_shot and found.rank > self.zero_shot.rank:
            return self.zero_shot
        return found


@dataclass(frozen=True, slots=True)
class Policy:
    """A resolved policy: what `decide` applies. `rules` has an entry per judged category."""

    name: str
    version: str
    rules: Mapping[str, Rule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Tenant:
    policy: str | None
    overrides: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every policy of one file, and the tenants' choices and overrides."""

    version: str
    default_policy: str
    source: str
    _rules: Mapping[str, Mapping[str, Mapping[str, Any]]]  # policy -> category -> raw rule (extends applied)
    _tenants: Mapping[str, _Tenant]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._rules))

    def has(self, name: str) -> bool:
        return name in self._rules

    def resolve(self, tenant: str, name: str | None = None) -> Policy:
        """The policy for a request: `name`, else the tenant's default, else the file's; with
        the tenant's overrides on top. An unknown `name` is the caller's mistake."""
        settings = self._tenants.get(tenant)
        chosen = name or (settings.policy if settings is not None else None) or self.default_policy
        if chosen not in self._rules:
            raise InvalidInput(
                f"unknown moderation policy {chosen!r} (policy file {self.version}: {', '.join(self.names)})",
                field="moderation.policy",
            )
        raw = {category: dict(rule) for category, rule in self._rules[chosen].items()}
        if settings is not None:
            for category, rule in settings.overrides.items():
                raw.setdefault(category, {}).update(rule)
        return Policy(chosen, self.version, {category: _rule(r) for category, r in raw.items()})


def _rule(raw: Mapping[str, Any]) -> Rule:
    def threshold(key: str) -> float | None:
        value = raw.get(key)
        return None if value is None or value == NEVER else float(value)

    return Rule(threshold("review"), threshold("block"), _ZERO_SHOT[raw.get("zero_shot", "review")])


# ---------------------------------------------------------------- loading


def load_policy(path: str | pathlib.Path | None = None) -> PolicySet:
    """The packaged policy, or the file at `path` (a `PolicyError` names what is wrong)."""
    if path:
        source = str(path)
        try:
            raw = pathlib.Path(path).read_bytes()
        except OSError as error:
            raise PolicyError(source, None, f"cannot read the policy file: {error.strerror or error}") from error
    else:
        source = "packaged moderation_policy.toml"
        raw = resources.files("understanding.data").joinpath("moderation_policy.toml").read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(source, None, f"is not UTF-8 text ({error.reason} at byte {error.start})") from error
    return parse_policy(text, source=source)


_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def parse_policy(text: str, *, source: str = "policy") -> PolicySet:
    """Validate a policy document (no I/O: `load_policy` reads the file)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = _TOML_LINE.search(message)
        raise PolicyError(
            source, int(match.group(1)) if match else None, "not valid TOML: " + _TOML_LINE.sub("", message).strip()
        ) from error
    return _Validator(text, source).run(doc)


class _Validator:
    def __init__(self, text: str, source: str) -> None:
        self._lines = _key_lines(text)
        self._source = source

    def fail(self, path: tuple[str, ...], message: str) -> PolicyError:
        return PolicyError(self._source, self._line(path), message)

    def _line(self, path: tuple[str, ...]) -> int | None:
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None

    def table(self, value: Any, path: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"`{'.'.join(path)}` must be a table")
        return value

    def keys(self, table: Mapping[str, Any], allowed: set[str], path: tuple[str, ...], what: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})")

    def name(self, value: Any, path: tuple[str, ...], what: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value):
            raise self.fail(path, f"{what} must be a name of letters, digits, '.', '_' or '-', not {value!r}")
        return value

    def run(self, doc: Mapping[str, Any]) -> PolicySet:
        self.keys(doc, _TOP_KEYS, (), "the policy file")
        version = doc.get("version")
        if not isinstance(version, str) or not version.strip():
            raise self.fail(("version",), "`version` is required: a non-empty string recorded with every decision")
        raw_policies = self.table(doc.get("policy", {}), ("policy",))
        if not raw_policies:
            raise self.fail(("policy",), "defines no policy: add at least `[policy.default.category.<name>]`")
        declared: dict[str, tuple[str | None, dict[str, dict[str, Any]]]] = {}
        for name, body in raw_policies.items():
            path = ("policy", name)
            self.name(name, path, "a policy name")
            body = self.table(body, path)
            self.keys(body, _POLICY_KEYS, path, f"policy {name!r}")
            extends = body.get("extends")
            if extends is not None:
                self.name(extends, (*path, "extends"), "`extends`")
            declared[name] = (extends, self.categories(body.get("category", {}), (*path, "category")))
        rules = {name: self.flatten(name, declared) for name in declared}
        default = doc.get("default_policy", DEFAULT_POLICY)
        if not isinstance(default, str) or default not in rules:
            raise self.fail(
                ("default_policy",) if "default_policy" in doc else ("policy",),
                f"default policy {default!r} is not defined (policies: {', '.join(sorted(rules))})",
            )
        tenants: dict[str, _Tenant] = {}
        for tenant, body in self.table(doc.get("tenant", {}), ("tenant",)).items():
            path = ("tenant", tenant)
            body = self.table(body, path)
            self.keys(body, _TENANT_KEYS, path, f"tenant {tenant!r}")
            chosen = body.get("policy")
            if chosen is not None and chosen not in rules:
                raise self.fail((*path, "policy"), f"tenant {tenant!r} uses unknown policy {chosen!r}")
            tenants[tenant] = _Tenant(chosen, self.categories(body.get("category", {}), (*path, "category")))
        # Each tenant's overrides must still leave every policy consistent (block >= review).
        for tenant, settings in tenants.items():
            for name, policy_rules in rules.items():
                for category, override in settings.overrides.items():
                    merged = {**policy_rules.get(category, {}), **override}
                    self.ordered(merged, ("tenant", tenant, "category", category), f"for policy {name!r}")
        return PolicySet(version.strip(), default, self._source, rules, tenants)

    def categories(self, value: Any, path: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for category, rule in self.table(value, path).items():
            where = (*path, category)
            if category not in CATEGORIES:
                raise self.fail(where, f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
            rule = self.table(rule, where)
            self.keys(rule, _RULE_KEYS, where, f"category {category!r}")
            for key in ("review", "block"):
                if key in rule:
                    self.threshold(rule[key], (*where, key))
            if "zero_shot" in rule and rule["zero_shot"] not in _ZERO_SHOT:
                raise self.fail(
                    (*where, "zero_shot"),
                    f"zero_shot must be one of {', '.join(_ZERO_SHOT)}, not {rule['zero_shot']!r}",
                )
            self.ordered(rule, where, "")
            out[category] = dict(rule)
        return out

    def threshold(self, value: Any, path: tuple[str, ...]) -> None:
        if value == NEVER:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise self.fail(path, f'`{path[-1]}` must be a score within [0, 1] or "never", not {value!r}')

    def ordered(self, rule: Mapping[str, Any], path: tuple[str, ...], context: str) -> None:
        review, block = rule.get("review"), rule.get("block")
        if review is None or block is None or NEVER in (review, block):
            return
        if float(block) < float(review):
            raise self.fail(
                (*path, "block"), f"block {block} is below review {review}{' ' + context if context else ''}"
            )

    def flatten(
        self, name: str, declared: Mapping[str, tuple[str | None, dict[str, dict[str, Any]]]]
    ) -> dict[str, dict[str, Any]]:
        chain: list[str] = []
        current: str | None = name
        while current is not None:
            if current in chain:
                raise self.fail(("policy", name, "extends"), f"`extends` loops: {' -> '.join([*chain, current])}")
            if current not in declared:
                raise self.fail(
                    ("policy", chain[-1], "extends"), f"policy {chain[-1]!r} extends unknown policy {current!r}"
                )
            chain.append(current)
            current = declared[current][0]
        merged: dict[str, dict[str, Any]] = {}
        for ancestor in reversed(chain):
            for category, rule in declared[ancestor][1].items():
                merged.setdefault(category, {}).update(rule)
        for category, rule in merged.items():
            self.ordered(rule, ("policy", name, "category", category), f"(with what policy {name!r} extends)")
        return merged


# ---------------------------------------------------------------- where a key is (for messages)

_KEY_PART = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*')


def _split_key(text: str) -> tuple[str, ...] | None:
    parts: list[str] = []
    position = 0
    while True:
        match = _KEY_PART.match(text, position)
        if match is None:
            return None
        parts.append(next(g for g in match.groups() if g is not None))
        position = match.end()
        if position == len(text):
            return tuple(parts)
        if text[position] != ".":
            return None
        position += 1


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line (from 1) where each table header or key path first appears. A small reading of
    TOML's line structure (headers, `key = value`): enough to point at the line to fix."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        header = re.match(r"^\[\[?([^\[\]]+)\]\]?\s*(#.*)?$", stripped)
        if header:
            path = _split_key(header.group(1))
            if path is not None:
                table = path
                for end in range(1, len(path) + 1):
                    lines.setdefault(path[:end], number)
            continue
        key = re.match(r"^([^=]+?)\s*=", stripped)
        if key:
            path = _split_key(key.group(1))
            if path is not None:
                for end in range(1, len(path) + 1):
                    lines.setdefault(table + path[:end], number)
    return lines
