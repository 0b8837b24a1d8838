"""Redaction quality and cost: precision and recall of `Redactor` on a generated labelled set,
and µs per call on simulated payment references.

The set is generated here, seeded, offline (faker's locales, no download): references with
personal data of every kind the redactor promises to find (phone numbers in national and
international formats, emails with odd top-level domains, names of other people and the
event's own name in any case, national ids, IBANs, card numbers, IP addresses), each with the
character spans that are personal, and harmless references that look like them (order numbers,
amounts, dates, times, product and city names, "Thank you", capitalized phrases). A span counts
as found when redactions cover every character of it; characters redacted outside every span
are over-redaction, and a harmless reference with anything redacted is counted as altered.

    python bench/bench_redaction.py                 # table of the default set and timing
    python bench/bench_redaction.py --cases 6000 --seed 3 --payments 50000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.depersonalize import Redactor

Span = tuple[int, int, str]
Part = str | tuple[str, str]
"""A piece of a reference: plain text, or (value, kind) for a personal value."""


@dataclass(frozen=True)
class Case:
    """One labelled reference: its text, the event's own personal values, the personal spans."""

    text: str
    known: tuple[str, ...]
    spans: tuple[Span, ...]
    group: str
    """What the case is an example of: a personal kind, or "harmless: <what>"."""


def compose(parts: Iterable[Part], known: Sequence[str] = (), group: str = "") -> Case:
    """Join text and personal values into a case whose spans are where the values landed."""
    text, spans = "", []
    for part in parts:
        if isinstance(part, tuple):
            value, kind = part
            spans.append((len(text), len(text) + len(value), kind))
            text += value
        else:
            text += part
    return Case(text, tuple(known), tuple(spans), group or (spans[0][2] if spans else "harmless"))


OWN_NAME = "Zebulon Quartermaine"
OWN_EMAIL = "zebulon.q@canary-mail.test"
OWN = (OWN_NAME, OWN_EMAIL, "CANARY-CUSTOMER-7731", "4000001234567899", "CANARY-DEVICE-5521", "198.51.100.77")
"""The personal fields of the event the canaries belong to."""


def canaries() -> list[Case]:
    """The leaks attack testing found, and the formats of each kind that must never pass."""
    own = [
        ("thanks ", ("Zebulon", "own name")),
        (("ZEBULON QUARTERMAINE", "own name"),),
        (("zebulon quartermaine", "own name"),),
        ("Dinner with ", ("Quartermaine", "own name"), " family"),
        ("ask ", ("zebulon.q", "own email"), " about it"),
    ]
    phones = ["+46 70 123 45 67", "070-123 45 67", "(555) 123-4567", "0049 30 1234567", "+1-202-555-0143"]
    phones += ["+44 (0)20 7946 0958", "06 12 34 56 78", "+33 6 12 34 56 78", "030 1234567", "+31 20 123 4567"]
    ids = ["650729-9314", "19650729-9314", "123-45-6789", "QQ 12 34 56 C", "111222333", "RSSMRA85T10A562S"]
    cases = [compose(parts, OWN, "canary") for parts in own]
    cases += [compose(["call me on ", (p, "phone")], OWN, "canary") for p in phones]
    cases += [compose(["id ", (i, "national id")], OWN, "canary") for i in ids]
    cases += [compose(["mail ", ("someone@canary-mail.test", "email"), " please"], OWN, "canary")]
    cases += [compose(["refund to ", ("DE89 3704 0044 0532 0130 00", "iban")], OWN, "canary")]
    cases += [compose(["card ", ("4539 5787 6362 1486", "card"), " declined"], OWN, "canary")]
    cases += [compose(["login from ", ("2001:db8:85a3::8a2e:370:7334", "ip")], OWN, "canary")]
    return cases


LOCALES = ("sv_SE", "en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT", "da_DK", "fi_FI", "no_NO")
ODD_TLDS = ("test", "example", "invalid", "internal", "shop", "xyz", "photography", "co.uk", "se", "museum")

PII_TEMPLATES: dict[str, tuple[str, ...]] = {
    "phone": (
        "Call me on {v}",
        "{v}",
        "Tel. {v}, order {n}",
        "Ring {v} after 5pm",
        "Mobile: {v}",
        "Questions? {v}",
        "Deliver to door, phone {v}",
    ),
    "email": ("Receipt to {v}", "Contact {v}", "{v}", "Mail {v} for the invoice", "Refund to {v}, thanks"),
    "national id": ("Personnummer {v}", "SSN {v}", "ID: {v}", "id {v} for the rental", "{v}", "NI number {v}"),
    "iban": ("Transfer to IBAN {v}", "Refund to {v}", "Rent share, IBAN {v}", "Please pay to {v}"),
    "card": ("Refund to card {v}", "Paid with {v}", "New card {v}", "Card {v} on file"),
    "ip": ("Login from {v}", "Order placed from {v}", "Device IP {v}", "Proxy {v}, port 8080"),
    "name": ("Gift from {v}", "Birthday present for {v}", "Paid on behalf of {v}", "Dinner with {v}", "For {v}"),
    "own name": ("thanks {v}", "Gift for {v}", "from {v}, order {n}", "{v}", "Hi {v}!", "Lunch with {v} and team"),
    "own email": ("ask {v} about it", "login {v}", "user {v}"),
}
"""Where personal values sit in a reference; "{n}" is an order number around them."""


class _People:
    """Seeded personal values in the formats each country writes them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.fakers: dict[str, Any] = {}

    def faker(self, locale: str) -> Any:
        from faker import Faker  # only to generate: the canaries need none of it

        if locale not in self.fakers:
            self.fakers[locale] = Faker(locale)
            self.fakers[locale].seed_instance(self.rng.randrange(2**32))
        return self.fakers[locale]

    def locale(self) -> str:
        return self.rng.choice(LOCALES)

    def phone(self) -> str:
        """A number as faker's locales write it, or its digits regrouped as people type them."""
        number = self.faker(self.locale()).phone_number()
        if self.rng.random() < 0.7:
            return number
        digits = "".join(c for c in number.split("x")[0] if c.isdigit())
        sep, groups, at = self.rng.choice((" ", "-", ".", "")), [], 0
        while at < len(digits):
            size = self.rng.randint(2, 4)
            groups.append(digits[at : at + size])
            at += size
        return ("+" if number.startswith("+") else "") + sep.join(groups)

    def email(self, first: str, last: str) -> str:
        fake, rng = self.faker(self.locale()), self.rng
        local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randint(1, 99)}", f"{first}+shop"])
        domain = rng.choice([fake.free_email_domain(), f"{fake.domain_word()}.{rng.choice(ODD_TLDS)}"])
        address = f"{local}@{domain}".lower().replace(" ", "")
        return address.upper() if rng.random() < 0.1 else address

    def national_id(self) -> str:
        rng = self.rng
        kind = rng.choice(("se", "se12", "us", "gb", "nl", "fi", "no", "it", "fr", "ch", "es", "be", "dk", "pl"))
        if kind in ("se", "se12"):
            return self.faker("sv_SE").ssn(long=kind == "se12", dash=rng.random() < 0.7)
        if kind == "dk":
            return (
                f"{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}{rng.randint(0, 99):02d}-{rng.randint(0, 9999):04d}"
            )
        if kind == "es":
            return self.faker("es_ES").nif() if rng.random() < 0.5 else self.faker("es_ES").nie()
        locale = {
            "us": "en_US",
            "gb": "en_GB",
            "nl": "nl_NL",
            "fi": "fi_FI",
            "no": "no_NO",
            "it": "it_IT",
            "fr": "fr_FR",
            "ch": "de_CH",
            "be": "nl_BE",
            "pl": "pl_PL",
        }[kind]
        value = self.faker(locale).ssn()
        if kind == "gb" and rng.random() < 0.5:
            return value.replace(" ", "")
        return value.replace("-", " ") if kind == "us" and rng.random() < 0.3 else value

    def iban(self) -> str:
        value = self.faker(self.locale()).iban()
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if self.rng.random() < 0.5 else value

    def card(self) -> str:
        number = self.faker("en_US").credit_card_number(card_type=self.rng.choice(("visa16", "mastercard", "amex")))
        sep = self.rng.choice(("", " ", "-", "."))
        return sep.join(number[i : i + 4] for i in range(0, len(number), 4))

    def ip(self) -> str:
        fake = self.faker("en_US")
        return fake.ipv6() if self.rng.random() < 0.3 else fake.ipv4()

    def name(self) -> tuple[str, str]:
        fake = self.faker(self.locale())
        return fake.first_name(), fake.last_name()


def _without_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _own_name_variant(rng: random.Random, first: str, last: str) -> str:
    full = f"{first} {last}"
    variant = rng.choice((first, last, full.upper(), full.lower(), first.lower(), last.upper(), full))
    return _without_accents(variant) if rng.random() < 0.2 else variant


def _other_name_variant(rng: random.Random, first: str, last: str) -> str:
    return rng.choice(
        (f"{first} {last}", f"{first} {last}", f"{first.upper()} {last.upper()}", f"{first} {last.upper()}")
    )


PRODUCTS = (
    "iPhone 15 Pro",
    "Galaxy S24",
    "AirPods Pro 2",
    "Nintendo Switch",
    "PlayStation 5",
    "Kindle Paperwhite",
    "Dyson V15",
    "Apple Watch",
    "MacBook Air",
    "Lego Technic",
    "Coca-Cola 6-pack",
    "USB-C cable",
    "Philips Hue starter kit",
    "Office 365",
    "Spotify Premium",
    "Netflix",
    "IKEA Billy shelf",
)
CITIES = (
    "Stockholm",
    "Paris",
    "Berlin",
    "New York",
    "Rio de Janeiro",
    "Los Angeles",
    "Den Haag",
    "Frankfurt am Main",
    "San Sebastián",
    "Malmö",
    "Zürich",
)
HARMLESS: dict[str, Callable[[random.Random], str]] = {
    "order number": lambda r: r.choice(("Order {}", "Order #{}", "Receipt {}", "Ticket {}", "Ref {}", "OCR {}")).format(
        r.randrange(10 ** (digits := r.randint(4, 12)) // 10, 10**digits)
    ),
    "grouped order number": lambda r: r.choice(("Order {}-{}", "Order no. {} {}", "Ref {}/{}")).format(
        r.randint(100, 99999), r.randint(100, 9999)
    ),
    "year-numbered invoice": lambda r: f"Invoice {r.randint(2019, 2027)}-{r.randint(1, 9999):04d}",
    "amount": lambda r: r.choice(("{:.2f}", "EUR {:.2f}", "Total {:,.2f}", "{:.2f} SEK", "2 x {:.2f}")).format(
        r.uniform(0.5, 20_000)
    ),
    "amount with spaces": lambda r: r.choice(
        (
            f"Total {r.randint(1, 999)} {r.randint(0, 999):03d},{r.randint(0, 99):02d} kr",
            f"Down payment {r.randint(1, 99)} {r.randint(0, 999):03d} 000 SEK",
            f"3 x 4.99 + {r.randint(2, 9)} x {r.uniform(1, 99):.2f}",
        )
    ),
    "date": lambda r: r.choice(
        ("{y}-{m:02d}-{d:02d}", "{d:02d}.{m:02d}.{y}", "{d}/{m}/{y}", "{m:02d}/{d:02d}/{y}")
    ).format(y=r.randint(2020, 2027), m=r.randint(1, 12), d=r.randint(1, 28)),
    "date and time": lambda r: (
        f"Delivery {r.randint(2020, 2027)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "
        f"{r.randint(0, 23):02d}:{r.choice((0, 15, 30, 45)):02d}"
    ),
    "time range": lambda r: f"Pickup {r.randint(8, 12)}:00-{r.randint(13, 18)}:30",
    "product": lambda r: r.choice(("", "Bought ", "Return ", "1x ")) + r.choice(PRODUCTS),
    "city": lambda r: r.choice(("", "Trip to ", "Hotel ", "Flight to ")) + r.choice(CITIES),
    "thanks": lambda r: r.choice(("Thank you", "Thank You!", "THANK YOU", "thanks!", "Thanks a lot", "Tack!")),
    "capitalized phrase": lambda r: r.choice(
        ("Gift Card", "GIFT CARD", "ORDER 1234", "ATM WITHDRAWAL", "Happy Birthday", "Monthly Subscription")
        + ("VAT included", "Team Lunch", "Car Wash", "Day Pass", "Annual Membership Fee", "Top Up")
    ),
    "flight or booking": lambda r: r.choice(("Flight SK{}", "Booking ref X{}K", "Seat {}A", "Room {}")).format(
        r.randint(100, 9999)
    ),
    "address or version": lambda r: r.choice(("SE-{} {} Stockholm", "{}{} Paris", "App v{}.{}.3")).format(
        r.randint(100, 999), r.randint(10, 99)
    ),
}


def _simulated_references(rng: random.Random) -> Callable[[random.Random], str]:
    """The harmless references the fraud simulator writes, with their numbers filled in."""
    from training.simulators.fraud import REFERENCES

    templates = sorted({t for ts in REFERENCES.values() for t in ts if t})

    def draw(r: random.Random) -> str:
        return r.choice(templates).format(n=r.randint(1000, 99999), k=r.randint(1, 40), code=f"{r.randrange(36**6):X}")

    return draw


def generate(n: int = 4000, seed: int = 7, harmless_share: float = 0.4) -> list[Case]:
    """`n` labelled cases: the canaries, personal ones of every kind, and harmless look-alikes."""
    rng = random.Random(seed)
    people = _People(rng)
    harmless = {**HARMLESS, "simulated reference": _simulated_references(rng)}
    cases = canaries()
    kinds = tuple(PII_TEMPLATES)
    while len(cases) < n:
        first, last = people.name()
        email = people.email(first, last)
        known = (f"{first} {last}", email, f"C{rng.randint(1, 10**6)}", people.card().replace(" ", ""), people.ip())
        order = str(rng.randint(1000, 99999))
        if rng.random() < harmless_share:
            what = rng.choice(sorted(harmless))
            cases.append(compose([harmless[what](rng)], known, f"harmless: {what}"))
            continue
        kind = rng.choice(kinds)
        if kind == "own name":
            value = _own_name_variant(rng, first, last)
        elif kind == "own email":
            value = email.split("@")[0]
        elif kind == "name":
            value = _other_name_variant(rng, *people.name())
        elif kind == "email":
            value = people.email(*people.name()) if rng.random() < 0.5 else email
        else:
            value = {
                "phone": people.phone,
                "national id": people.national_id,
                "iban": people.iban,
                "card": people.card,
                "ip": people.ip,
            }[kind]()
        template = rng.choice(PII_TEMPLATES[kind])
        before, after = template.split("{v}")
        cases.append(compose([before.format(n=order), (value, kind), after.format(n=order)], known))
    return cases


def _covered(spans: Iterable[Span], length: int) -> list[bool]:
    mask = [False] * length
    for start, end, _ in spans:
        mask[start:end] = [True] * (end - start)
    return mask


@dataclass
class Score:
    """Counts behind precision and recall, per personal kind and per redaction type."""

    found: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    true_redactions: Counter[str] = field(default_factory=Counter)
    redacted_chars: int = 0
    over_chars: int = 0
    harmless: Counter[str] = field(default_factory=Counter)
    harmless_altered: Counter[str] = field(default_factory=Counter)
    missed: list[tuple[str, str]] = field(default_factory=list)
    altered: list[tuple[str, str]] = field(default_factory=list)

    def recall(self, kind: str | None = None) -> float:
        found = sum(self.found.values()) if kind is None else self.found[kind]
        total = sum(self.total.values()) if kind is None else self.total[kind]
        return found / total if total else 1.0

    def precision(self, entity: str | None = None) -> float:
        true = sum(self.true_redactions.values()) if entity is None else self.true_redactions[entity]
        made = sum(self.redactions.values()) if entity is None else self.redactions[entity]
        return true / made if made else 1.0

    @property
    def char_precision(self) -> float:
        return 1 - self.over_chars / self.redacted_chars if self.redacted_chars else 1.0

    @property
    def harmless_altered_share(self) -> float:
        total = sum(self.harmless.values())
        return sum(self.harmless_altered.values()) / total if total else 0.0


def score(redactor: Redactor, cases: Iterable[Case]) -> Score:
    """Run every case through `redactor.spans` and count what was found, missed and overdone."""
    s = Score()
    for case in cases:
        redacted = redactor.spans(case.text, case.known)
        covered = _covered(redacted, len(case.text))
        personal = _covered(case.spans, len(case.text))
        for start, end, kind in case.spans:
            s.total[kind] += 1
            if all(covered[start:end]):
                s.found[kind] += 1
            else:
                s.missed.append((kind, case.text))
        for start, end, entity in redacted:
            s.redactions[entity] += 1
            s.true_redactions[entity] += any(personal[start:end])
            s.redacted_chars += end - start
            s.over_chars += sum(not p for p in personal[start:end])
        if not case.spans:
            s.harmless[case.group] += 1
            if redacted:
                s.harmless_altered[case.group] += 1
                s.altered.append((case.group, case.text))
    return s


def table(s: Score) -> str:
    """The score as a text table: recall per kind, precision per redaction type, over-redaction."""
    lines = [f"{'personal kind':<22}{'spans':>7}{'found':>7}{'recall':>9}"]
    for kind in sorted(s.total):
        lines.append(f"{kind:<22}{s.total[kind]:>7}{s.found[kind]:>7}{s.recall(kind):>9.4f}")
    lines.append(f"{'all':<22}{sum(s.total.values()):>7}{sum(s.found.values()):>7}{s.recall():>9.4f}")
    lines += ["", f"{'redaction type':<22}{'made':>7}{'on PII':>7}{'precision':>10}"]
    for entity in sorted(s.redactions):
        made, true = s.redactions[entity], s.true_redactions[entity]
        lines.append(f"{entity:<22}{made:>7}{true:>7}{s.precision(entity):>10.4f}")
    lines.append(
        f"{'all':<22}{sum(s.redactions.values()):>7}{sum(s.true_redactions.values()):>7}{s.precision():>10.4f}"
    )
    lines += ["", f"{'harmless group':<26}{'texts':>7}{'altered':>9}"]
    for group in sorted(s.harmless):
        lines.append(f"{group.removeprefix('harmless: '):<26}{s.harmless[group]:>7}{s.harmless_altered[group]:>9}")
    lines.append(f"{'all':<26}{sum(s.harmless.values()):>7}{sum(s.harmless_altered.values()):>9}")
    lines += [
        "",
        f"harmless texts altered: {s.harmless_altered_share:.2%}",
        f"redacted characters outside personal spans: {s.over_chars} of {s.redacted_chars}"
        f" (character precision {s.char_precision:.4f})",
    ]
    return "\n".join(lines)


def payment_calls(n_payments: int, seed: int = 11) -> list[tuple[str, tuple[Any, ...]]]:
    """(reference, every personal value of its event) of simulated fraud payments, in order."""
    from training.simulators.fraud import simulate_fraud

    fields = ("customer_id", "card_number", "device_id", "ip", "cardholder_name", "email")
    with tempfile.TemporaryDirectory(prefix="bench-redaction-") as tmp:
        sim = simulate_fraud(Path(tmp), n_payments=n_payments, days=30, seed=seed, fmt="jsonl")
        events = [json.loads(line) for line in sim.payments.read_text().splitlines()]
    return [(e["reference"], tuple(e[f] for f in fields)) for e in events]


WARM_UP = "Anna Berg a@b.example +46 70 123 45 67 650729-9314 DE89 3704 0044 0532 0130 00 4539 5787 6362 1486 ::1"
"""A text every recognizer analyzes, redacted before the clock starts: a feature process builds
its redactor once, so compiling the patterns is no part of a call's cost."""


def time_calls(
    make: Callable[[], Any], calls: Sequence[tuple[str, tuple[Any, ...]]], repeats: int = 5
) -> tuple[float, float]:
    """CPU µs per `redact` call, the best of `repeats` passes (the machine's other work only ever
    adds to a pass): with a fresh redactor each pass (texts seen for the first time are scanned
    as they come, as in a new feature process), and with one that has seen every text."""
    first, again = [], []
    for _ in range(repeats):
        redactor = make()
        redactor.redact(WARM_UP, ("Anna Berg",))
        for runs in (first, again):
            started = time.process_time()
            for text, known in calls:
                redactor.redact(text, known)
            runs.append((time.process_time() - started) / len(calls) * 1e6)
    return min(first), min(again)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--payments", type=int, default=20_000, help="simulated payments to time (0: no timing)")
    parser.add_argument("--show", type=int, default=0, help="print this many missed and altered texts")
    args = parser.parse_args()
    cases = generate(args.cases, args.seed)
    result = score(Redactor(), cases)
    print(f"labelled set: {len(cases)} cases (seed {args.seed}), {sum(result.harmless.values())} harmless\n")
    print(table(result))
    for label, rows in (("missed", result.missed), ("altered", result.altered)):
        for group, text in rows[: args.show]:
            print(f"{label}: [{group}] {text!r}")
    if args.payments:
        calls = payment_calls(args.payments)
        first, again = time_calls(Redactor, calls)
        print(
            f"\nredact(reference, every personal value of the event) over {len(calls)} simulated payments "
            f"({len({t for t, _ in calls})} distinct references): {first:.2f} µs per call on a fresh "
            f"redactor, {again:.2f} µs once every reference has been seen (CPU time, best of 5 passes)"
        )


if __name__ == "__main__":
    sys.exit(main())
