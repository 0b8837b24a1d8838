"""Shared fixtures: a small merchant reference and a payment builder with real-looking PII."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


CANARIES = {
    "customer_id": "CANARY-CUSTOMER-7731",
    "card_number": "4000001234567899",
    "device_id": "CANARY-DEVICE-5521",
    "ip": "198.51.100.77",
    "cardholder_name": "Quennell Zabriskie-Canary",
    "email": "quennell.canary@zabriskie-mail.com",
}
REFERENCE_CANARIES = ("GB33BUKB20201555555555", "4000 0012 3456 7899", "canary.ref@zabriskie-mail.com")


def plant_canaries(payments: Path, every: int = 997) -> None:
    """Give some payments of a JSONL file canary personal values, in fields and free text."""
    lines = payments.read_bytes().splitlines()
    for i in range(0, len(lines), every):
        event = json.loads(lines[i])
        event.update(CANARIES)
        event["reference"] = "refund to {} card {} mail {}".format(*REFERENCE_CANARIES)
        lines[i] = json.dumps(event).encode()
    payments.write_bytes(b"\n".join(lines) + b"\n")


@dataclass(frozen=True)
class Pipeline:
    """A small fraud history simulated, materialized into DuckDB and trained into MLflow."""

    data_dir: Path
    db: Path
    tracking_uri: str
    artifacts: Path
    model_name: str
    secret: str


@pytest.fixture(scope="session")
def fraud_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """Runs the real commands once per session on 20,000 payments over 60 days."""
    import mlflow

    from features.usecases import build_featureset
    from training.materialize import materialize
    from training.replay import Source
    from training.simulators.fraud import simulate_fraud
    from training.train import load_splits, train

    root = tmp_path_factory.mktemp("pipeline")
    secret = "pipeline-secret"
    sim = simulate_fraud(root / "data" / "fraud", n_payments=20_000, days=60, seed=3, fmt="jsonl")
    plant_canaries(sim.payments)
    logging.getLogger().addHandler(handler := logging.FileHandler(root / "pipeline.log"))
    logging.getLogger().setLevel(logging.DEBUG)
    fs = build_featureset("fraud", sim.merchants.parent, secret)
    db = root / "data" / "samestream.duckdb"
    materialize(fs, [Source("payment", sim.payments), Source("label", sim.labels)], db)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    previous, cwd = mlflow.get_tracking_uri(), Path.cwd()
    mlflow.set_tracking_uri(tracking_uri)
    os.chdir(root)  # MLflow puts a SQLite store's artifacts under ./mlruns
    try:
        train(fs, load_splits(db, fs), "fraud-detector", ("logistic_regression", "xgboost"))
    finally:
        os.chdir(cwd)
        mlflow.set_tracking_uri(previous)
        logging.getLogger().removeHandler(handler)
        handler.close()
    return Pipeline(root / "data", db, tracking_uri, root / "mlruns", "fraud-detector", secret)


@pytest.fixture(autouse=True)
def _restore_mlflow_uris():
    """Each test leaves MLflow's process-wide tracking and registry URIs as it found them.

    Code under test (the live registry, fixtures) sets them for its own store; without this,
    a later test in the same process would read another test's registry.
    """
    import sys

    if "mlflow" not in sys.modules:
        yield
        return
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    tracking_utils._tracking_uri, registry_utils._registry_uri = saved
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
