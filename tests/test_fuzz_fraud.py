"""Hostile input never crashes the feature process: every bad event gets a reason, good ones rows."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.featureset import LocalRunner
from tests.conftest import MERCHANTS

pytestmark = pytest.mark.slow  # hundreds of generated events per test: seconds, not milliseconds

FIELDS = [
    "payment_id",
    "ts",
    "customer_id",
    "card_number",
    "merchant_id",
    "amount",
    "currency",
    "lat",
    "lon",
    "channel",
    "device_id",
    "ip",
    "cardholder_name",
    "email",
    "reference",
]

VALID = {
    "payment_id": "p1",
    "ts": "2026-03-02T12:00:00+00:00",
    "customer_id": "C1",
    "card_number": "4539578763621486",
    "merchant_id": "M1",
    "amount": 20.0,
    "currency": "EUR",
    "lat": 59.33,
    "lon": 18.06,
    "channel": "pos",
    "device_id": "d1",
    "ip": "81.2.69.160",
    "cardholder_name": "Anna Svensson",
    "email": "anna@example.se",
    "reference": "Groceries",
}

hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0]),
    st.text(max_size=50),
    st.just("x" * 1_100_000),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-02-30T00:00:00Z", "yesterday", ""]),
    st.recursive(
        st.integers(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=20,
    ),
)


def fresh_runner():
    from features.fraud import FraudFeatureSet

    return LocalRunner(FraudFeatureSet(MERCHANTS, secret="fuzz"))


RUNNER = fresh_runner()


def check(outcome) -> None:
    if outcome.dead_letter is not None:
        assert outcome.dead_letter.reason and not outcome.rows
    elif outcome.duplicate:  # the same payment id again: a repeat changes nothing
        assert not outcome.rows and not outcome.labels
    else:
        assert len(outcome.rows) == 1
        row = outcome.rows[0]
        assert all(math.isfinite(row[f]) for f in RUNNER.featureset.feature_names)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.dictionaries(st.sampled_from(FIELDS), hostile_values, max_size=4), st.sets(st.sampled_from(FIELDS), max_size=2)
)
def test_corrupted_payments_as_dicts_and_json(changes: dict, removed: set) -> None:
    event = {k: v for k, v in {**VALID, **changes}.items() if k not in removed}
    check(RUNNER.process("payment", event))
    try:
        raw = msgspec.json.encode({"type": "payment", **event})
    except (OverflowError, TypeError, ValueError):
        return
    check(RUNNER.process(None, raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2_000))
def test_random_bytes(raw: bytes) -> None:
    check(RUNNER.process(None, raw))


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=100_000))
def test_deep_nesting_and_invalid_utf8(depth: int) -> None:
    check(RUNNER.process(None, b'{"type": "payment", "amount": ' + b"[" * depth + b"]" * depth + b"}"))
    check(RUNNER.process(None, b'{"type": "payment", "reference": "\xff\xfe\xc3\x28"}'))


def test_extreme_but_valid_times_are_processed() -> None:
    runner = fresh_runner()
    for i, ts in enumerate(("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2026-03-02T12:00:00+14:00")):
        outcome = runner.process("payment", {**VALID, "ts": ts, "payment_id": f"extreme-{i}"})
        check(outcome)
        assert outcome.rows, ts
