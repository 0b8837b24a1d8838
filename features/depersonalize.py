"""Depersonalization: what may leave the feature process, declared per field.

Every field of an event gets one policy: drop it, pseudonymize it (keyed HMAC, so the same
person gets the same key in every source and in both drivers, and joins still work), generalize
it (coarse location), redact it (free text through presidio-analyzer's recognizers), or keep it.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import cached_property
from typing import Any

import regex
import tldextract
from presidio_analyzer import Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
)

DEV_SECRET = "samestream-dev-secret-change-me"

_PARTICLES = "van|von|de|der|den|da|di|del|du|la|le|ten|ter|dos|das|af|av"
_CAPITALIZED = r"\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)*"
PERSON_NAME = rf"\b{_CAPITALIZED}(?:\s+(?:(?:{_PARTICLES})\s+)*{_CAPITALIZED})+\b"
"""Two or more capitalized words in a row ("Olivier Fleury", "Louise van Kasteelen")."""

# Every entity the recognizers know holds a digit (card, IBAN, IPv4), an "@" (email), "::"
# (IPv6) or two capitalized words in a row (a name): text without any is skipped with one scan.
_MAY_HOLD_ENTITY = regex.compile(rf"[0-9@]|::|\p{{Lu}}\p{{Ll}}+[\s'’-]+(?:(?:{_PARTICLES})\s+)*\p{{Lu}}\p{{Ll}}")


# What an entity cannot be written without, where that is cheaper to look for than its patterns
# (presidio's IPv6 patterns alone cost several µs a scan): an email has an "@"; an IPv4 address
# a digit, a dot and a digit; an IPv6 address a colon.
_ENTITY_NEEDS = {"EMAIL_ADDRESS": regex.compile("@"), "IP_ADDRESS": regex.compile(r"[0-9]\.[0-9]|:")}


_Prefilter = tuple[tuple[regex.Pattern[str], ...], tuple[regex.Pattern[str], ...], PatternRecognizer]


class Policy(StrEnum):
    """What happens to one field before anything leaves the feature process."""

    DROP = "drop"
    PSEUDONYMIZE = "pseudonymize"
    GENERALIZE = "generalize"
    REDACT = "redact"
    KEEP = "keep"


class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms: stable per (domain, value), irreversible without the secret.

    The domain ("customer", "card", "device") keeps equal strings of different kinds apart while
    letting every source that names the same customer join on the same pseudonym.
    """

    def __init__(self, secret: str | bytes, length: int = 20, cache_size: int = 262_144) -> None:
        if not secret:
            raise ValueError("pseudonymization secret is empty: set SAMESTREAM_SECRET")
        self._key = secret.encode() if isinstance(secret, str) else secret
        self._length = length
        self._cache: dict[tuple[str, str], str] = {}
        self._cache_size = cache_size

    def __call__(self, domain: str, value: str) -> str:
        cached = self._cache.get((domain, value))
        if cached is not None:
            return cached
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        digest = hmac.digest(self._key, f"{domain}\x1f{value}".encode(), "sha256")
        pseudonym = self._cache[(domain, value)] = digest.hex()[: self._length]
        return pseudonym


def generalize_coordinate(value: float, decimals: int = 2) -> float:
    """Round a coordinate to about 1 km (2 decimals) so a location no longer pins an address."""
    return round(value, decimals)


class _OfflineEmailRecognizer(EmailRecognizer):
    """presidio's email recognizer, validating top-level domains from the bundled suffix list.

    The stock recognizer asks tldextract to download the public-suffix list on first use; the
    feature process must never reach the network, so the snapshot shipped with tldextract is used.
    """

    _extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    def validate_result(self, pattern_text: str) -> bool:
        return bool(self._extract(pattern_text).fqdn)


class PersonNameRecognizer(PatternRecognizer):
    """Names of people in free text, from their shape alone: two or more capitalized words.

    presidio finds names with a spaCy model, which would be downloaded at run time; this
    recognizer needs nothing. It errs on the side of privacy: a capitalized phrase ("New York",
    "For Anna Berg") is redacted with the name, a lower-case or single-word name is not found.
    Free text is a reference on a payment, so losing a phrase costs little and a leaked name a lot.
    """

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PERSON",
            patterns=[Pattern("capitalized words", PERSON_NAME, 0.5)],
            global_regex_flags=regex.DOTALL | regex.MULTILINE,  # case matters: no IGNORECASE
        )


SEEN_TEXTS = 50_000
"""Texts whose entities a Redactor remembers (forgotten all at once when full): references repeat
("Groceries", "Lunch") and a lookup costs a fraction of a microsecond where a scan costs 5-50."""


class Redactor:
    """Replaces personal data in free text with `<ENTITY_TYPE>` placeholders.

    presidio-analyzer's pattern recognizers (email, card number with Luhn check, IBAN with
    checksum, IP address) and `PersonNameRecognizer` find the entities; no spaCy model is needed,
    so nothing is downloaded. A recognizer's full analysis (validation, context, a public-suffix
    lookup) costs 5-50 µs, so each one runs only on text its own patterns match, found with a few
    precompiled scans, and what a text holds is remembered for the next time it comes. `known`
    values (the cardholder's own name and email from the same event) are redacted too, whatever
    their case.
    """

    def __init__(self, recognizers: Iterable[PatternRecognizer] | None = None) -> None:
        self.recognizers: tuple[PatternRecognizer, ...] = tuple(
            recognizers
            if recognizers is not None
            else (
                _OfflineEmailRecognizer(),
                CreditCardRecognizer(),
                IbanRecognizer(),
                IpRecognizer(),
                PersonNameRecognizer(),
            )
        )
        self._seen: dict[str, tuple[tuple[int, int, str], ...]] = {}

    @cached_property
    def _prefilters(self) -> tuple[_Prefilter, ...]:
        """Each recognizer with the scans text must pass before it is analyzed: what its entity
        needs, if known, then each of its patterns in its own flags (one alternation of them all
        scans slower than the patterns one by one)."""
        prefilters = []
        for r in self.recognizers:
            flags = r.global_regex_flags & (regex.IGNORECASE | regex.MULTILINE | regex.DOTALL)
            patterns = tuple(regex.compile(p.regex, flags) for p in r.patterns)  # type: ignore[has-type]
            needs = tuple(_ENTITY_NEEDS[e] for e in r.supported_entities if e in _ENTITY_NEEDS)
            prefilters.append((needs, patterns, r))
        return tuple(prefilters)

    def entities(self, text: str) -> list[tuple[int, int, str]]:
        """Return (start, end, entity_type) of every entity found, overlaps merged."""
        found = self._seen.get(text)
        if found is None:
            found = self._scan(text)
            if len(self._seen) >= SEEN_TEXTS:
                self._seen.clear()
            self._seen[text] = found
        return list(found)

    def _scan(self, text: str) -> tuple[tuple[int, int, str], ...]:
        if not text or _MAY_HOLD_ENTITY.search(text) is None:
            return ()
        spans: list[tuple[int, int, str]] = []
        for needs, patterns, recognizer in self._prefilters:
            if any(n.search(text) is None for n in needs) or all(p.search(text) is None for p in patterns):
                continue
            for result in recognizer.analyze(text, recognizer.supported_entities, None):
                if result.score >= 0.5:
                    spans.append((result.start, result.end, result.entity_type))
        return tuple(_merge(spans))

    def redact(self, text: str, known: Iterable[str] = ()) -> tuple[str, int]:
        """Return the text with personal data replaced, and how many entities were replaced."""
        if not text:
            return text, 0
        spans = self.entities(text)
        lowered = text.lower()
        for value in known:
            value = value.strip()
            if len(value) < 3:
                continue
            start = lowered.find(value.lower())
            while start != -1:
                spans.append((start, start + len(value), "PERSON_DATA"))
                start = lowered.find(value.lower(), start + len(value))
        if not spans:
            return text, 0
        merged = _merge(spans)
        parts: list[str] = []
        cursor = 0
        for start, end, entity in merged:
            parts.append(text[cursor:start])
            parts.append(f"<{entity}>")
            cursor = end
        parts.append(text[cursor:])
        return "".join(parts), len(merged)


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    for start, end, entity in sorted(spans):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, entity))
    return merged


def redact_payload(payload: Mapping[str, Any] | bytes | str, personal_fields: Iterable[str], redactor: Redactor) -> str:
    """Make a rejected event safe to keep as a dead letter: personal fields masked, text redacted.

    A dead letter must say what was wrong without becoming a leak of its own.
    """
    personal = frozenset(personal_fields)
    if isinstance(payload, Mapping):
        text = repr(_printable(payload, personal, 0))
    else:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if len(text) > 4096:
            text = text[:4096] + "…"
        for name in personal:
            text = regex.sub(
                rf'("{regex.escape(name)}"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}}\]]+)',
                r'\1"<redacted>"',
                text,
            )
    return redactor.redact(text)[0]


MAX_DEPTH = 4
"""Nesting a dead letter's payload keeps; deeper containers (hostile input) are elided."""
MAX_ITEMS = 32
"""Entries per container a dead letter's payload keeps."""


def _printable(value: Any, personal: frozenset[str], depth: int) -> Any:
    """A bounded copy of a payload: personal fields masked at any depth, long text and large or
    deep containers cut, so that printing it costs little and cannot recurse without end."""
    if isinstance(value, str):
        return value[:256] + "…" if len(value) > 256 else value
    if isinstance(value, Mapping | list | tuple):
        if depth >= MAX_DEPTH:
            return f"<{type(value).__name__} nested too deep>"
        more = len(value) - MAX_ITEMS
        if isinstance(value, Mapping):
            pairs = list(value.items())[:MAX_ITEMS]
            kept = {k: "<redacted>" if k in personal else _printable(v, personal, depth + 1) for k, v in pairs}
            return kept | {"…": f"{more} more"} if more > 0 else kept
        listed = [_printable(v, personal, depth + 1) for v in list(value)[:MAX_ITEMS]]
        return [*listed, f"… {more} more"] if more > 0 else listed
    return value
