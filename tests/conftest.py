"""Shared fixtures: a small merchant reference and a payment builder with real-looking PII."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from features.fraud import FraudFeatureSet, Merchant

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday

MERCHANTS = {
    "M1": Merchant("M1", "grocery", 59.33, 18.06),
    "M2": Merchant("M2", "electronics", 48.85, 2.35),
    "M3": Merchant("M3", "unknown_kind", 52.52, 13.40),
}


@pytest.fixture
def fraud_fs() -> FraudFeatureSet:
    return FraudFeatureSet(MERCHANTS, secret="test-secret")


PaymentFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def payment() -> PaymentFactory:
    """Build a payment dict; `minutes` after T0, other fields overridable."""
    counter = iter(range(1, 1_000_000))

    def build(minutes: float = 0.0, **overrides: Any) -> dict[str, Any]:
        n = next(counter)
        event = {
            "payment_id": f"p{n}",
            "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
            "customer_id": "C1001",
            "card_number": "4539578763621486",
            "merchant_id": "M1",
            "amount": 20.0,
            "currency": "EUR",
            "lat": 59.33,
            "lon": 18.06,
            "channel": "pos",
            "device_id": "dev-1",
            "ip": "81.2.69.160",
            "cardholder_name": "Anna Svensson",
            "email": "anna.svensson@example.se",
            "reference": "Groceries",
        }
        event.update(overrides)
        return event

    return build


def label(payment_id: str, known_minutes: float, is_fraud: bool = True, merchant_id: str = "M1") -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "merchant_id": merchant_id,
        "is_fraud": is_fraud,
        "known_at": (T0 + timedelta(minutes=known_minutes)).isoformat(),
    }
