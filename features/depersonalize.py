"""Depersonalization: what may leave the feature process, declared per field.

Every field of an event gets one policy: drop it, pseudonymize it (keyed HMAC, so the same
person gets the same key in every source and in both drivers, and joins still work), generalize
it (coarse location), redact it (free text through presidio-analyzer's recognizers), or keep it.
"""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from functools import cached_property
from itertools import islice
from typing import Any

import regex
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, IbanRecognizer, IpRecognizer

DEV_SECRET = "samestream-dev-secret-change-me"

_PARTICLES = "van|von|de|der|den|da|di|del|du|la|le|ten|ter|dos|das|af|av"
_CAPITALIZED = r"(?:\p{Lu}['’])?\p{Lu}\p{Ll}+(?:(?:[-'’]\p{Lu}?|\p{Lu})\p{Ll}+)*(?:-\p{Lu}\.)?"
_UPPER = r"(?:\p{Lu}['’])?\p{Lu}{2,}(?:[-'’]\p{Lu}{2,})*(?:-\p{Lu}\.)?"
_INITIAL = rf"\p{{Lu}}\.(?:-{_CAPITALIZED})?"
_NAME_WORD = rf"(?:{_CAPITALIZED}|{_UPPER}|{_INITIAL})"
PERSON_NAME = rf"(?<![\w.]){_NAME_WORD}(?:\s+(?:(?:{_PARTICLES})\s+)*{_NAME_WORD})+(?!\w)"
"""Two or more capitalized or all-capital words or initials in a row ("Olivier Fleury", "Louise
van Kasteelen", "ZEBULON QUARTERMAINE", "Jean DUPONT", "J. R. Smith", "Hans-J. KREUSEL")."""

# Every entity the recognizers know holds a digit (card, IBAN, IPv4, phone, national id), an "@"
# (email), "::" (IPv6) or two words starting with a capital in a row: text without any is skipped
# with one scan.
_MAY_HOLD_ENTITY = regex.compile(rf"[0-9@]|::|\p{{Lu}}[\p{{L}}'’.-]*\s+(?:(?:{_PARTICLES})\s+)*\p{{Lu}}")

# What an entity cannot be written without, where that is cheaper to look for than its patterns
# (presidio's IPv6 patterns alone cost several µs a scan): an email has an "@"; an IPv4 address
# digits between dots ("12.50" has too few); an IPv6 address two colons with at most four hex
# digits between them ("14:30" has one); a phone number eight digits, a national id six, each
# apart from the next by at most a few separators.
_ENTITY_NEEDS = {
    "EMAIL_ADDRESS": regex.compile("@"),
    "IP_ADDRESS": regex.compile(r"[0-9]\.[0-9]{1,3}\.[0-9]|:[0-9A-Fa-f]{0,4}:"),
    "PHONE_NUMBER": regex.compile(r"[0-9](?:[^0-9\n]{0,3}[0-9]){7}"),
    "NATIONAL_ID": regex.compile(r"[0-9](?:[^0-9\n]{0,3}[0-9]){5}"),
}


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


_EMAIL_CHARS = r"[\w!#$%&'*+/=?^`{|}~-]"
EMAIL_ADDRESS = (
    rf"(?<![\w!#$%&'*+/=?^`{{|}}~.-]){_EMAIL_CHARS}+(?:\.{_EMAIL_CHARS}+)*@\w(?:[\w-]*\w)?(?:\.\w(?:[\w-]*\w)?)+"
)
"""An email by its shape: a local part, "@", and a domain of two or more labels, whatever the
top-level domain. The look-behind starts a match only where a local part can start, so a scan is
linear in the text."""


class CardNumberRecognizer(CreditCardRecognizer):
    """Card numbers of every network: 13 to 19 digits starting with 1 to 6, with the Luhn check.

    presidio's pattern leaves out numbers starting with 2 (Mastercard's 2221-2720 range, Mir)
    and numbers grouped with dots.
    """

    PATTERNS = [
        Pattern(
            "card number",
            r"\b[1-6][0-9]{3}[-. ]?[0-9]{3,4}[-. ]?[0-9]{3,4}[-. ]?[0-9]{3,5}(?:[-. ]?[0-9]{1,3})?\b",
            0.3,
        )
    ]

    def __init__(self) -> None:
        super().__init__(replacement_pairs=[("-", ""), (" ", ""), (".", "")])


class EmailShapeRecognizer(PatternRecognizer):
    """Emails found by shape, not checked against a list of top-level domains.

    presidio's own email recognizer drops an address whose top-level domain its public-suffix
    list does not know (`someone@canary-mail.test`), and fetches that list from the network on
    first use. An address is personal whatever its domain, and the feature process must not reach
    the network.
    """

    def __init__(self) -> None:
        super().__init__(
            supported_entity="EMAIL_ADDRESS",
            patterns=[Pattern("email by shape", EMAIL_ADDRESS, 0.5)],
            global_regex_flags=regex.DOTALL | regex.MULTILINE,
        )


_PHONE_JOINT = r"(?:\)[ .\-]?|[ .\-/]?\(|[ .\-/])"
PHONE_NUMBER = (
    rf"(?<![0-9][ .\-/()]?)(?<!\w)(?P<number>(?:\+|\(\+?)?[0-9]++(?:{_PHONE_JOINT}[0-9]++)*+)"
    rf"(?P<extension>\s?(?:x|ext\.?|\#)\s?[0-9]{{1,6}})?+"
)
"""Digits in groups, as people write phone numbers: an optional "+" or "(", groups joined by one
space, dot, dash, slash or parenthesis ("+46 70 123 45 67", "(555) 123-4567", "+44 (0)20 7946
0958"), an optional extension. A match is a whole run of such groups (possessive, and never
starting inside a run, so a scan is linear); `PhoneNumberRecognizer` finds the numbers in it."""

_DATE = regex.compile(
    r"""(?x)(?<![0-9])
    (?: (?:19|20)[0-9]{2}[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12][0-9]|3[01])   # 2026-01-03
      | (?:0?[1-9]|[12][0-9]|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)[0-9]{2}   # 03.01.2026
      | (?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12][0-9]|3[01])/(?:19|20)[0-9]{2}          # 01/31/2026
    )(?![0-9])
    """
)
_NOT_A_PHONE = regex.compile(
    r"""(?x)
      (?:19|20)[0-9]{2}[-/][0-9]+                                              # invoice 2026-0042
    | (?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])             # 20260103
    | (?:0[1-9]|[12][0-9]|3[01])(?:0[1-9]|1[0-2])(?:19|20)[0-9]{2}             # 03012026
    """
)
_GROUP = regex.compile(r"\S+")


_NUMBER_LABEL = regex.compile(
    r"""(?ix)
    (?:\b(?:order|ordre|bestellung|bestellnr|commande|pedido|ordine|invoice|faktura|rechnung|factura|facture
       |fattura|receipt|kvitto|quittung|beleg|ticket|booking|buchung|reservation|ref|reference|referens|referenz
       |ocr|kid|tracking|sendung|parcel|paket|shipment|transaction|txn|confirmation|voucher|coupon|serial
       |label|article|artikel|item|sku|ean|product|model|table|room|seat|gate|flight|batch|lot)
       (?:\s*(?:no|nr|number|num|id)\b\.?)?
     |\#)
    [\s:.\#-]{0,3}\Z
    """
)
"""A word that says what a number is when it is not a phone number ("Order 12345678", "Invoice
no. 20260103001", "#48213991", "Ref 32154/8116"): looked for just before the digits."""

_CURRENCY = r"(?:EUR|USD|GBP|SEK|NOK|DKK|CHF|PLN|CZK|HUF|ISK|kr|kronor|euros?|€|\$|£)"
_AMOUNT_BEFORE = regex.compile(rf"(?i)\b{_CURRENCY}\s?\Z|[€$£]\Z")
_AMOUNT_AFTER = regex.compile(rf"(?i)\s?{_CURRENCY}(?!\w)")


def _is_phone(text: str, start: int, end: int) -> bool:
    """Whether digits shaped like a phone number are one, judged by the words next to them."""
    before = max(0, start - 32)
    if _AMOUNT_BEFORE.search(text, before, start) or _AMOUNT_AFTER.match(text, end):
        return False
    return text.startswith(("+", "(", "00"), start) or _NUMBER_LABEL.search(text, before, start) is None


class PhoneNumberRecognizer(PatternRecognizer):
    """Phone numbers in international and national formats, from their shape.

    presidio's `PhoneRecognizer` (python-phonenumbers) needs the caller's region for a national
    number, misses made-up but plausible numbers (`(555) 123-4567`) in its strict modes, finds
    order numbers and dates ("48213", "2026-01-03") in its lenient one, and costs about 60 µs per
    region and text. This one takes 8 to 15 digits, in groups ("070-123 45 67", "+1-202-555-0143",
    "0049 30 1234567") or not ("91234567"), as a phone number unless they are a date or a
    year-numbered invoice ("2026-0042"), an amount (a currency next to them: "12 500 000 SEK"), or
    come right after a word that says what else they are (`_NUMBER_LABEL`: "Order 12345678").
    A number that starts like a phone number ("+", "(", "00") is one whatever the word before
    it. Any other number of eight digits or more is redacted: the cheaper error.
    """

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PHONE_NUMBER",
            patterns=[Pattern("digits in phone groups", PHONE_NUMBER, 0.5)],
            global_regex_flags=regex.DOTALL | regex.MULTILINE | regex.IGNORECASE,
        )
        self._run = regex.compile(PHONE_NUMBER, self.global_regex_flags)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        """Each run of digit groups, dates blanked out first so that a date next to a number does
        not hide it, is taken whole if it is a phone number, else split at its spaces into the
        longest numbers that are ("Order 48213 070-123 45 67" holds one)."""
        masked = _DATE.sub(lambda m: "_" * len(m.group()), text) if "/" in text or "-" in text or "." in text else text
        results = []
        for run in self._run.finditer(masked):
            start, end = run.span("number")
            if masked.startswith((".", ",", ":"), end) and masked[end + 1 : end + 2].isdigit():
                end = masked.rfind(" ", start, end)  # the last group is an amount's or a time's: 1 234,50
            groups = [
                (g.start(), g.end(), _digit_count(g.group())) for g in _GROUP.finditer(text, start, max(end, start))
            ]
            i = 0
            while i < len(groups):
                found = _longest_phone(text, groups, i)
                if found is None:
                    i += 1
                    continue
                stop = run.end() if found == len(groups) - 1 and end == run.end("number") else groups[found][1]
                results.append(RecognizerResult(self.supported_entities[0], groups[i][0], stop, 1.0))
                i = found + 1
        return results


def _digit_count(group: str) -> int:
    """Digits of a phone number in one group: a trunk "(0)" after the country code is not one."""
    return sum(c.isdigit() for c in group) - group.count("(0)")


def _longest_phone(text: str, groups: list[tuple[int, int, int]], first: int) -> int | None:
    """Index of the last group of the longest phone number starting at group `first`, if any."""
    last, digits = first, groups[first][2]
    while last + 1 < len(groups) and digits + groups[last + 1][2] <= 15:
        last += 1
        digits += groups[last][2]
    while last >= first and digits >= 8:
        start, end = groups[first][0], groups[last][1]
        if digits <= 15 and _NOT_A_PHONE.fullmatch(text, start, end) is None and _is_phone(text, start, end):
            return last
        digits -= groups[last][2]
        last -= 1
    return None


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _day_month(day: int, month: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _se_date(d: str) -> bool:
    """YYMMDD of a Swedish personnummer (day + 60 in a samordningsnummer)."""
    day = int(d[4:6])
    return _day_month(day - 60 if day > 60 else day, int(d[2:4]))


def _ddmmyy(d: str) -> bool:
    """DDMMYY that Danish, Finnish and Norwegian ids start with (Norway adds 40 to the day of a
    D-number and to the month of an H-number)."""
    day, month = int(d[0:2]), int(d[2:4])
    return _day_month(day - 40 if day > 40 else day, month - 40 if month > 40 else month)


def _with_separator(text: str) -> bool:
    """A Swedish (YYMMDD-NNNN) or Danish (DDMMYY-SSSS) number: the date is enough; a wrong check
    digit is a typo of a real number, not a reason to let it through."""
    d = _digits(text)[-10:]
    return _se_date(d) or _ddmmyy(d)


def _weighted(d: str, weights: Iterable[int]) -> int:
    return sum(int(c) * w for c, w in zip(d, weights, strict=False))


def _no_fnr(d: str) -> bool:
    k1 = (11 - _weighted(d, (3, 7, 6, 1, 8, 9, 4, 5, 2)) % 11) % 11
    k2 = (11 - _weighted(d, (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)) % 11) % 11
    return _ddmmyy(d) and d[9:] == f"{k1}{k2}"


def _pl_pesel(d: str) -> bool:
    return (10 - _weighted(d, (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)) % 10) % 10 == int(d[10])


def _ee_isikukood(d: str) -> bool:
    check = _weighted(d, (1, 2, 3, 4, 5, 6, 7, 8, 9, 1)) % 11
    if check == 10:
        check = _weighted(d, (3, 4, 5, 6, 7, 8, 9, 1, 2, 3)) % 11 % 10
    return d[0] in "123456" and check == int(d[10])


def _be_national(d: str) -> bool:
    return 97 - int(d[:9]) % 97 == int(d[9:]) or 97 - int("2" + d[:9]) % 97 == int(d[9:])


def _bare_digits(text: str) -> bool:
    """A national id written as digits only, told from other numbers by its checksum."""
    d = text.replace(".", "").replace(" ", "").replace("-", "")
    if len(d) == 9:  # Dutch BSN, the "11-proof"
        return _weighted(d, (9, 8, 7, 6, 5, 4, 3, 2)) % 11 == int(d[8]) % 11 and d != "000000000"
    if len(d) in (10, 12):  # Swedish personnummer, YYMMDDNNNN or YYYYMMDDNNNN
        return (len(d) == 10 or d[:2] in ("19", "20")) and _se_date(d[-10:]) and _luhn(d[-10:])
    if len(d) == 11:  # Norwegian fødselsnummer, Polish PESEL, Estonian isikukood, Belgian number
        return _no_fnr(d) or _pl_pesel(d) or _ee_isikukood(d) or _be_national(d)
    if len(d) == 15:  # French NIR with its key; Corsica's departments 2A and 2B count as 19 and 18
        number = d[:5] + {"2A": "19", "2B": "18"}.get(d[5:7], d[5:7]) + d[7:13]
        return number.isdigit() and 97 - int(number) % 97 == int(d[13:])
    return False


def _shape_only(text: str) -> bool:
    return True


NATIONAL_IDS: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ("SE/DK with separator", r"\b(?:19|20)?[0-9]{6}[-+][0-9]{4}\b", _with_separator),
    ("FI henkilötunnus", r"\b[0-9]{6}[-+A-FU-Y][0-9]{3}[0-9A-FHJ-NPR-Y]\b", lambda t: _ddmmyy(t[:6])),
    (
        "digits only (NL, SE, NO, PL, EE, BE, FR)",
        r"\b(?:[0-9]{9,12}|[0-9]{15}|[12][0-9]{4}2[AB][0-9]{8})\b",
        _bare_digits,
    ),
    ("NL BSN with dots", r"\b[0-9]{4}\.[0-9]{2}\.[0-9]{3}\b", _bare_digits),
    ("BE national number", r"\b[0-9]{2}\.[0-9]{2}\.[0-9]{2}[-. ][0-9]{3}\.[0-9]{2}\b", _bare_digits),
    ("FR NIR spaced", r"\b[12] [0-9]{2} [0-9]{2} (?:[0-9]{2}|2[AB]) [0-9]{3} [0-9]{3} [0-9]{2}\b", _bare_digits),
    ("US SSN", r"\b[0-9]{3}([- ])[0-9]{2}\1[0-9]{4}\b", _shape_only),
    ("UK National Insurance", r"\b[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-Z]\b", _shape_only),
    ("ES DNI / NIE", r"\b(?:[0-9]{8}|[XYZ]-?[0-9]{7})-?[A-Z]\b", _shape_only),
    ("IT codice fiscale", r"\b[A-Z]{6}[0-9LMNP-V]{2}[A-EHLMPR-T][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z]\b", _shape_only),
    ("CH AHV", r"\b756[. ]?[0-9]{4}[. ]?[0-9]{4}[. ]?[0-9]{2}\b", _shape_only),
)
"""National identity numbers of the countries the use cases serve: name, pattern, and the check
a match must pass. A shape no other number has (letters where ids have them, the US 3-2-4
grouping) is enough; digits alone must pass their checksum, or every order number would go."""


class NationalIdRecognizer(PatternRecognizer):
    """National identity numbers (`NATIONAL_ID`), each pattern with its own check.

    presidio's country recognizers refuse the numbers published as examples (`123-45-6789`,
    `QQ 12 34 56 C`) and a personnummer whose check digit is off; a number that looks that much
    like an id is redacted here. Case matters: ids are written in capitals.
    """

    def __init__(self) -> None:
        super().__init__(
            supported_entity="NATIONAL_ID",
            patterns=[Pattern(name, pattern, 0.5) for name, pattern, _ in NATIONAL_IDS],
            global_regex_flags=regex.DOTALL | regex.MULTILINE,
        )
        self._checks = tuple((regex.compile(p, self.global_regex_flags), check) for _, p, check in NATIONAL_IDS)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        return [
            RecognizerResult(self.supported_entities[0], m.start(), m.end(), 1.0)
            for pattern, check in self._checks
            for m in pattern.finditer(text)
            if check(m.group())
        ]


_LEADS = frozenset(
    """
    for from to by with and of at via dear hi hello hey thanks thank love att attn mr mrs ms miss dr
    och und et y til fra für pour para
    """.split()  # noqa: SIM905 - a word list reads better as text
)
"""Words that introduce a name ("Thanks Anna", "For Erik Berg"): trimmed from the front of a
capitalized phrase, and a single capitalized word after one of them is still a name."""

_NOT_NAMES = frozenset(
    """
    the a an you your our my his her their please pls ok okay
    happy birthday merry christmas new year easter wedding anniversary congratulations best wishes
    gift card voucher order invoice receipt payment refund transfer deposit rent share fee fees
    monthly annual weekly daily subscription membership renewal plan premium family pro plus
    mini air ticket tickets booking flight hotel train bus taxi seat reservation day pass zone
    lunch dinner breakfast team office party shop store online sale cash withdrawal atm
    vat tax incl included excl total amount balance account number no nr ref reference id
    service services repair warranty extension delivery shipping return label parcel
    groceries fuel pharmacy phone mobile tel sms device ip pin iban bic swift ssn bought trip top up
    eur usd gbp sek nok dkk chf pln czk huf
    """.split()  # noqa: SIM905 - a word list reads better as text
)
"""Words that start or make up capitalized phrases of payment references ("Thank You", "Gift
Card", "ATM WITHDRAWAL", "Hotel Paris") but are not names: trimmed from the front of a phrase,
which is no name if fewer than two words remain. Names that are also words ("Rose", "Max",
"Bill", "Grant") are deliberately absent, and words are trimmed only from the front, so "Doris
Day" stays whole."""

_WORD = regex.compile(r"[\p{L}'’-]+")


class PersonNameRecognizer(PatternRecognizer):
    """Names of people in free text, from their shape alone: two or more capitalized or all-capital
    words in a row.

    presidio finds names with a spaCy model, which would be downloaded at run time; this
    recognizer needs nothing. It errs on the side of privacy: a capitalized phrase ("Los Angeles",
    "Apple Watch") is redacted like a name unless it is one of the reference's own words
    (`_NOT_NAMES`: "Thank You", "Hotel Paris"); a single capitalized word is a name after a word
    that introduces one ("Thanks Anna"). A lower-case name of someone else, or a single one
    without such a word, is not found; the event's own name is, by `Redactor`.
    Free text is a reference on a payment, so losing a phrase costs little and a leaked name a lot.
    """

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PERSON",
            patterns=[Pattern("capitalized words", PERSON_NAME, 0.5)],
            global_regex_flags=regex.DOTALL | regex.MULTILINE,  # case matters: no IGNORECASE
        )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts, regex_flags):
            words = [(w.start(), w.group().lower()) for w in _WORD.finditer(text, result.start, result.end)]
            first = 0
            while first < len(words) and (words[first][1] in _LEADS or words[first][1] in _NOT_NAMES):
                first += 1
            if len(words) - first >= 2 or (len(words) - first == 1 and words[first - 1][1] in _LEADS):
                result.start = words[first][0]
                kept.append(result)
        return kept


SEEN_TEXTS = 50_000
"""Texts whose entities a Redactor remembers (forgotten all at once when full): references repeat
("Groceries", "Lunch") and a lookup costs a fraction of a microsecond where a scan costs 5-50."""

KNOWN_VALUES = 50_000
"""Personal values whose search terms a Redactor remembers: the same customer pays again."""

MIN_TERM = 3
"""Shortest piece of a known value searched for: "Al", "Li" or "de" would hit every other text."""

_FOLD_SPECIAL = {"ø": "o", "ł": "l", "đ": "d", "ð": "d", "ı": "i", "ħ": "h", "ŧ": "t", "’": "'", "‘": "'"}


class _FoldTable(dict[int, str]):
    """Character -> its lower-case letter without accents, one character for one, so positions in
    folded text are positions in the original ("Ö" -> "o", "İ" -> "i", "ß" stays)."""

    def __missing__(self, code: int) -> str:
        c = chr(code)
        decomposed = unicodedata.normalize("NFD", c)
        base = decomposed[0] if all(unicodedata.combining(m) for m in decomposed[1:]) else c
        lower = base.lower()
        folded = self[code] = _FOLD_SPECIAL.get(lower, lower) if len(lower) == 1 else base
        return folded


_FOLD = _FoldTable()


def _fold(text: str) -> str:
    """Text in lower case without accents, of the same length, so that what is found in it can be
    cut out of the original."""
    return text.lower() if text.isascii() else text.translate(_FOLD)


_NAME_LIKE = regex.compile(r"\p{L}[\p{L}'.\s-]*")
_NAME_PARTS = regex.compile(r"[^\s.]+")
_LOCAL_PARTS = regex.compile(r"[^._+-]+")
_DIGIT_RUN = regex.compile(r"[0-9](?:[ .\-/()]{0,2}[0-9])*")
_PARTICLE_SET = frozenset(_PARTICLES.split("|"))


_WORD_CHAR = regex.compile(r"[\p{L}\p{N}]")
"""What a word is made of, for whole-word matching: letters and digits."""


class _Terms:
    """What to look for of personal values, folded: each value itself anywhere; its words (of a
    name, an email's local part and domain) as whole words; its digits (a card or phone number)
    whatever separates them."""

    __slots__ = ("anywhere", "words", "digits")

    def __init__(self, value: str) -> None:
        folded = _fold(value.strip())
        self.anywhere: tuple[str, ...] = (folded,) if len(folded) >= MIN_TERM else ()
        words: set[str] = set()
        if _NAME_LIKE.fullmatch(folded):
            parts = _NAME_PARTS.findall(folded)
            for i, part in enumerate(parts):
                words.add(part)
                words.update(part.split("-"))
                if part in _PARTICLE_SET:  # "van berg" of "Anna van Berg": the particle with the name
                    rest = next((j for j in range(i, len(parts)) if parts[j] not in _PARTICLE_SET), len(parts))
                    words.add(" ".join(parts[i : rest + 1]))
        elif folded.count("@") == 1:
            local, domain = folded.split("@")
            words.add(local)
            words.update(p for p in _LOCAL_PARTS.findall(local.split("+")[0]) if p.isalpha())
            if "." in domain:
                words.add(domain)
        self.words = tuple(w for w in words if len(w) >= MIN_TERM and w not in _PARTICLE_SET and w != folded)
        digits = _digits(folded)
        self.digits: tuple[str, ...] = (digits,) if len(digits) >= 6 else ()

    @classmethod
    def union(cls, parts: list[_Terms]) -> _Terms:
        """The terms of several values together."""
        union = cls.__new__(cls)
        union.anywhere, union.words, union.digits = (), (), ()
        for part in parts:
            union.anywhere += part.anywhere
            union.words += part.words
            union.digits += part.digits
        return union


class _Text:
    """What a Redactor remembers of a text: its entities, and what `known` values are looked
    for in: the text folded, and (found when first needed) its runs of six digits or more, each
    with the positions of its digits."""

    __slots__ = ("text", "entities", "folded", "_numbers")

    def __init__(self, text: str, entities: tuple[tuple[int, int, str], ...]) -> None:
        self.text = text
        self.entities = entities
        self.folded = _fold(text)
        self._numbers: tuple[tuple[str, tuple[int, ...]], ...] | None = None

    @property
    def numbers(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        if self._numbers is None:
            numbers = []
            if _ENTITY_NEEDS["NATIONAL_ID"].search(self.text) is not None:
                for run in _DIGIT_RUN.finditer(self.text):
                    at = tuple(run.start() + i for i, c in enumerate(run.group()) if c.isdigit())
                    if len(at) >= 6:
                        numbers.append(("".join(self.text[i] for i in at), at))
            self._numbers = tuple(numbers)
        return self._numbers


def _whole_word(folded: str, start: int, end: int) -> bool:
    return (start == 0 or _WORD_CHAR.match(folded, start - 1) is None) and _WORD_CHAR.match(folded, end) is None


class Redactor:
    """Replaces personal data in free text with `<ENTITY_TYPE>` placeholders.

    presidio-analyzer's pattern recognizers (IBAN with checksum, IP address, card number with Luhn
    check) and the recognizers of this module (email by shape, phone number, national id, person
    name) find the entities; no spaCy model is needed, so nothing is downloaded. A
    recognizer's full analysis costs 5-50 µs, so each one runs only on text its own patterns
    match, found with a few precompiled scans, and what a text holds is remembered for the next
    time it comes. `known` values (every personal value of the same event) are redacted on top,
    in any case and without accents: the whole value anywhere, a name's or an email's words as
    whole words, a number's digits whatever separates them. What is remembered of a text does
    not depend on `known`, which is matched on every call.
    """

    def __init__(self, recognizers: Iterable[PatternRecognizer] | None = None) -> None:
        self.recognizers: tuple[PatternRecognizer, ...] = tuple(
            recognizers
            if recognizers is not None
            else (
                EmailShapeRecognizer(),
                CardNumberRecognizer(),
                IbanRecognizer(),
                IpRecognizer(),
                PhoneNumberRecognizer(),
                NationalIdRecognizer(),
                PersonNameRecognizer(),
            )
        )
        self._seen: dict[str, _Text] = {}
        self._terms: dict[str, _Terms] = {}
        self._known: dict[tuple[object, ...], _Terms] = {}

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
        return list(self._text(text).entities)

    def _text(self, text: str) -> _Text:
        seen = self._seen.get(text)
        if seen is None:
            seen = _Text(text, self._scan(text))
            if len(self._seen) >= SEEN_TEXTS:
                self._seen.clear()
            self._seen[text] = seen
        return seen

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

    def spans(self, text: str, known: Iterable[object] = ()) -> list[tuple[int, int, str]]:
        """(start, end, entity_type) of everything `redact` replaces: the entities, and where any
        of the `known` values appears (`PERSON_DATA`); overlaps merged.

        `known` holds the raw personal values of the event the text belongs to (name, email,
        customer id, card number, ...); None and empty values are skipped, numbers compared as
        text. Not the text itself: a value equal to the whole text redacts all of it.
        """
        if not text:
            return []
        seen = self._text(text)
        spans = list(seen.entities)
        _find_known(seen, self._known_terms(known), spans)
        return _join_names(text, _merge(spans)) if len(spans) > len(seen.entities) else spans

    def _known_terms(self, known: Iterable[object]) -> _Terms:
        """The terms of all `known` values at once, remembered per tuple of values: an event's
        values come again with the customer's next payment."""
        values = known if isinstance(known, tuple) else tuple(known)
        try:
            terms = self._known.get(values)
        except TypeError:  # an unhashable value: not remembered
            return self._union(values)
        if terms is None:
            if len(self._known) >= KNOWN_VALUES:
                self._known.clear()
            terms = self._known[values] = self._union(values)
        return terms

    def _union(self, values: tuple[object, ...]) -> _Terms:
        parts = []
        for value in values:
            if value is None or value == "" or isinstance(value, bool):
                continue
            key = value if isinstance(value, str) else str(value)
            terms = self._terms.get(key)
            if terms is None:
                if len(self._terms) >= KNOWN_VALUES:
                    self._terms.clear()
                terms = self._terms[key] = _Terms(key)
            parts.append(terms)
        return parts[0] if len(parts) == 1 else _Terms.union(parts)

    def redact(self, text: str, known: Iterable[object] = ()) -> tuple[str, int]:
        """Return the text with personal data replaced, and how many entities were replaced."""
        if not text:
            return text, 0
        spans = self.spans(text, known)
        if not spans:
            return text, 0
        parts: list[str] = []
        cursor = 0
        for start, end, entity in spans:
            parts.append(text[cursor:start])
            parts.append(f"<{entity}>")
            cursor = end
        parts.append(text[cursor:])
        return "".join(parts), len(spans)


def _find_known(seen: _Text, terms: _Terms, spans: list[tuple[int, int, str]]) -> None:
    """Add to `spans` where the known values' terms appear in the text."""
    folded = seen.folded
    for term in terms.anywhere:
        start = folded.find(term)
        while start != -1:
            spans.append((start, start + len(term), "PERSON_DATA"))
            start = folded.find(term, start + len(term))
    for word in terms.words:
        start = folded.find(word)
        while start != -1:
            end = start + len(word)
            if _whole_word(folded, start, end):
                spans.append((start, end, "PERSON_DATA"))
            start = folded.find(word, start + 1)
    if terms.digits and seen.numbers:
        for number in terms.digits:
            for digits, at in seen.numbers:
                start = digits.find(number)
                while start != -1:
                    spans.append((at[start], at[start + len(number) - 1] + 1, "PERSON_DATA"))
                    start = digits.find(number, start + 1)


_NAME_GAP = regex.compile(rf"[\s'’-]{{1,3}}|\s+(?:{_PARTICLES})\s+", regex.IGNORECASE)
_NAMES = frozenset(("PERSON", "PERSON_DATA"))


def _join_names(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """One placeholder for the words of one name found one by one ("lisa van berg" of "Anna Lisa
    van Berg"), so neither the words between them nor their number survive."""
    joined = spans[:1]
    for start, end, entity in spans[1:]:
        last = joined[-1]
        if entity in _NAMES and last[2] in _NAMES and _NAME_GAP.fullmatch(text, last[1], start):
            joined[-1] = (last[0], end, last[2])
        else:
            joined.append((start, end, entity))
    return joined


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Overlapping spans as one, named after the longest of those starting first (a card number
    holds a phone-shaped prefix), the event's own data before any entity of the same extent."""
    merged: list[tuple[int, int, str]] = []
    for start, end, entity in sorted(spans, key=lambda s: (s[0], -s[1], s[2] != "PERSON_DATA", s[2])):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, entity))
    return merged


MAX_TEXT = 4096
"""Characters of a dead letter's payload kept: enough to see what was wrong, bounded to redact."""

NULL_PAYLOAD = "<null>"
"""A dead letter's payload when the message had none (a Kafka record with a NULL value)."""


def redact_payload(payload: object, personal_fields: Iterable[str], redactor: Redactor) -> str:
    """Make a rejected event safe to keep as a dead letter: personal fields masked, text redacted.

    A dead letter must say what was wrong without becoming a leak of its own. Any payload is
    accepted: a mapping (masked field by field), bytes (decoded, invalid UTF-8 replaced), text,
    None (`NULL_PAYLOAD`) or anything else (its repr); what is kept is cut to `MAX_TEXT`.
    """
    if payload is None:
        return NULL_PAYLOAD
    personal = frozenset(personal_fields)
    if isinstance(payload, Mapping | list | tuple):
        text = _cut(repr(_printable(payload, personal, 0)))
    else:
        if isinstance(payload, bytes | bytearray | memoryview):
            # 4 bytes at most per character: cut before decoding, so a huge message costs nothing
            text = bytes(payload[: 4 * MAX_TEXT + 4]).decode("utf-8", "replace")
        else:
            text = payload if isinstance(payload, str) else repr(payload)
        text = _cut(text)
        for name in personal:
            text = regex.sub(
                rf'("{regex.escape(name)}"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}}\]]+)',
                r'\1"<redacted>"',
                text,
            )
    return redactor.redact(text)[0]


def _cut(text: str) -> str:
    return text[:MAX_TEXT] + "…" if len(text) > MAX_TEXT else text


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
            pairs = islice(value.items(), MAX_ITEMS)
            kept = {k: "<redacted>" if k in personal else _printable(v, personal, depth + 1) for k, v in pairs}
            return kept | {"…": f"{more} more"} if more > 0 else kept
        listed = [_printable(v, personal, depth + 1) for v in islice(value, MAX_ITEMS)]
        return [*listed, f"… {more} more"] if more > 0 else listed
    return value
