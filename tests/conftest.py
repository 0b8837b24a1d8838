"""Shared fixtures: a small merchant reference, a payment builder with real-looking PII, and one
small pipeline per use case (simulated with canary personal data, materialized, trained) for the
tests that read what a pipeline leaves behind.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from features.fraud import FraudFeatureSet, Merchant

if TYPE_CHECKING:
    from features.loan import LoanFeatureSet
    from features.store import StoreFeatureSet
    from training.harness import TrainReport
    from training.replay import Source
    from training.simulators.loan import LoanSimulation
    from training.store_quality import QualitySummary

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


def label(
    payment_id: str,
    known_minutes: float,
    is_fraud: bool = True,
    merchant_id: str = "M1",
    customer_id: str | None = None,
) -> dict[str, Any]:
    out = {
        "payment_id": payment_id,
        "merchant_id": merchant_id,
        "is_fraud": is_fraud,
        "known_at": (T0 + timedelta(minutes=known_minutes)).isoformat(),
    }
    return out if customer_id is None else out | {"customer_id": customer_id}


CANARIES = {
    "customer_id": "CANARY-CUSTOMER-7731",
    "card_number": "4000001234567899",
    "device_id": "CANARY-DEVICE-5521",
    "ip": "198.51.100.77",
    "cardholder_name": "Quennell Zabriskie-Canary",
    "email": "quennell.canary@zabriskie-mail.com",
}
REFERENCE_CANARIES = (
    "GB33BUKB20201555555555",
    "4000 0012 3456 7899",
    "canary.ref@zabriskie-mail.test",
    "+46 70 123 45 67",
    "650729-9314",
)


def plant_canaries(payments: Path, every: int = 997) -> None:
    """Give some payments of a JSONL file canary personal values, in fields and free text (the
    cardholder's given name alone, in lower case, too)."""
    lines = payments.read_bytes().splitlines()
    for i in range(0, len(lines), every):
        event = json.loads(lines[i])
        event.update(CANARIES)
        event["reference"] = "refund to {} card {} mail {} call {} id {}, thanks quennell".format(*REFERENCE_CANARIES)
        lines[i] = json.dumps(event).encode()
    payments.write_bytes(b"\n".join(lines) + b"\n")


@contextmanager
def _training_into(tracking_uri: str, root: Path, log: Path) -> Iterator[None]:
    """MLflow writes to `tracking_uri` with its artifacts under `root`; every log line goes to `log`."""
    import mlflow

    logging.getLogger().addHandler(handler := logging.FileHandler(log))
    logging.getLogger().setLevel(logging.DEBUG)
    previous, cwd = mlflow.get_tracking_uri(), Path.cwd()
    mlflow.set_tracking_uri(tracking_uri)
    os.chdir(root)  # MLflow puts a SQLite store's artifacts under ./mlruns
    try:
        yield
    finally:
        os.chdir(cwd)
        mlflow.set_tracking_uri(previous)
        logging.getLogger().removeHandler(handler)
        handler.close()


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
    from features.usecases import build_featureset
    from training.harness import train, windows_for
    from training.jobs.fraud import FraudTask
    from training.materialize import materialize
    from training.replay import Source
    from training.simulators.fraud import simulate_fraud

    root = tmp_path_factory.mktemp("pipeline")
    secret = "pipeline-secret"
    # easy: the serving and training tests on this pipeline assert on frauds that stand out
    sim = simulate_fraud(root / "data" / "fraud", n_payments=20_000, days=60, seed=3, fmt="jsonl", difficulty="easy")
    plant_canaries(sim.payments)
    db = root / "data" / "samestream.duckdb"
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with _training_into(tracking_uri, root, root / "pipeline.log"):
        fs = build_featureset("fraud", sim.merchants.parent, secret)
        materialize(fs, [Source("payment", sim.payments), Source("label", sim.labels)], db)
        task = FraudTask(fs)
        windows = windows_for(db, fs, task.window_days)
        train(task, task.load(db, windows), "fraud-detector", ("logistic_regression", "xgboost"))
    return Pipeline(root / "data", db, tracking_uri, root / "mlruns", "fraud-detector", secret)


LOAN_SECRET = "loan-pipeline-secret"
LOAN_CANARIES = {
    "customer_id": "CANARY-LOAN-CUSTOMER-3318",
    "full_name": "Ottilie Quarrington-Canary",
    "national_id": "CANARY-NID-880417",
    "email": "ottilie.canary@quarrington-mail.com",
    "phone": "+44 7700 900417",
    "address": "17 Canary Wharf Lane, QX9 4ZZ Quarrington",
    "card_number": "4000002222333344",
    "device_id": "CANARY-LOAN-DEVICE-77",
    "ip": "198.51.100.188",
    "cardholder_name": "Ottilie Quarrington-Canary",
}
LOAN_NEEDLES = [v.encode() for v in LOAN_CANARIES.values()] + [b"Quarrington", b"quarrington-mail"]


def plant_loan_canaries(sim: LoanSimulation, every: int = 97) -> None:
    """Give some events of every JSONL source the canary personal values they carry."""
    for path in sim.files.values():
        lines = path.read_bytes().splitlines()
        for i in range(0, len(lines), every):
            event = json.loads(lines[i])
            event.update({k: v for k, v in LOAN_CANARIES.items() if k in event})
            lines[i] = json.dumps(event).encode()
        path.write_bytes(b"\n".join(lines) + b"\n")


def sources(files: dict[str, Path]) -> list[Source]:
    """One source per event kind of a simulation's files."""
    from training.replay import Source

    return [Source(kind, path) for kind, path in files.items()]


@dataclass(frozen=True)
class LoanPipeline:
    """A small loan history simulated, materialized into DuckDB and trained into MLflow."""

    sim: LoanSimulation
    fs: LoanFeatureSet
    db: Path
    tracking_uri: str
    artifacts: Path
    log: Path
    report: TrainReport


@pytest.fixture(scope="session")
def loan_pipeline(tmp_path_factory: pytest.TempPathFactory) -> LoanPipeline:
    """Runs the real code once per session on 6,000 applications over 150 days, canaries planted."""
    from features.loan import LoanFeatureSet
    from features.usecases import build_featureset
    from training.harness import train, windows_for
    from training.jobs.loan import LoanTask
    from training.loan_policy import load_truth
    from training.materialize import materialize
    from training.simulators.loan import simulate_loan

    root = tmp_path_factory.mktemp("loan")
    sim = simulate_loan(root / "data" / "loan", n_applications=6_000, days=150, seed=5, fmt="jsonl")
    plant_loan_canaries(sim)
    db = root / "loan.duckdb"
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with _training_into(tracking_uri, root, log := root / "pipeline.log"):
        fs = build_featureset("loan", sim.folder, LOAN_SECRET)
        assert isinstance(fs, LoanFeatureSet)
        materialize(fs, sources(sim.files), db)
        task = LoanTask(fs, load_truth(sim.ground_truth))
        data = task.load(db, windows_for(db, fs, task.window_days))
        report = train(task, data, "loan-acceptance", ("logistic_regression", "xgboost"))
    return LoanPipeline(sim, fs, db, tracking_uri, root / "mlruns", log, report)


STORE_CASHIER = "Quennell Zabriskie-Canary"
STORE_CARD = "CANARY-LOYALTY-7731"
STORE_NEEDLES = [STORE_CASHIER.encode(), STORE_CARD.encode(), b"Zabriskie"]


def plant_store_canaries(sales: Path, every: int = 499) -> int:
    """Give some receipt lines a canary cashier and loyalty card; add one rejected canary line."""
    lines = sales.read_bytes().splitlines()
    for i in range(0, len(lines), every):
        event = json.loads(lines[i])
        event.update(cashier=STORE_CASHIER, loyalty_card=STORE_CARD)
        lines[i] = json.dumps(event).encode()
    bad = json.loads(lines[1]) | {"cashier": STORE_CASHIER, "loyalty_card": STORE_CARD, "unit": "litre"}
    lines.insert(len(lines) // 2, json.dumps(bad).encode())
    sales.write_bytes(b"\n".join(lines) + b"\n")
    return 1


@dataclass(frozen=True)
class StorePipeline:
    """A small chain's feeds simulated, materialized into DuckDB and trained into MLflow."""

    folder: Path
    db: Path
    tracking_uri: str
    artifacts: Path
    log: Path
    truth: dict
    fs: StoreFeatureSet
    quality: QualitySummary
    report: TrainReport


@pytest.fixture(scope="session")
def store_pipeline(tmp_path_factory: pytest.TempPathFactory) -> StorePipeline:
    """Runs the real code once per session on 100,000 receipt lines over 91 days, canaries planted.

    The windows are shortened to fit three months: two weeks of warm-up and of validation, three
    weeks of test.
    """
    from features.store import StoreFeatureSet
    from features.usecases import build_featureset, get_use_case
    from training.datasets import default_windows, time_span
    from training.harness import train
    from training.jobs.store import StoreTask
    from training.materialize import materialize
    from training.replay import sources_in
    from training.simulators.store import simulate_store
    from training.store import connect
    from training.store_forecast import load_splits
    from training.store_quality import quality_summary

    root = tmp_path_factory.mktemp("store")
    sim = simulate_store(root / "data" / "store", n_sales=100_000, days=91, seed=11, fmt="jsonl")
    truth = json.loads(json.dumps(sim.truth))
    truth["dead_letters"]["sale"]["schema violation"] += plant_store_canaries(sim.folder / "sales.jsonl")
    db = root / "data" / "samestream.duckdb"
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with _training_into(tracking_uri, root, log := root / "pipeline.log"):
        fs = build_featureset("store", sim.folder, "unused")
        assert isinstance(fs, StoreFeatureSet)
        materialize(fs, sources_in(get_use_case("store").files, sim.folder), db)
        con = connect(db, read_only=True)
        windows = default_windows(*time_span(con, fs), warmup_days=14, validation_days=14, delay_days=1, test_days=21)
        con.close()
        quality = quality_summary(db, fs)
        report = train(StoreTask(fs, quality), load_splits(db, fs, windows), "store-demand", seed=3)
    return StorePipeline(sim.folder, db, tracking_uri, root / "mlruns", log, truth, fs, quality, report)


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
