"""Live-path benchmarks on the local broker: throughput and latency of features, scorer and shadows.

Simulates a fraud history, fits and registers real candidates (logistic regression as champion;
XGBoost, histogram gradient boosting and a second logistic regression as challengers) in a
throw-away MLflow store, then measures, each on fresh topics:

1. produce -> decision latency through the feature process and the scorer (separate processes)
   with events paced at `--rate` payments/s: at-least-once alone, at-least-once with three
   shadow challengers running, and exactly-once per commit interval (read_committed reader);
2. feature-process throughput against a pass-through quixstreams app on the same events topic,
   and the ceiling that the feature code alone (timed in the batch driver) leaves it;
3. scorer throughput on a filled feature topic (champion only), per model family and guarantee.

Latency comes first, after one unrecorded warm-up run: a cold broker JVM and a broker busy
after the throughput runs (millions of messages to roll and clean) both showed as a p99 of
160-280 ms instead of about 20 ms. Each latency setting runs `--repeats` times and reports the
median p99 with the range: one broker GC pause of 20-180 ms decides the p99 of a single run. Runs
with and without shadows alternate; a shadow run starts measuring once every challenger has
scored the warm-up rows.

Latency runs from the moment an event is handed to the producer (its Kafka timestamp, which the
feature row and the decision inherit) to the moment a reader receives the decision.

    .venv/bin/python bench/bench_live.py
    .venv/bin/python bench/bench_live.py --payments 20000 --seconds 10 --intervals 0.1
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from quixstreams import Application, State
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from features.featureset import LocalRunner
from serving import produce
from serving.feature_process import FeatureProcess
from serving.registry import ModelWatcher, Registry
from serving.scorer import ScoringProcess
from serving.settings import LiveSettings

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
MODEL = "fraud-detector"
console = Console()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bootstrap = args.bootstrap
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
        self.data = self.tmp / "data"
        self.rows: list[dict[str, Any]] = []
        self.messages: list[produce.Outgoing] = []
        self.tracking_uri = f"sqlite:///{self.tmp / 'mlflow.db'}"
        self.versions: dict[str, str] = {}
        self.results: list[tuple[str, str, str, str]] = []
        self.prefixes: list[str] = []

    def prefix(self, kind: str) -> str:
        self.prefixes.append(f"bench-{kind}-{uuid.uuid4().hex[:6]}-")
        return self.prefixes[-1]

    # --- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        from training import replay
        from training.replay import Source
        from training.simulators.fraud import simulate_fraud

        with console.status(f"simulating {self.args.payments:,} payments"):
            sim = simulate_fraud(self.data / "fraud", n_payments=self.args.payments, days=30, seed=3, fmt="jsonl")
        fs = self.fs = self.featureset()
        self.messages = produce.load(
            fs, [produce.EventFile("payment", sim.payments), produce.EventFile("label", sim.labels)]
        )
        history = replay.load(fs, [Source("payment", sim.payments), Source("label", sim.labels)])
        labels: dict[str, bool] = {}
        for outcome in replay.run(fs, history):
            self.rows.extend({**r, "featureset_version": fs.version} for r in outcome.rows)
            labels.update({lb["payment_id"]: lb["is_fraud"] for lb in outcome.labels})
        with console.status("fitting and registering candidates"):
            self.register(labels)

    def featureset(self) -> Any:
        from features.usecases import build_featureset

        return build_featureset("fraud", self.data / "fraud", SECRET)

    def register(self, labels: dict[str, bool]) -> None:
        import mlflow
        import pandas as pd
        from mlflow import MlflowClient
        from mlflow.models import infer_signature

        from training.candidates import CANDIDATES
        from training.pyfunc import ProbabilityModel

        mlflow.set_tracking_uri(self.tracking_uri)
        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.create_experiment("fraud", artifact_location=(self.tmp / "artifacts").as_uri())
        names = list(self.fs.feature_names)
        frame = pd.DataFrame(self.rows)[names].astype("float64")
        y = np.array([labels.get(r["payment_id"], False) for r in self.rows], dtype=int)
        fits = {
            "logistic_regression": CANDIDATES["logistic_regression"](0),
            "xgboost": CANDIDATES["xgboost"](0),
            "hist_gradient_boosting": CANDIDATES["hist_gradient_boosting"](0),
            "logistic_regression_l2": CANDIDATES["logistic_regression"](0).set_params(logisticregression__C=0.05),
        }
        for name, estimator in fits.items():
            model = ProbabilityModel(estimator.fit(frame.to_numpy(), y), self.fs.feature_names)
            with mlflow.start_run(experiment_id=experiment, run_name=name):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=model,
                    pip_requirements=[],
                    registered_model_name=MODEL,
                    signature=infer_signature(frame.head(5), model.predict(None, frame.head(5))),
                )
            self.versions[name] = str(info.registered_model_version)
            alias = "champion" if name == "logistic_regression" else f"challenger-{name.replace('_', '-')}"
            client.set_registered_model_alias(MODEL, alias, self.versions[name])

    def settings(self, prefix: str, guarantee: str, interval: float | None = None) -> LiveSettings:
        return LiveSettings(
            "fraud",
            bootstrap=self.bootstrap,
            prefix=prefix,
            guarantee=guarantee,  # type: ignore[arg-type]
            commit_interval=interval,
            state_dir=self.tmp / "state" / prefix,
            instance="bench",
        )

    def record(self, what: str, setting: str, figure: str, target: str) -> None:
        """One result row; the 1-minute load average says how busy the machine was meanwhile."""
        figure = f"{figure} (load {os.getloadavg()[0]:.1f})"
        self.results.append((what, setting, figure, target))
        console.print(f"  {escape(what)} ({escape(setting)}): [bold]{escape(figure)}[/] (target {escape(target)})")

    # --- throughput --------------------------------------------------------------------------

    def throughput(self) -> None:
        prefix = self.prefix("tp")
        events = f"{prefix}fraud-events"
        produce.ensure_topic(self.bootstrap, events, 1)
        produce.publish(self.bootstrap, events, self.messages)
        n = len(self.messages)
        rates = {}
        for serializer in ("json", "bytes"):
            rates[serializer] = self.pass_through(events, f"{prefix}copy-{serializer}", serializer, n)
            self.record(
                "pass-through quixstreams app",
                f"{serializer} values, at-least-once",
                f"{rates[serializer]:,.0f} events/s",
                "reference",
            )
        floor = self.topology_floor(events, f"{prefix}floor", n)
        self.record(
            "feature process shape, no feature code",
            "two keyed stateful steps and a re-key, at-least-once",
            f"{floor:,.0f} events/s = {floor / rates['json']:.2f} x pass-through (json)",
            "reference",
        )
        self.feature_code_ceiling(rates)
        for guarantee in ("at-least-once", "exactly-once"):
            timed = _Timed()
            process = FeatureProcess(
                self.featureset(), self.settings(prefix, guarantee), on_message=timed.tick, role=f"features-{guarantee}"
            )
            process.run(idle_timeout=60, max_events=n)
            rate = timed.rate()
            self.record(
                "feature process",
                guarantee,
                f"{rate:,.0f} events/s = {rate / rates['json']:.2f} x pass-through (json)",
                ">= 0.5 x",
            )

        features = f"{prefix}fraud-features"
        _produce(self.bootstrap, features, ((r["payment_id"].encode(), msgspec.json.encode(r)) for r in self.rows))
        for family in ("logistic_regression", "xgboost", "hist_gradient_boosting"):
            for guarantee in ("at-least-once", "exactly-once"):
                if family == "hist_gradient_boosting" and guarantee == "exactly-once":
                    continue
                settings = self.settings(prefix, guarantee)
                watcher = ModelWatcher(
                    Registry(self.tracking_uri), MODEL, self.versions[family], tuple(self.fs.columns)
                )
                watcher.start()
                timed = _Timed()
                count = min(len(self.rows), self.args.scorer_rows if family != "hist_gradient_boosting" else 5_000)
                scorer = ScoringProcess(
                    self.fs, settings, watcher, on_message=timed.tick, role=f"scorer-{family}-{guarantee}"
                )
                scorer.run(idle_timeout=60, max_rows=count)
                target = ">= 5,000/s" if family == "logistic_regression" else "champion family dependent"
                self.record(f"scorer, champion only ({family})", guarantee, f"{timed.rate():,.0f} payments/s", target)

    def feature_code_ceiling(self, rates: dict[str, float]) -> None:
        """The feature code alone on the same messages (batch driver: no Kafka, state in dicts),
        and the most a feature process could reach: the cheapest pass-through's cost plus that
        code, as if quixstreams' state and the second keyed step cost nothing."""
        runner = LocalRunner(self.featureset())
        started = time.perf_counter()
        for message in self.messages:
            runner.process(None, message.value)
        per_event = (time.perf_counter() - started) / len(self.messages)
        self.record(
            "feature code alone",
            "batch driver on the same events: parse, depersonalize, both stages",
            f"{per_event * 1e6:.1f} µs/event = {1 / per_event:,.0f} events/s",
            "reference",
        )
        ceiling = 1 / (1 / rates["bytes"] + per_event)
        self.record(
            "feature process ceiling",
            "pass-through (bytes) + feature code alone, state and re-key free",
            f"{ceiling:,.0f} events/s = {ceiling / rates['json']:.2f} x pass-through (json)",
            "reference: the target needs >= 0.5 x",
        )

    def pass_through(self, source: str, sink: str, serializer: str, n: int) -> float:
        def wire(app: Application) -> None:
            sdf = app.dataframe(app.topic(source, value_deserializer=serializer, key_deserializer="bytes"))
            sdf.to_topic(app.topic(sink, value_serializer=serializer, key_serializer="bytes"))

        return self.quix_rate(source, sink, n, wire)

    def topology_floor(self, source: str, sink: str, n: int) -> float:
        """The feature process's shape with trivial steps: the events topic's key (the merchant)
        keys a step that reads its state for every event and writes it for labels; a re-key
        (a stand-in for the customer pseudonym) feeds a step that reads and writes its state
        for payments; a small JSON row goes out per event. What quixstreams costs before any
        feature code runs."""

        def first(event: dict[str, Any], state: State) -> dict[str, Any]:
            seen = state.get("n", 0)
            if event["type"] == "label":
                state.set("n", seen + 1)
            return event

        def second(event: dict[str, Any], state: State) -> dict[str, Any]:
            seen = state.get("n", 0)
            if event["type"] == "payment":
                state.set("n", seen + 1)
            return {"payment_id": event["payment_id"], "n": seen}

        def rekey(event: dict[str, Any]) -> str:
            return str(hash(event.get("customer_id", event["payment_id"])) % 2_000)

        def wire(app: Application) -> None:
            sdf = app.dataframe(app.topic(source, value_deserializer="json", key_deserializer="bytes"))
            sdf = sdf.apply(first, stateful=True)
            sdf = sdf.group_by(rekey, name="floor", key_serializer="str", key_deserializer="str")
            sdf = sdf.apply(second, stateful=True)
            sdf.to_topic(app.topic(sink, value_serializer="json", key_serializer="str"), key=lambda r: r["payment_id"])

        return self.quix_rate(source, sink, n, wire)

    def quix_rate(self, source: str, sink: str, n: int, wire: Callable[[Application], None]) -> float:
        """Events/s of the quixstreams app `wire` builds, over the first `n` messages of `source`."""
        timed = _Timed()
        apps: list[Application] = []

        def tick(topic: str, *_: Any) -> None:
            if topic != source:
                return
            timed.tick()
            if timed.count >= n:
                apps[0].stop()

        app = Application(
            broker_address=self.bootstrap,
            consumer_group=f"{sink}-group",
            auto_offset_reset="earliest",
            processing_guarantee="at-least-once",
            loglevel="WARNING",
            commit_interval=1.0,
            state_dir=self.tmp / "state" / sink,
            on_message_processed=tick,
        )
        apps.append(app)
        wire(app)
        app.run(collect=False)
        return timed.rate()

    # --- latency -----------------------------------------------------------------------------

    def latency(self, guarantee: str, interval: float | None, shadows: bool) -> tuple[float, float, float, int]:
        prefix = self.prefix("lat")
        settings = self.settings(prefix, guarantee, interval)
        produce.ensure_topic(self.bootstrap, settings.topics.events, 1)
        common = [
            "fraud",
            "--data-dir",
            str(self.data),
            "--secret",
            SECRET,
            "--topic-prefix",
            prefix,
            "--bootstrap",
            self.bootstrap,
        ]
        tuned = ["--guarantee", guarantee, "--instance-id", "bench"] + (
            ["--commit-interval", str(interval)] if interval else []
        )
        commands = [
            ["features", *common, *tuned, "--state-dir", str(self.tmp / "state" / prefix)],
            ["serve", *common, *tuned, "--tracking-uri", self.tracking_uri, "--state-dir", str(self.tmp / "state")],
        ]
        if shadows:
            live_db = str(self.tmp / f"{prefix}live.duckdb")
            commands.append(
                [
                    "shadow",
                    *common,
                    "--tracking-uri",
                    self.tracking_uri,
                    "--live-db",
                    live_db,
                    "--metrics-interval",
                    "10",
                    "--state-dir",
                    str(self.tmp / "state"),
                ]
            )
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        processes = [_start(c, logs / f"{prefix}{c[0]}.log") for c in commands]
        warm = 2_000
        paced = self.messages[warm : warm + int(self.args.seconds * self.args.rate * 2)]
        payments = sum(b'"type":"payment"' in m.value for m in paced)
        reader = _Reader(self.bootstrap, settings.topics.decisions, committed=guarantee == "exactly-once")
        producer = produce.replay_producer(self.bootstrap, paced=True)
        try:
            reader.start()
            produce.publish(self.bootstrap, settings.topics.events, self.messages[:warm], producer=producer)
            warm_payments = sum(b'"type":"payment"' in m.value for m in self.messages[:warm])
            _wait(lambda: reader.count >= warm_payments, 180, "the warm-up decisions")
            if shadows:
                # Measure with the shadows running, not starting: each has scored the warm-up rows.
                scores = _ScoreCount(self.bootstrap, settings.topics.shadow_scores)
                challengers = len(self.versions) - 1
                try:
                    _wait(lambda: scores.count() >= challengers * warm_payments, 300, "the shadows' warm-up scores")
                finally:
                    scores.close()
            reader.reset()
            produce.publish(self.bootstrap, settings.topics.events, paced, rate=self.args.rate * 2, producer=producer)
            _wait(lambda: reader.count >= payments, 120, "every paced decision")
        finally:
            for p in processes:
                p.send_signal(signal.SIGTERM)
            for p in processes:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            reader.stop()
        lat = np.array(reader.latencies)
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max()), len(lat)

    def repeated(self, guarantee: str, interval: float | None, shadows: bool) -> tuple[float, float, float, float, int]:
        """`--repeats` runs of one setting, summed up by `_summary`."""
        return _summary([self.latency(guarantee, interval, shadows) for _ in range(self.args.repeats)])

    def latencies(self) -> None:
        rate = f"{self.args.rate:,.0f} payments/s"
        runs = f"median of {self.args.repeats} runs"
        # A broker fresh from `make kafka-up` still compiles and sizes its JVM: the first run on it
        # had a p99 of 206 ms where the next had 22 ms. One unrecorded run warms it up.
        self.latency("at-least-once", None, shadows=False)
        # Runs with and without shadows alternate, so both medians see the same machine: its
        # tail moved between 12 and 50 ms from one block of runs to the next.
        alone_runs, shadowed_runs = [], []
        for _ in range(self.args.repeats):
            alone_runs.append(self.latency("at-least-once", None, shadows=False))
            if not self.args.skip_shadows:
                shadowed_runs.append(self.latency("at-least-once", None, shadows=True))
        p50, p99, low, high, n = _summary(alone_runs)
        self.record(
            "produce -> decision, champion only",
            f"at-least-once, {rate}, {runs}",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (runs {low:.1f}-{high:.1f}; {n:,} payments a run)",
            "p99 <= 25 ms",
        )
        alone = p99
        if shadowed_runs:
            p50, p99, low, high, n = _summary(shadowed_runs)
            self.record(
                "produce -> decision, with 3 shadows",
                f"at-least-once, {rate}, {runs}, alternating with the runs alone",
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({p99 / alone - 1:+.0%} vs alone; runs {low:.1f}-{high:.1f})",
                "p99 within +10 %",
            )
        for interval in self.args.intervals:
            p50, p99, low, high, n = self.repeated("exactly-once", interval, shadows=False)
            self.record(
                "produce -> committed decision",
                f"exactly-once, commit {interval:g} s, {rate}, {runs}",
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (runs {low:.0f}-{high:.0f})",
                "pick: p99 < 250 ms",
            )

    def clean_up(self) -> None:
        """Delete this run's topics (changelogs and repartition topics included) and files."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [t for t in admin.list_topics(timeout=10).topics if any(p in t for p in self.prefixes)]
        for future in (admin.delete_topics(names) if names else {}).values():
            future.result(30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def report(self) -> None:
        table = Table(
            title=f"samestream live path on {os.cpu_count()} cores (load average now {os.getloadavg()[0]:.1f})"
        )
        for column in ("measure", "setting", "figure", "target"):
            table.add_column(column)
        for row in self.results:
            table.add_row(*row)
        console.print(table)
        console.print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))


def _summary(runs: list[tuple[float, float, float, int]]) -> tuple[float, float, float, float, int]:
    """Median p50 and p99 over runs (a paused broker or a busy core decides the tail of any one
    run), the lowest and highest p99, and the payments of one run."""
    p99s = [r[1] for r in runs]
    return float(np.median([r[0] for r in runs])), float(np.median(p99s)), min(p99s), max(p99s), runs[0][3]


class _Timed:
    """Counts input messages and the time from the first to the last."""

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0

    def tick(self, *_: Any) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.last = now
        self.count += 1

    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.count > 1 else 0.0


class _Reader(threading.Thread):
    """Reads decisions as they arrive; latency = arrival - the decision's (inherited) timestamp."""

    def __init__(self, bootstrap: str, topic: str, committed: bool) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{uuid.uuid4().hex}",
                "isolation.level": "read_committed" if committed else "read_uncommitted",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self.topic = topic
        self.latencies: list[float] = []
        self.count = 0
        self._halt = threading.Event()

    def reset(self) -> None:
        self.latencies = []
        self.count = 0

    def run(self) -> None:
        _wait(lambda: self.topic in self.consumer.list_topics(timeout=5).topics, 120, f"topic {self.topic}")
        self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        while not self._halt.is_set():
            msg = self.consumer.poll(0.05)
            if msg is None or msg.error() is not None:
                continue
            self.latencies.append(time.time() * 1000.0 - msg.timestamp()[1])
            self.count += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self.consumer.close()


class _ScoreCount:
    """Counts the score records on a shadow-scores topic (JSON arrays of them) as they arrive."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-scores-{uuid.uuid4().hex}"})
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.records = 0

    def count(self) -> int:
        for msg in self.consumer.consume(1000, timeout=0.5):
            if msg.error() is None:
                self.records += len(msgspec.json.decode(msg.value()))
        return self.records

    def close(self) -> None:
        self.consumer.close()


def _produce(bootstrap: str, topic: str, messages: Any) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    producer.flush(60)


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli", *command], cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("SAMESTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument(
        "--payments", type=int, default=40_000, help="simulated payments (events are about twice as many)"
    )
    parser.add_argument("--scorer-rows", type=int, default=40_000, help="rows scored in the scorer throughput runs")
    parser.add_argument("--rate", type=float, default=1_000.0, help="payments per second in the latency runs")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each latency run")
    parser.add_argument(
        "--intervals",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=[0.05, 0.1, 0.25],
        help="exactly-once commit intervals to try",
    )
    parser.add_argument("--repeats", type=int, default=5, help="latency runs per setting; the median is reported")
    parser.add_argument("--skip-shadows", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    bench = Bench(args)
    try:
        bench.setup()
        console.print(f"{len(bench.messages):,} events, {len(bench.rows):,} feature rows; models {bench.versions}")
        if not args.skip_latency:
            bench.latencies()
        if not args.skip_throughput:
            bench.throughput()
        bench.report()
    finally:
        bench.clean_up()


if __name__ == "__main__":
    main()
