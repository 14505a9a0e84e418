"""Public multilingual evaluation data, as fetched by scripts/fetch_eval_data.py.

Two sets, neither written by the project:

`parallel_sentences()`: human-translated sentences of Firefox ESR's user
interface (Fluent files from Debian's firefox-esr and firefox-esr-l10n-*
packages, MPL-2.0), aligned by file and message id. Only sentence-like
messages are kept: no variables or selectors left after resolving terms such
as `{ -brand-short-name }`, markup stripped, 6-60 English words ending in
sentence punctuation, one entry per distinct English text.

`labelled_emoji()`: every fully-qualified emoji with Unicode's group/subgroup
label (emoji-test.txt) and, per language, CLDR's human-curated name and
keywords (common/annotations/*.xml), e.g. "soccer ball: ball, football,
soccer" / "축구공: 공, 축구, 축구공". `TOPIC_OF_SUBGROUP` maps subgroups onto
the taxonomy's topics; everything else is a negative for those topics.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field

LANGUAGES = ("ko", "ja", "zh", "tr", "ar", "ru", "de", "es", "th")
FETCH_HINT = "python scripts/fetch_eval_data.py"


def data_dir() -> pathlib.Path:
    base = os.environ.get("UNDERSTANDING_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "understanding")
    return pathlib.Path(base) / "eval-data"


def _source(key: str) -> tuple[pathlib.Path, dict[str, object]]:
    manifest_path = data_dir() / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    entry = manifest.get(key)
    if entry is None or not (data_dir() / entry["path"] / ".complete").exists():
        raise SystemExit(f"evaluation data {key!r} missing under {data_dir()}: run `{FETCH_HINT}`")
    return data_dir() / entry["path"], entry


# --------------------------------------------------------------- Fluent files
_ENTRY = re.compile(r"^(-?[A-Za-z][\w-]*)[ \t]*=[ \t]?(.*)$")
_ATTRIBUTE = re.compile(r"^[ \t]+\.([A-Za-z][\w-]*)[ \t]*=[ \t]?(.*)$")
_PLACEABLE = re.compile(r"\{\s*([^{}]*?)\s*\}")
_TERM_REF = re.compile(r"^(-[A-Za-z][\w-]*)(\([^()]*\))?$")
_STRING_LITERAL = re.compile(r'^"((?:[^"\\]|\\.)*)"$')
_MARKUP = re.compile(r"<[^<>]*>")
_DEFAULT_VARIANT = re.compile(r"\*\[[^\]]*\]\s*(.*?)\s*(?=\n\s*\*?\[|\s*$)", re.DOTALL)


def parse_ftl(text: str) -> dict[str, str]:
    """Message and term values and attributes of one Fluent file: `id` or `id.attr` -> raw pattern.

    A small reader of the Fluent syntax that the sentences need (entries,
    indented continuation lines, attributes); anything fancier stays in the raw
    pattern and is judged by `resolve`.
    """
    entries: dict[str, str] = {}
    key: str | None = None
    base = ""
    lines: list[str] = []

    def flush() -> None:
        if key is not None:
            value = "\n".join(line.strip() for line in lines).strip()
            if value:
                entries[key] = value

    for raw in text.splitlines():
        if raw.startswith("#"):
            flush()
            key, lines = None, []
            continue
        entry = _ENTRY.match(raw)
        if entry:
            flush()
            base = entry.group(1)
            key, lines = base, [entry.group(2)]
            continue
        if key is None:
            continue
        attribute = _ATTRIBUTE.match(raw)
        if attribute:
            flush()
            key, lines = f"{base}.{attribute.group(1)}", [attribute.group(2)]
        elif raw.strip() or lines:
            lines.append(raw)
    flush()
    return entries


def resolve(pattern: str, terms: dict[str, str], depth: int = 0) -> str | None:
    """Plain text of a pattern, or None when it needs runtime data (variables, selectors, messages)."""
    if depth > 4 or "->" in pattern and depth == 0:
        return None

    failed = False

    def placeable(match: re.Match[str]) -> str:
        nonlocal failed
        inner = match.group(1)
        literal = _STRING_LITERAL.match(inner)
        if literal:
            return literal.group(1).replace('\\"', '"').replace("\\\\", "\\")
        term = _TERM_REF.match(inner)
        if term and term.group(1) in terms:
            value = resolve(terms[term.group(1)], terms, depth + 1)
            if value is not None:
                return value
        failed = True
        return ""

    if "->" in pattern:  # a term's own selector (grammatical case, ...): its default variant
        variant = _DEFAULT_VARIANT.search(pattern)
        if variant is None:
            return None
        pattern = variant.group(1)
    text = _PLACEABLE.sub(placeable, pattern)
    if failed or "{" in text or "}" in text:
        return None
    text = _MARKUP.sub("", text).replace("\u00a0", " ")
    return " ".join(text.split())


def _locale_messages(root: pathlib.Path) -> dict[str, str]:
    """`file:id[.attr]` -> resolved text, for one language tree of .ftl files."""
    raw: dict[str, dict[str, str]] = {}
    terms: dict[str, str] = {}
    for path in sorted(root.rglob("*.ftl")):
        entries = parse_ftl(path.read_text(encoding="utf-8"))
        raw[str(path.relative_to(root))] = entries
        terms.update({k: v for k, v in entries.items() if k.startswith("-") and "." not in k})
    out: dict[str, str] = {}
    for rel, entries in raw.items():
        for key, pattern in entries.items():
            if key.startswith("-") or key.endswith(".accesskey"):
                continue
            text = resolve(pattern, terms)
            if text:
                out[f"{rel}:{key}"] = text
    return out


_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")


def _is_sentence(english: str, *, min_words: int, max_words: int) -> bool:
    words = english.split()
    return (
        min_words <= len(words) <= max_words
        and english[:1].isupper()
        and english.endswith(_SENTENCE_END)
        and sum(c.isalpha() for c in english) >= 0.6 * len(english.replace(" ", ""))
    )


@dataclass(frozen=True)
class ParallelCorpus:
    """English sentences (the documents) and their translations per language (the queries)."""

    version: str
    english: dict[str, str]  # id -> text
    translations: dict[str, dict[str, str]] = field(default_factory=dict)  # lang -> id -> text

    def pairs(self, lang: str) -> Iterator[tuple[str, str, str]]:
        """(lang, text, id) of every translation into `lang`."""
        for sid, text in self.translations.get(lang, {}).items():
            yield lang, text, sid

    def items(self) -> Iterator[tuple[str, str, str]]:
        """(lang, text, id) for English and every translation."""
        for sid, text in self.english.items():
            yield "en", text, sid
        for lang in self.translations:
            yield from self.pairs(lang)


def _stable_order(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parallel_sentences(
    languages: tuple[str, ...] = LANGUAGES,
    *,
    limit: int = 0,
    min_words: int = 6,
    max_words: int = 60,
) -> ParallelCorpus:
    """The Firefox parallel sentences; `limit` keeps a fixed pseudo-random subset of English ids."""
    root, entry = _source("firefox-esr")
    english_all = _locale_messages(root / "en")
    english: dict[str, str] = {}
    seen: set[str] = set()
    for sid in sorted(english_all):
        text = english_all[sid]
        if text in seen or not _is_sentence(text, min_words=min_words, max_words=max_words):
            continue
        seen.add(text)
        english[sid] = text
    if limit and len(english) > limit:
        keep = sorted(english, key=_stable_order)[:limit]
        english = {sid: english[sid] for sid in sorted(keep)}
    translations: dict[str, dict[str, str]] = {}
    for lang in languages:
        messages = _locale_messages(root / lang)
        translations[lang] = {
            sid: messages[sid]
            for sid in english
            if sid in messages and messages[sid] != english[sid] and len(messages[sid]) >= 4
        }
    return ParallelCorpus(version=str(entry["version"]), english=english, translations=translations)


# --------------------------------------------------------------- emoji topics
# Unicode emoji subgroups that are clearly about a taxonomy topic. Subgroups
# not listed here are negatives for every topic (faces, hands, symbols, flags,
# office objects, animals, ...), but for AMBIGUOUS_SUBGROUPS, left out.
TOPIC_OF_SUBGROUP = {
    "food-fruit": "topic.food",
    "food-vegetable": "topic.food",
    "food-prepared": "topic.food",
    "food-asian": "topic.food",
    "food-marine": "topic.food",
    "food-sweet": "topic.food",
    "drink": "topic.food",
    "dishware": "topic.food",
    "transport-ground": "topic.travel",
    "transport-water": "topic.travel",
    "transport-air": "topic.travel",
    "hotel": "topic.travel",
    "place-map": "topic.travel",
    "place-geographic": "topic.travel",
    "sport": "topic.sports",
    "award-medal": "topic.sports",
    "game": "topic.gaming",
    "music": "topic.music",
    "musical-instrument": "topic.music",
}


# Subgroups whose emoji are partly about a topic and partly not ("person
# biking" is sport and travel, "cook" and "pilot" are roles, "stadium" is a
# building, "ticket" an event): neither positives nor fair negatives, so they
# are left out of the labelled set rather than counted against a topic.
AMBIGUOUS_SUBGROUPS = frozenset({"person-sport", "person-activity", "person-role", "place-building", "event"})


@dataclass(frozen=True)
class LabelledItem:
    id: str  # the emoji itself
    group: str
    subgroup: str
    label: str  # a taxonomy topic id, or "" for a negative
    texts: dict[str, str]  # lang -> "name: keyword, keyword"


def _emoji_labels(path: pathlib.Path) -> list[tuple[str, str, str]]:
    """(emoji, group, subgroup) of every fully-qualified, single-person/skin-tone-free emoji."""
    out: list[tuple[str, str, str]] = []
    group = subgroup = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#") and "; fully-qualified" in line:
            codepoints = line.split(";", 1)[0].split()
            if any(0x1F3FB <= int(cp, 16) <= 0x1F3FF for cp in codepoints):
                continue  # skin-tone variants repeat their base emoji
            out.append(("".join(chr(int(cp, 16)) for cp in codepoints), group, subgroup))
    return out


def _annotations(path: pathlib.Path) -> dict[str, str]:
    """emoji -> "name: keywords" from one CLDR annotations file (emoji without a name are skipped)."""
    names: dict[str, str] = {}
    keywords: dict[str, str] = {}
    for node in ET.parse(path).getroot().iter("annotation"):
        cp = node.get("cp", "")
        text = (node.text or "").strip()
        if not text or text == "↑↑↑":  # CLDR's "inherit from parent locale"
            continue
        if node.get("type") == "tts":
            names[cp] = text
        else:
            keywords[cp] = ", ".join(k.strip() for k in text.split("|") if k.strip())
    return {cp: f"{name}: {keywords[cp]}" if keywords.get(cp) else name for cp, name in names.items()}


def labelled_emoji(languages: tuple[str, ...] = ("en", *LANGUAGES)) -> list[LabelledItem]:
    """Emoji with a Unicode subgroup label and their CLDR name + keywords in each language."""
    root, _entry = _source("emoji")
    per_lang = {lang: _annotations(root / f"annotations-{lang}.xml") for lang in languages}
    items: list[LabelledItem] = []
    for emoji, group, subgroup in _emoji_labels(root / "emoji-test.txt"):
        if subgroup in AMBIGUOUS_SUBGROUPS:
            continue
        lookup = emoji.replace("\ufe0f", "")
        texts = {lang: ann.get(emoji) or ann.get(lookup, "") for lang, ann in per_lang.items()}
        if not texts.get("en"):
            continue
        items.append(
            LabelledItem(
                id=emoji,
                group=group,
                subgroup=subgroup,
                label=TOPIC_OF_SUBGROUP.get(subgroup, ""),
                texts={lang: text for lang, text in texts.items() if text},
            )
        )
    return items


if __name__ == "__main__":  # a summary of what the loaders yield
    corpus = parallel_sentences()
    print(f"Firefox ESR {corpus.version}: {len(corpus.english)} English sentences")
    for lang in LANGUAGES:
        sample = next(iter(corpus.translations[lang].items()), ("", ""))
        print(f"  {lang}: {len(corpus.translations[lang])} translations, e.g. {sample[1][:70]!r}")
    first = next(iter(corpus.english.items()))
    print(f"  en e.g. {first[0]}: {first[1]!r}")
    emoji = labelled_emoji()
    from collections import Counter

    print(f"emoji: {len(emoji)} items; labels {dict(Counter(i.label or '(none)' for i in emoji))}")
    for lang in ("en", *LANGUAGES):
        print(f"  {lang}: {sum(lang in i.texts for i in emoji)} texts")
