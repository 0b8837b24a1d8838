"""Shared pieces of the live (Kafka) tests: simulated events, a model registry, topic helpers.

The expensive parts (a small simulation, its batch features, an MLflow store with fitted
models) are built once per test session and cached here; every test gets its own topic prefix
and consumer groups, so tests never read each other's messages.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import msgspec
import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from features.featureset import FeatureSet
from features.usecases import build_featureset
from serving.produce import EventFile
from serving.settings import LiveSettings
from tests.kafka_helpers import require_broker

ROOT = Path(__file__).resolve().parents[1]
SECRET = "live-test-secret"
MODEL = "fraud-detector"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict).decode
_decode_scores = msgspec.json.Decoder(list[dict[str, Any]]).decode


@pytest.fixture(scope="module")
def broker() -> str:
    """The test broker's address; fails (CI) or skips before any expensive set-up without one."""
    return require_broker()


def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="samestream-live-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@dataclass(frozen=True)
class Simulation:
    """A small fraud history on disk, and what the batch driver makes of it."""

    data_dir: Path
    """Holds `fraud/` (payments.jsonl, labels.jsonl, merchants.csv), as `--data-dir` expects."""
    files: list[EventFile]
    rows: list[dict[str, Any]]
    """Batch feature rows in replay order, each with `featureset_version`."""
    labels: dict[str, bool]

    def featureset(self) -> FeatureSet:
        return build_featureset("fraud", self.data_dir / "fraud", SECRET)


@functools.cache
def simulation() -> Simulation:
    """A small fraud history on the easy simulator, whose frauds stand out: the live tests score
    with models fitted on it and check decisions of both kinds."""
    from training import replay
    from training.replay import Source
    from training.simulators.fraud import simulate_fraud

    data_dir = _scratch() / "data"
    sim = simulate_fraud(data_dir / "fraud", n_payments=2_000, days=14, seed=11, fmt="jsonl", difficulty="easy")
    fs = build_featureset("fraud", data_dir / "fraud", SECRET)
    history = replay.load(fs, [Source("payment", sim.payments), Source("label", sim.labels)])
    rows, labels = [], {}
    for outcome in replay.run(fs, history):
        rows.extend({**row, "featureset_version": fs.version} for row in outcome.rows)
        labels.update({label["payment_id"]: label["is_fraud"] for label in outcome.labels})
    files = [EventFile("payment", sim.payments), EventFile("label", sim.labels)]
    return Simulation(data_dir, files, rows, labels)


class SleepingModel:
    """A challenger that takes `seconds` per row: slow, but right."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.feature_names = inner.feature_names

    def predict_one(self, values: Any) -> float:
        time.sleep(self.seconds)
        return float(self.inner.predict_one(values))


class RaisingModel:
    """A challenger with a bug: every row raises."""

    def __init__(self, inner: Any) -> None:
        self.feature_names = inner.feature_names

    def predict_one(self, values: Any) -> float:
        raise RuntimeError("challenger bug")


class CrashOnceModel:
    """A challenger whose process dies on its first row, once: it must be restarted and resume."""

    def __init__(self, inner: Any, marker: Path) -> None:
        self.inner = inner
        self.marker = marker
        self.feature_names = inner.feature_names

    def predict_one(self, values: Any) -> float:
        if not self.marker.exists():
            self.marker.touch()
            os._exit(3)
        return float(self.inner.predict_one(values))


@dataclass(frozen=True)
class ModelStore:
    """A throw-away MLflow store with registered fraud models."""

    tracking_uri: str
    versions: dict[str, str]
    """Role -> version: `lr` (champion), `lr_strong` (another regularization), `sleeper`, `raiser`,
    `crasher`."""


def _python_model(wrapped: Any) -> Any:
    """Adapt a row model to the pyfunc contract (`predict` on a frame) keeping `predict_one`."""
    from mlflow.pyfunc import PythonModel

    class RowModel(PythonModel):
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.feature_names = inner.feature_names

        def predict_one(self, values: Any) -> float:
            return float(self.inner.predict_one(values))

        def predict(self, context: Any, model_input: Any, params: dict | None = None) -> Any:
            return np.array([self.predict_one(r) for r in model_input[list(self.feature_names)].to_numpy()])

    return RowModel(wrapped)


@functools.cache
def model_store() -> ModelStore:
    """Fit logistic regressions on the simulated features and register them (and two faulty ones).

    Version 1 is `champion`; version 2 differs in regularization, so its scores differ.
    """
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from training.pyfunc import ProbabilityModel

    sim = simulation()
    fs = sim.featureset()
    root = _scratch()
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.create_experiment("fraud", artifact_location=(root / "artifacts").as_uri())
    frame = pd.DataFrame(sim.rows)[list(fs.feature_names)].astype("float64")
    y = np.array([sim.labels.get(r["payment_id"], False) for r in sim.rows], dtype=int)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    versions: dict[str, str] = {}
    models = {
        "lr": ProbabilityModel(
            make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500)).fit(frame, y), fs.feature_names
        ),
        "lr_strong": ProbabilityModel(
            make_pipeline(StandardScaler(), LogisticRegression(C=0.001, max_iter=500)).fit(frame, y), fs.feature_names
        ),
    }
    models["sleeper"] = _python_model(SleepingModel(models["lr"], 0.02))
    models["raiser"] = _python_model(RaisingModel(models["lr"]))
    models["crasher"] = _python_model(CrashOnceModel(models["lr"], root / "crashed-once"))
    for role, model in models.items():
        with mlflow.start_run(experiment_id=experiment, run_name=role):
            sample = frame.head(20)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                signature=infer_signature(sample, models["lr"].predict(None, sample)),
                pip_requirements=[],
                registered_model_name=MODEL,
            )
        version = str(info.registered_model_version)
        client.set_model_version_tag(MODEL, version, "threshold_review", "0.3")
        client.set_model_version_tag(MODEL, version, "threshold_block", "0.7")
        client.set_model_version_tag(MODEL, version, "featureset_version", fs.version)
        versions[role] = version
    client.set_registered_model_alias(MODEL, "champion", versions["lr"])
    return ModelStore(tracking_uri, versions)


def registry_store() -> str:
    """The tracking URI of a new, empty MLflow store in a scratch folder."""
    return f"sqlite:///{_scratch() / 'mlflow.db'}"


def register_version(
    tracking_uri: str, name: str, model: Any, sample: Any, tags: dict[str, Any], alias: str | None = None
) -> str:
    """Log a pyfunc `model` as a new version of `name`, tag the version as training does; its number.

    `sample` (a DataFrame of model inputs) gives the signature; `alias`, if given, points at it.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    artifacts = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name, artifacts.as_uri())
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=infer_signature(sample, model.predict(None, sample)),
            pip_requirements=[],
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    return version


_prefixes: list[str] = []


def unique_prefix(name: str) -> str:
    """A topic and consumer-group prefix of its own; its topics are deleted when the session ends."""
    prefix = f"t-{name}-{uuid.uuid4().hex[:8]}-"
    if not _prefixes:
        atexit.register(_delete_topics, _prefixes)
    _prefixes.append(prefix)
    return prefix


def _delete_topics(prefixes: list[str]) -> None:
    """Delete the session's topics, changelogs and repartition topics included (they name the group)."""
    admin = AdminClient({"bootstrap.servers": require_broker()})
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if any(p in t for p in prefixes)]
        for future in (admin.delete_topics(names) if names else {}).values():
            future.result(30)
    except KafkaException:  # a broker gone by now keeps its topics; nothing else to undo
        pass


def live_settings(prefix: str, use_case: str = "fraud", **overrides: Any) -> LiveSettings:
    overrides.setdefault("state_dir", _scratch() / "state")
    return LiveSettings(use_case, bootstrap=require_broker(), prefix=prefix, **overrides)


def shadow_challenger(settings: LiveSettings, data_dir: Path, tracking_uri: str, model: str, live_db: Path) -> None:
    """Run the shadow harness with the `challenger` alias over the feature topic until it is idle."""
    from serving.shadow import ShadowConfig, ShadowHarness

    ShadowHarness(
        ShadowConfig(
            settings=settings,
            data_dir=data_dir,
            secret=SECRET,
            tracking_uri=tracking_uri,
            model_name=model,
            challengers=("challenger",),
            live_db=live_db,
            metrics_interval=1.0,
            idle_timeout=4.0,
        )
    ).run()


def recorded_scores(live_db: Path, use_case: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(role, version) -> (records, records with a decision) in the shadow harness's DuckDB."""
    import duckdb

    con = duckdb.connect(str(live_db), read_only=True)
    try:
        rows = con.execute(
            f"SELECT role, version, count(*), count(decision) FROM {use_case}_live_scores GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()
    return {(role, version): (n, decided) for role, version, n, decided in rows}


def produce(
    topic: str, messages: Iterable[tuple[bytes | str | None, bytes | dict[str, Any] | None]], rate: float = 0.0
) -> int:
    """Publish (key, value) pairs, dict values as JSON, None as a NULL value, `rate` per second if
    > 0. Returns how many."""
    producer = Producer({"bootstrap.servers": require_broker(), "enable.idempotence": True, "linger.ms": 5})
    n = 0
    started = time.perf_counter()
    for key, value in messages:
        if rate > 0 and (delay := started + n / rate - time.perf_counter()) > 0:
            time.sleep(delay)
        payload = value if value is None or isinstance(value, bytes) else _encode(value)
        producer.produce(topic, key=key.encode() if isinstance(key, str) else key, value=payload)
        producer.poll(0)
        n += 1
    assert producer.flush(30) == 0, f"messages to {topic} still unsent after 30 s"
    return n


def produce_rows(topic: str, rows: Iterable[dict[str, Any]], rate: float = 0.0) -> int:
    """Feature rows as the feature process writes them, keyed by payment id; `rate` > 0 paces them."""
    return produce(topic, ((row["payment_id"], row) for row in rows), rate)


def read_topic(
    topic: str, committed_only: bool = True, timeout_s: float = 30.0
) -> list[tuple[str | None, dict[str, Any]]]:
    """Every message of `topic` (all partitions) up to its end as of now, as (key, JSON value).

    `committed_only` reads with isolation.level=read_committed: aborted transactions stay unseen.
    A partition is read once the end offset taken at the start is reached, or its end is
    reported: a topic still being written to is read as a snapshot.
    """
    return [
        (key.decode() if key is not None else None, _decode(value))
        for key, value in read_raw(topic, committed_only, timeout_s)
    ]


def read_scores(topic: str) -> list[dict[str, Any]]:
    """Every challenger score record on a shadow-scores topic (each message is an array of them)."""
    return [record for _, value in read_raw(topic) for record in _decode_scores(value)]


def read_raw(topic: str, committed_only: bool = True, timeout_s: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every message of `topic` as (key, value) bytes, read as `read_topic` reads."""
    consumer = Consumer(
        {
            "bootstrap.servers": require_broker(),
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = list(metadata.topics[topic].partitions) if metadata.topics[topic].error is None else []
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        pending = {p for p, end in ends.items() if end > 0}
        if not pending:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        out: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise AssertionError(f"reading {topic}: {msg.error()}")
            if msg.partition() not in pending:
                continue
            out.append((msg.key(), msg.value() or b""))
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
        assert not pending, f"{topic}: no end of partitions {sorted(pending)} within {timeout_s} s"
        return out
    finally:
        consumer.close()


def personal_values(
    fs: FeatureSet, files: Iterable[EventFile], free_text: tuple[str, ...] = ("reference",)
) -> set[str]:
    """Every text value of a personal field in the event files that can be told apart from a
    number in a feature: it holds a letter, or at least 8 characters (a card number). Free text
    keeps its harmless words once redacted, so the canary tests check it instead."""
    from features.sources import read_payloads

    personal = fs.personal_fields - set(free_text)
    values: set[str] = set()
    for file in files:
        for _, payload in read_payloads(file.path):
            try:
                event = _decode(payload) if isinstance(payload, bytes) else payload
            except msgspec.DecodeError:  # a faulty line: no field to tell personal from not
                continue
            if not isinstance(event, dict):
                continue
            values |= {
                v
                for k, v in event.items()
                if k in personal and isinstance(v, str) and (len(v) >= 8 or any(c.isalpha() for c in v))
            }
    return values


def assert_no_personal_data(prefix: str, personal: set[str]) -> None:
    """No topic the live processes wrote under `prefix` holds a personal value, in keys or values:
    features, labels, decisions, shadow scores, dead letters, repartition and changelog topics.
    Only the events topic, the raw input, may."""
    topics = [
        t for t in AdminClient({"bootstrap.servers": require_broker()}).list_topics(timeout=10).topics if prefix in t
    ]
    derived = [t for t in topics if not t.endswith("-events")]
    assert any(t.endswith("-features") for t in derived), f"no feature topic among {sorted(topics)}"
    for topic in derived:
        for key, value in read_raw(topic, committed_only=False):
            text = (key or b"").decode("utf-8", "replace") + value.decode("utf-8", "replace")
            leaked = [v for v in personal if v in text]
            assert not leaked, f"personal data in {topic}: {sorted(leaked)[:3]}"


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@contextmanager
def running(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    """Stop every process on the way out: SIGTERM, then SIGKILL after 30 s."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def cli(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `python -m serving.cli ARGS` in the project, output to `log_path`."""
    handle = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli", *args],
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SAMESTREAM_KAFKA_BOOTSTRAP": require_broker(), **(env or {})},
    )


def scratch_dir() -> Path:
    return _scratch()
