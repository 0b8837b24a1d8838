"""What reason codes cost: µs per decision, and the live scorer's latency with and without them.

Simulates a fraud history, fits the real logistic regression and XGBoost candidates
(`training.candidates`) on its feature rows, then measures:

1. per row: the median µs of the prediction alone (`ProbabilityModel.predict_one`, what the
   scorer calls for a model without reasons) and the median and p99 µs of the score with its
   reasons (`explained_one`, the path the live scorer takes), and their cost per row when a
   challenger asks for a batch (`explained` on `--batch` rows at once);
2. unless `--skip-live`: the live scorer's decision latency (each record's `latency_ms`, from the
   feature row's publication to its decision) with feature rows paced at `--rate` per second on
   the local broker, for each family with reasons and without (the same model registered as a
   version that offers none, as one registered before reasons existed), alternating,
   `--repeats` runs of `--seconds` each; the median p50 and p99 over runs.

    .venv/bin/python bench/bench_reasons.py
    .venv/bin/python bench/bench_reasons.py --skip-live
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition

from features.usecases import build_featureset
from serving import produce
from training import replay
from training.candidates import CANDIDATES
from training.pyfunc import ProbabilityModel
from training.replay import Source
from training.simulators.fraud import simulate_fraud

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
FAMILIES = ("logistic_regression", "xgboost")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict).decode


class WithoutReasons(ProbabilityModel):
    """The same model, offering no reasons: what the scorer does for a model registered before them."""

    explained = None  # type: ignore[assignment]
    explained_one = None  # type: ignore[assignment]


def simulate(root: Path, payments: int) -> tuple[Any, list[dict[str, Any]], np.ndarray]:
    sim = simulate_fraud(root / "fraud", n_payments=payments, days=30, seed=5, fmt="jsonl")
    fs = build_featureset("fraud", root / "fraud", SECRET)
    history = replay.load(fs, [Source("payment", sim.payments), Source("label", sim.labels)])
    rows, labels = [], {}
    for outcome in replay.run(fs, history):
        rows.extend({**row, "featureset_version": fs.version} for row in outcome.rows)
        labels.update({label["payment_id"]: label["is_fraud"] for label in outcome.labels})
    y = np.array([labels.get(r["payment_id"], False) for r in rows], dtype=int)
    return fs, rows, y


def per_row(model: ProbabilityModel, x: np.ndarray, batch: int) -> dict[str, float]:
    """µs per row of the prediction alone and of the score with its reasons, one row at a time,
    and of the score with its reasons in batches."""
    rows = x.tolist()
    for row in rows[:200]:  # builds the fast paths, warms the caches
        model.predict_one(row)
        model.explained_one(row)
    predict, reasons = [], []
    for row in rows:
        started = time.perf_counter()
        model.predict_one(row)
        middle = time.perf_counter()
        model.explained_one(row)
        reasons.append(time.perf_counter() - middle)
        predict.append(middle - started)
    started = time.perf_counter()
    for at in range(0, len(x), batch):
        model.explained(x[at : at + batch])
    batched = (time.perf_counter() - started) / len(x)
    us = 1e6
    return {
        "predict_p50": float(np.median(predict)) * us,
        "reasons_p50": float(np.median(reasons)) * us,
        "reasons_p99": float(np.percentile(reasons, 99)) * us,
        "batched": batched * us,
    }


def register(tracking_uri: str, name: str, model: ProbabilityModel, sample: pd.DataFrame, fs_version: str) -> str:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=infer_signature(sample, model.predict(None, sample)),
            pip_requirements=[],
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    MlflowClient(tracking_uri).set_model_version_tag(name, version, "featureset_version", fs_version)
    return version


def live_latency(
    args: argparse.Namespace, root: Path, tracking_uri: str, name: str, version: str, rows: list[dict[str, Any]]
) -> tuple[float, float]:
    """(p50, p99) ms of the scorer's decisions on rows paced at `--rate`, after 1,000 warm-up rows."""
    prefix = f"bench-reasons-{uuid.uuid4().hex[:8]}-"
    features, decisions = f"{prefix}fraud-features", f"{prefix}fraud-decisions"
    produce.ensure_topic(args.bootstrap, features, 1)
    command = [sys.executable, "-m", "serving.cli", "serve", "fraud", "--data-dir", str(root), "--secret", SECRET]
    command += ["--topic-prefix", prefix, "--bootstrap", args.bootstrap, "--tracking-uri", tracking_uri]
    command += ["--model-name", name, "--alias", version, "--state-dir", str(root / "state" / prefix)]
    log = (root / f"{prefix}serve.log").open("wb")
    scorer = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 0, "enable.idempotence": True})
    warm, paced = rows[:1_000], rows[1_000 : 1_000 + int(args.rate * args.seconds)]
    try:
        _publish(producer, features, warm, 0.0)
        _wait_for(decisions, args.bootstrap, len(warm), 180)
        _publish(producer, features, paced, args.rate)
        records = _wait_for(decisions, args.bootstrap, len(warm) + len(paced), 120)
    finally:
        scorer.send_signal(signal.SIGINT)
        scorer.wait(30)
    timed = {r["payment_id"] for r in paced}
    latency = np.array([r["latency_ms"] for r in records if r["payment_id"] in timed])
    assert len(latency) == len(paced), "every paced row has one decision"
    return float(np.percentile(latency, 50)), float(np.percentile(latency, 99))


def _publish(producer: Producer, topic: str, rows: list[dict[str, Any]], rate: float) -> None:
    started = time.perf_counter()
    for n, row in enumerate(rows):
        if rate > 0 and (delay := started + n / rate - time.perf_counter()) > 0:
            time.sleep(delay)
        producer.produce(topic, key=row["payment_id"].encode(), value=_encode(row))
        producer.poll(0)
    producer.flush(30)


def _wait_for(topic: str, bootstrap: str, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """Every record of `topic` once it holds `count`; TimeoutError if it does not in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = _read(topic, bootstrap)
        if len(records) >= count:
            return records
        time.sleep(0.5)
    raise TimeoutError(f"{topic} has fewer than {count} records after {timeout_s} s")


def _read(topic: str, bootstrap: str) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or not metadata.partitions:
            return []
        records: list[dict[str, Any]] = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            while True:
                message = consumer.poll(5)
                if message is None:
                    break
                if message.error() is None:
                    records.append(_decode(message.value()))
                if message.offset() >= high - 1:
                    break
        return records
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=30_000, help="simulated payments (fit and timed rows)")
    parser.add_argument("--rows", type=int, default=5_000, help="rows timed one at a time")
    parser.add_argument("--batch", type=int, default=500, help="rows per batch for batched reasons")
    parser.add_argument("--rate", type=float, default=1_000.0, help="feature rows per second in the live runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each live run")
    parser.add_argument("--repeats", type=int, default=3, help="live runs per setting; the median is reported")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-reasons-"))
    try:
        fs, rows, y = simulate(root, args.payments)
        frame = pd.DataFrame(rows)[list(fs.feature_names)].astype("float64")
        split = len(frame) // 2
        print(f"{len(rows):,} feature rows, {len(fs.feature_names)} features, {y.mean():.2%} fraud")
        models = {
            family: ProbabilityModel(CANDIDATES[family](0).fit(frame[:split], y[:split]), fs.feature_names)
            for family in FAMILIES
        }
        timed = frame[split:].head(args.rows).to_numpy()
        print(f"\nper decision, {len(timed):,} rows one at a time (batched: {args.batch} rows a call)")
        for family, model in models.items():
            cost = per_row(model, timed, args.batch)
            print(
                f"  {family:<20} predict alone p50 {cost['predict_p50']:7.1f} µs | "
                f"score and reasons p50 {cost['reasons_p50']:7.1f} µs, "
                f"p99 {cost['reasons_p99']:7.1f} µs | batched {cost['batched']:6.1f} µs/row"
            )
        if args.skip_live:
            return
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        sample = frame.head(20)
        live = rows[split:]
        print(f"\nlive scorer at {args.rate:,.0f} rows/s, {args.seconds:g} s a run, median of {args.repeats} runs")
        for family, model in models.items():
            name = f"bench-{family.replace('_', '-')}"
            plain = WithoutReasons(model.estimator, model.feature_names)
            versions = {
                "with reasons": register(tracking_uri, name, model, sample, fs.version),
                "without": register(tracking_uri, name, plain, sample, fs.version),
            }
            runs: dict[str, list[tuple[float, float]]] = {setting: [] for setting in versions}
            for _ in range(args.repeats):
                for setting, version in versions.items():
                    runs[setting].append(live_latency(args, root, tracking_uri, name, version, live))
            p50s = {}
            for setting, measured in runs.items():
                p50s[setting] = p50 = float(np.median([m[0] for m in measured]))
                p99 = np.median([m[1] for m in measured])
                each = ", ".join(f"{m[0]:.2f}" for m in measured)
                print(f"  {family:<20} {setting:<13} p50 {p50:6.2f} ms (runs {each}), p99 {p99:6.2f} ms")
            added = p50s["with reasons"] - p50s["without"]
            print(f"  {family:<20} reasons add {added:+.2f} ms to the p50 (target: at most +1 ms)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
