"""Hostile input never crashes the loan or store FeatureSets: every bad event gets a reason, good ones rows or state.

Every event kind of both use cases is corrupted field by field (as a dict, as a columnar file
gives it, and as JSON, as a topic gives it), replaced by random bytes, nested deeply, sent with
invalid UTF-8, huge numbers, NaN/inf, megabyte strings and far past or future times.
`LocalRunner.process` must return an outcome for each: a dead letter with a reason and no rows,
or rows whose features are finite numbers.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.featureset import FeatureSet, LocalRunner, Outcome
from features.loan import LoanFeatureSet, MasterScale, RiskGrade
from features.store import StoreFeatureSet
from features.store.lookups import Calendar, Product, Store

pytestmark = pytest.mark.slow  # hundreds of generated events per test: seconds, not milliseconds

SCALE = MasterScale(
    [RiskGrade("A", 700, 0.01), RiskGrade("B", 600, 0.03), RiskGrade("C", 300, 0.1), RiskGrade("U", None, 0.05)]
)
ZONE = ZoneInfo("Europe/Stockholm")
PRODUCTS = {
    "BREAD": Product("BREAD", "Sourdough loaf", "bakery", "piece", 2, 4.0, 1.5, 10, 20),
    "MILK": Product("MILK", "Whole milk 1 l", "dairy", "piece", 3, 1.5, 0.9, 12, 24),
    "BANANA": Product("BANANA", "Bananas", "produce", "kg", 5, 2.0, 1.0, 18, 15),
}
STORES = {"S1": Store("S1", "Europe/Stockholm", Calendar(ZONE))}

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
D0 = date(2026, 3, 2)


def _local(day: int, hour: float) -> datetime:
    return datetime.combine(D0 + timedelta(days=day), datetime.min.time(), tzinfo=ZONE) + timedelta(hours=hour)


LOAN_VALID: dict[str, dict[str, Any]] = {
    "application": {
        "application_id": "a1",
        "ts": T0.isoformat(),
        "customer_id": "C-LOAN-0042",
        "full_name": "Marit Oksanen-Lund",
        "date_of_birth": "1990-03-03",
        "national_id": "900303-4417",
        "email": "marit.lund@example.fi",
        "phone": "+358 40 123 4567",
        "address": "Mannerheimintie 12 B, 00100 Helsinki",
        "amount": 12_000.0,
        "term_months": 48,
        "purpose": "car",
        "annual_income": 60_000.0,
        "employment": "employed",
        "employment_years": 6.0,
        "channel": "web",
        "monthly_debt": 500.0,
    },
    "credit_score": {
        "report_id": "r1",
        "ts": T0.isoformat(),
        "customer_id": "C-LOAN-0042",
        "bureau": "Experian",
        "score": 710,
        "delinquencies_12m": 1,
        "open_credit_lines": 4,
    },
    "engagement": {
        "engagement_id": "e1",
        "ts": T0.isoformat(),
        "customer_id": "C-LOAN-0042",
        "action": "offer",
        "channel": "phone",
        "product": "credit_card",
        "accepted": True,
    },
    "payment": {
        "payment_id": "p1",
        "ts": T0.isoformat(),
        "customer_id": "C-LOAN-0042",
        "card_number": "4539578763621486",
        "merchant_id": "M00001",
        "amount": 20.0,
        "currency": "EUR",
        "lat": 60.17,
        "lon": 24.94,
        "channel": "pos",
        "device_id": "M00001-T1",
        "ip": "81.2.69.160",
        "cardholder_name": "Marit Oksanen-Lund",
        "email": "marit.lund@example.fi",
    },
    "outcome": {
        "application_id": "a0",
        "customer_id": "C-LOAN-0042",
        "offered_rate": 0.08,
        "accepted": True,
        "known_at": T0.isoformat(),
        "rate_propensity": 0.04,
    },
}

STORE_VALID: dict[str, dict[str, Any]] = {
    "sale": {
        "sale_id": "s1",
        "store_id": "S1",
        "product_id": "BREAD",
        "ts": _local(0, 10).isoformat(),
        "sent_at": int(_local(0, 10).timestamp() * 1000) + 30_000,
        "quantity": 2.0,
        "unit": "piece",
        "cashier": "Astrid Lindqvist",
        "loyalty_card": "4000123412341234",
    },
    "delivery": {
        "delivery_id": "d1",
        "store_id": "S1",
        "product_id": "BREAD",
        "delivered_at": _local(0, 6).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "quantity": 10.0,
        "unit": "piece",
        "best_before": (D0 + timedelta(days=2)).isoformat(),
    },
    "stock_count": {
        "count_id": "c1",
        "store_id": "S1",
        "product_id": "BREAD",
        "counted_at": _local(0, 22.5).isoformat(),
        "quantity": 5.0,
        "unit": "piece",
    },
    "price_change": {
        "change_id": "pc1",
        "store_id": "S1",
        "product_id": "BREAD",
        "published_at": _local(0, 21).isoformat(),
        "effective_day": (D0 + timedelta(days=1)).isoformat(),
        "price": 3.0,
        "reason": "markdown",
    },
    "day_close": {"store_id": "S1", "business_day": D0.isoformat(), "units_sold": {"BREAD": 2.0, "MILK": 0.0}},
}

CASES = [("loan", kind) for kind in LOAN_VALID] + [("store", kind) for kind in STORE_VALID]
VALID = {"loan": LOAN_VALID, "store": STORE_VALID}

EDGE_TIMES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999-12:00",
]
"""The first and last instants a datetime holds: no store calendar places them (no local day
after them has a cut-off), so they are dead-lettered as impossible values."""
FAR_TIMES = [
    "0002-01-01T00:00:00Z",
    "0002-01-01T00:00:00+14:00",
    "9998-12-31T23:59:59Z",
    "9998-12-31T23:59:59.999-12:00",
    "1970-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-03-02T12:00:00",
    "yesterday",
    "",
]
EDGE_DAYS = ["0001-01-01", "9999-12-31"]
FAR_DAYS = ["0002-01-01", "9998-12-31", "1970-01-01", "2026-02-30", "2026-13-01", "tomorrow"]
HUGE_INTS = [2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)]


def _hostile(times: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from(HUGE_INTS),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0.0, -0.0]),
        st.text(max_size=50),
        st.just("x" * 1_100_000),
        st.sampled_from(times),
        st.integers(min_value=-(2**62), max_value=2**62),  # epoch ms, far past to far future
        st.recursive(
            st.integers(),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
            max_leaves=20,
        ),
    )


TIMES = {"loan": EDGE_TIMES + EDGE_DAYS + FAR_TIMES + FAR_DAYS, "store": EDGE_TIMES + EDGE_DAYS + FAR_TIMES + FAR_DAYS}
HOSTILE = {use_case: _hostile(times) for use_case, times in TIMES.items()}
MOMENTS = {
    "loan": st.datetimes(timezones=st.just(UTC)),
    "store": st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)),
}


def build(use_case: str) -> FeatureSet:
    if use_case == "loan":
        return LoanFeatureSet(SCALE, secret="fuzz")
    return StoreFeatureSet(PRODUCTS, STORES)


RUNNERS = {use_case: LocalRunner(build(use_case)) for use_case in VALID}


def check(runner: LocalRunner, outcome: Outcome) -> None:
    if outcome.dead_letter is not None:
        assert outcome.dead_letter.reason, outcome.dead_letter
        assert not outcome.rows and not outcome.labels
        return
    for row in outcome.rows:
        bad = [f for f in runner.featureset.feature_names if not math.isfinite(row[f])]
        assert not bad, f"non-finite features {bad[:5]}"


def process(runner: LocalRunner, kind: str | None, payload: Any) -> Outcome:
    outcome = runner.process(kind, payload)
    check(runner, outcome)
    return outcome


def _json(kind: str, event: dict[str, Any]) -> bytes | None:
    try:
        return msgspec.json.encode({"type": kind, **event})
    except (OverflowError, TypeError, ValueError):
        return None


_fuzz = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.mark.parametrize(("use_case", "kind"), CASES)
def test_valid_examples_give_rows_or_update_state(use_case: str, kind: str) -> None:
    runner = LocalRunner(build(use_case))
    outcome = process(runner, kind, VALID[use_case][kind])
    assert outcome.dead_letter is None, outcome.dead_letter
    raw = _json(kind, VALID[use_case][kind])
    assert raw is not None
    again = process(LocalRunner(build(use_case)), None, raw)
    assert again.dead_letter is None, again.dead_letter
    assert again.rows == outcome.rows
    assert outcome.rows or _state_size(runner) > 0, f"a valid {kind} left neither rows nor state"


def _state_size(runner: LocalRunner) -> int:
    """Values held in every key's state of every stage."""
    return sum(len(state._data) for store in runner.stores.values() for state in store._keys.values())


def test_valid_sequences_give_the_rows_of_their_use_case() -> None:
    loan = LocalRunner(build("loan"))
    for kind in ("credit_score", "engagement", "payment", "outcome"):
        assert process(loan, kind, LOAN_VALID[kind]).rows == []
    [row] = process(loan, "application", {**LOAN_VALID["application"], "ts": (T0 + timedelta(days=1)).isoformat()}).rows
    assert row["application_id"] == "a1" and row["no_credit_score"] == 0.0

    store = LocalRunner(build("store"))
    for kind in ("delivery", "sale", "stock_count", "price_change"):
        assert process(store, kind, STORE_VALID[kind]).rows == []
    closed = process(store, "day_close", STORE_VALID["day_close"])
    assert "BREAD" in {row["product_id"] for row in closed.rows} and closed.labels


@pytest.mark.parametrize(("use_case", "kind"), CASES)
@_fuzz
@given(data=st.data())
def test_corrupted_events_as_dicts_and_json(use_case: str, kind: str, data: st.DataObject) -> None:
    valid = VALID[use_case][kind]
    fields = sorted(valid)
    changes = data.draw(st.dictionaries(st.sampled_from([*fields, "type", "extra"]), HOSTILE[use_case], max_size=4))
    removed = data.draw(st.sets(st.sampled_from(fields), max_size=2))
    event = {k: v for k, v in {**valid, **changes}.items() if k not in removed}
    runner = RUNNERS[use_case]
    process(runner, kind, event)
    raw = _json(kind, event)
    if raw is not None:
        process(runner, None, raw)
        process(runner, kind, raw)
        process(runner, kind, raw.decode("utf-8"))


@pytest.mark.parametrize(("use_case", "kind"), CASES)
@_fuzz
@given(data=st.data())
def test_far_past_and_future_times(use_case: str, kind: str, data: st.DataObject) -> None:
    valid = VALID[use_case][kind]
    moment = data.draw(st.one_of(st.sampled_from(TIMES[use_case]), MOMENTS[use_case]))
    name = data.draw(
        st.sampled_from(
            [
                k
                for k in valid
                if k
                in {
                    "ts",
                    "known_at",
                    "delivered_at",
                    "counted_at",
                    "published_at",
                    "effective_day",
                    "best_before",
                    "business_day",
                    "date_of_birth",
                    "sent_at",
                }
            ]
        )
    )
    value: Any = moment.isoformat() if isinstance(moment, datetime) else moment
    if name in {"effective_day", "best_before", "business_day", "date_of_birth"} and isinstance(moment, datetime):
        value = moment.date().isoformat()
    if name == "sent_at" and isinstance(moment, datetime):
        value = int(moment.timestamp() * 1000)
    event = {**valid, name: value}
    runner = RUNNERS[use_case]
    process(runner, kind, event)
    raw = _json(kind, event)
    assert raw is not None
    process(runner, None, raw)


@pytest.mark.parametrize("use_case", sorted(VALID))
@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=2_000))
def test_random_bytes(use_case: str, raw: bytes) -> None:
    runner = RUNNERS[use_case]
    assert process(runner, None, raw).dead_letter is not None or raw.lstrip().startswith(b"{")
    for kind in VALID[use_case]:
        process(runner, kind, raw)


@pytest.mark.parametrize(("use_case", "kind"), CASES)
@settings(max_examples=15, deadline=None)
@given(depth=st.integers(min_value=1, max_value=100_000))
def test_deep_nesting_and_invalid_utf8(use_case: str, kind: str, depth: int) -> None:
    runner = RUNNERS[use_case]
    valid = VALID[use_case][kind]
    field = sorted(valid)[0].encode()
    nested = b'{"type": "' + kind.encode() + b'", "' + field + b'": ' + b"[" * depth + b"]" * depth + b"}"
    assert process(runner, None, nested).dead_letter is not None
    assert process(runner, kind, nested).dead_letter is not None
    deep = {**valid, field.decode(): _nested(depth)}
    assert process(runner, kind, deep).dead_letter is not None
    for position in (0, len(_json(kind, valid) or b"") // 2):
        base = _json(kind, valid)
        assert base is not None
        broken = base[:position] + b"\xff\xfe\xc3\x28" + base[position:]
        assert process(runner, None, broken).dead_letter is not None
    text_field = next(k for k, v in valid.items() if isinstance(v, str) and k not in {"type"})
    invalid_utf8 = _json(kind, {**valid, text_field: "PLACEHOLDER"})
    assert invalid_utf8 is not None
    assert process(runner, None, invalid_utf8.replace(b"PLACEHOLDER", b"\xff\xfe\xc3\x28")).dead_letter is not None


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("use_case", "kind"), CASES)
def test_huge_numbers_nan_inf_and_megabyte_strings_are_dead_lettered_or_finite(use_case: str, kind: str) -> None:
    runner = LocalRunner(build(use_case))
    valid = VALID[use_case][kind]
    for name, original in valid.items():
        for bad in (*HUGE_INTS, math.nan, math.inf, -math.inf, 1e308, -1e308, "x" * 1_100_000, "\x00" * 1_000):
            if bad == original:
                continue
            process(runner, kind, {**valid, name: bad})
            raw = _json(kind, {**valid, name: bad})
            if raw is not None:
                process(runner, None, raw)
        for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1" + b"0" * 5_000):
            raw = _json(kind, {**valid, name: "PLACEHOLDER"})
            assert raw is not None
            process(runner, None, raw.replace(b'"PLACEHOLDER"', literal))


# The edges: a time no calendar can place, a rejected event nested deeper than Python recurses.

STORE_EDGE_TIMES = [
    ("sale", "ts", "9999-12-31T23:59:59Z"),
    ("delivery", "delivered_at", "0001-01-01T00:00:00+14:00"),
    ("stock_count", "counted_at", "9999-12-31T23:59:59Z"),
    ("day_close", "business_day", "9999-12-31"),
]


@pytest.mark.parametrize(("kind", "name", "value"), STORE_EDGE_TIMES)
def test_store_times_at_the_edges_of_datetime_are_dead_lettered(kind: str, name: str, value: str) -> None:
    outcome = LocalRunner(build("store")).process(kind, {**STORE_VALID[kind], name: value})
    assert outcome.dead_letter is not None


@pytest.mark.parametrize(("use_case", "kind"), [("loan", "credit_score"), ("store", "delivery")])
def test_a_deeply_nested_rejected_dict_is_dead_lettered(use_case: str, kind: str) -> None:
    event = {**VALID[use_case][kind], sorted(VALID[use_case][kind])[0]: _nested(1_200)}
    outcome = LocalRunner(build(use_case)).process(kind, event)
    assert outcome.dead_letter is not None
