"""Live-path benchmarks on the local broker: latency, feature-process scale-out, scorer throughput.

Simulates a fraud history and replays it as `samestream produce` does: payments on
`<prefix>fraud-events` keyed by the raw customer id, labels (with hourly watermarks and a
closing one) on the one-partition label feed `<prefix>fraud-label-events`. Models (logistic regression as champion;
XGBoost, histogram gradient boosting and a second logistic regression as challengers) are fitted
on the batch rows and registered in a throw-away MLflow store with the tags `samestream train`
gives them (`featureset_version` above all: the scorer refuses rows of any other version). Each
measurement runs on fresh topics. `--parts` picks what runs:

- `latency`: produce -> decision through the feature process and the scorer (separate
  `samestream` processes), payments paced at `--rate` per second: at-least-once champion alone,
  with three shadow challengers (`--skip-shadows` leaves them out), and exactly-once per
  commit interval (read_committed reader; `--intervals ''` leaves it out). Every decision reads
  the merchant-risk table, so this is the latency with the table lookup. The paced label feed
  carries `samestream produce`'s watermark every simulated hour, as a quiet live feed does:
  without one, no table day is final before the first label is known (two weeks into the
  simulation) and every row would wait for the feed; at 1,000 payments/s a simulated day passes
  in about 1.3 s. The
  first payments after each day's close (00:00 + the one-hour grace) need the watermark that
  closed it, published just before them: if the feed reader thread has not folded it yet, the
  row waits (the figure says how often and how long, from the feature process's summary). Live,
  that happens once a day; in this replay, every 1.3 s, so these waits weigh on the p99 some
  65,000 times more than they would live.
- `features`: feature-process throughput. References on a one-partition events topic: a
  pass-through quixstreams app, the feature process's shape without feature code
  (`topology_floor`), the feature code alone in the batch driver and the ceiling both leave.
  Then the feature process itself, for 1 and 4 partitions of the events topic in one process,
  and 4 partitions shared by 2 replicas of one consumer group, each replica its own OS process
  (`multiprocessing`, spawned), per guarantee (`--guarantees`), `--tp-repeats` times each.
- `scorer`: scorer throughput on a filled feature topic (champion only), per model family and
  guarantee.

How the feature process is timed: the replicas start on empty topics and the run waits until
the consumer group is stable (every replica a member, every events partition assigned). Then
every message (payments and feed) is published in ONE Kafka transaction: the replicas read
committed records only, so all of it becomes visible at once and the producer's own work is
over before any replica starts. Each replica records, in shared memory, the wall-clock time of
its first input message, the time of the last message it processed on any topic (the events
and feed topics, the repartition topics behind them) and its counts. Aggregate events/s = all
input messages (events topic + feed) / (last processed message of any replica - first input of
any replica); per process = its inputs / its own first-to-last span. The replicas are stopped
with SIGTERM once every input is counted and all have been idle for 2 s. On one partition
quixstreams re-keys in place; on more, every re-key goes through a repartition topic, whose
messages the span includes but the count does not. The bench before this topology counted the
same way on its one partition, but all 80,000 events (payments and labels) were on the events
topic and went through two keyed stages; now labels travel on the feed, so events/s counts
payments and feed messages alike.

Latency comes first, after one unrecorded warm-up run: a cold broker JVM and a broker busy
after the throughput runs (millions of messages to roll and clean) both showed as a p99 of
160-280 ms instead of about 20 ms. Each latency setting runs `--repeats` times and reports the
median p99 with the range: one broker GC pause of 20-180 ms decides the p99 of a single run. Runs
with and without shadows alternate; a shadow run starts measuring once every challenger has
scored the warm-up rows. Latency runs from the moment an event is handed to the producer (its
Kafka timestamp, which the feature row and the decision inherit) to the moment a reader
receives the decision. The machine has two cores shared by the broker, the producer and every
process measured: two replicas cannot reach twice one, and the figures say what this machine
gives, not what the design allows.

    .venv/bin/python bench/bench_live.py
    .venv/bin/python bench/bench_live.py --parts latency --payments 20000 --seconds 10 --repeats 1
    .venv/bin/python bench/bench_live.py --parts features --payments 20000 --tp-repeats 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from features.usecases import build_featureset
from serving import produce
from serving.feature_process import FeatureProcess, ensure_feed
from serving.registry import ModelWatcher, Registry
from serving.scorer import ScoringProcess
from serving.settings import LiveSettings

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
MODEL = "fraud-detector"
PARTS = ("latency", "features", "scorer")
BEFORE = "BENCHMARKS.md of 2026-11-29, two keyed stages, merchant then customer"
"""The figures of the topology before the table, for the record next to today's."""
PREVIOUS_FEATURES = {"at-least-once": 19_132, "exactly-once": 16_050}
console = Console()
_payment_id = msgspec.json.Decoder(msgspec.defstruct("Id", [("payment_id", str)])).decode


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

    def setup(self, models: bool) -> None:
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
        if models:
            with console.status("fitting and registering candidates"):
                self.register(labels)

    def featureset(self) -> Any:
        return build_featureset("fraud", self.data / "fraud", SECRET)

    def register(self, labels: dict[str, bool]) -> None:
        """Fit the candidates and register them tagged as `training.harness` tags them."""
        import mlflow
        import pandas as pd
        from mlflow import MlflowClient
        from mlflow.models import infer_signature

        from training.candidates import CANDIDATES
        from training.pyfunc import ProbabilityModel

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
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
            tags = {
                "featureset_version": self.fs.version,
                "use_case": "fraud",
                "task_kind": "binary_classification",
                "candidate": name,
            }
            with mlflow.start_run(experiment_id=experiment, run_name=name, tags=tags):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=model,
                    pip_requirements=[],
                    registered_model_name=MODEL,
                    signature=infer_signature(frame.head(5), model.predict(None, frame.head(5))),
                )
            version = self.versions[name] = str(info.registered_model_version)
            for key, value in tags.items():
                client.set_model_version_tag(MODEL, version, key, value)
            alias = "champion" if name == "logistic_regression" else f"challenger-{name.replace('_', '-')}"
            client.set_registered_model_alias(MODEL, alias, version)

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

    def topics(self, prefix: str, partitions: int) -> tuple[str, str]:
        """The events topic (`partitions` of them) and the feed (one) of `prefix`, created."""
        topics = self.settings(prefix, "at-least-once").topics
        events, feed = topics.events, topics.named(self.fs.feed)
        produce.ensure_topic(self.bootstrap, events, partitions)
        ensure_feed(self.bootstrap, feed)
        return events, feed

    def record(self, what: str, setting: str, figure: str, target: str) -> None:
        """One result row; the 1-minute load average says how busy the machine was meanwhile."""
        figure = f"{figure} (load {os.getloadavg()[0]:.1f})"
        self.results.append((what, setting, figure, target))
        console.print(f"  {escape(what)} ({escape(setting)}): [bold]{escape(figure)}[/] (target {escape(target)})")

    # --- feature-process throughput ----------------------------------------------------------

    def feature_throughput(self) -> None:
        prefix = self.prefix("tp")
        events, feed = self.topics(prefix, 1)
        produce.publish(self.bootstrap, events, self.messages, feed_topic=feed)
        n = len(self.messages)
        rates = {}
        for serializer in ("json", "bytes"):
            rates[serializer] = self.pass_through((events, feed), f"{prefix}copy-{serializer}", serializer, n)
            self.record(
                "pass-through quixstreams app",
                f"{serializer} values, events topic and feed, at-least-once",
                f"{rates[serializer]:,.0f} events/s",
                "reference",
            )
        floor = self.topology_floor(events, feed, f"{prefix}floor", n)
        self.record(
            "feature process shape, no feature code",
            "1:1 re-key + one keyed stateful step; the feed to one key + a stateful fold; at-least-once",
            f"{floor:,.0f} events/s = {floor / rates['json']:.2f} x pass-through (json)",
            "reference",
        )
        self.feature_code_ceiling(rates)
        configs = [(1, 1), (4, 1), (4, 2)]
        for guarantee in self.args.guarantees:
            alone: dict[int, float] = {}
            for partitions, replicas in configs:
                runs = [self.replicas(partitions, replicas, guarantee) for _ in range(self.args.tp_repeats)]
                run = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
                rates_seen = [r.rate for r in runs]
                per = ", ".join(f"{r:,.0f}" for r in run.per_process)
                spread = f"runs {min(rates_seen):,.0f}-{max(rates_seen):,.0f}; " if len(runs) > 1 else ""
                waits = (
                    f"; {run.table_waits:,} wait(s) for the table ({run.table_wait_s:.1f} s)" if run.table_waits else ""
                )
                figure = (
                    f"{run.rate:,.0f} events/s ({run.payments_rate:,.0f} payments/s) = "
                    f"{run.rate / rates['json']:.2f} x pass-through (json); per process {per}; "
                    f"{spread}{run.rows:,} of {len(self.rows):,} batch rows{waits}"
                )
                if replicas > 1:
                    figure += f"; {run.rate / alone[partitions]:.2f} x one process on {partitions} partitions"
                else:
                    alone[partitions] = run.rate
                setting = (
                    f"{guarantee}, {partitions} partition{'s' * (partitions > 1)}, "
                    f"{replicas} replica{'s' * (replicas > 1)}, median of {len(runs)}"
                )
                target = ">= 0.5 x" if replicas == 1 else "near 2 x one process on 2 free cores"
                if (partitions, replicas) == (1, 1):
                    target += f"; before: {PREVIOUS_FEATURES[guarantee]:,} events/s ({BEFORE})"
                self.record("feature process", setting, figure, target)

    def replicas(self, partitions: int, count: int, guarantee: str) -> ReplicaRun:
        """One timed run of `count` feature-process replicas on a fresh events topic of
        `partitions` partitions (see the module docstring for the method)."""
        prefix = self.prefix(f"rep{partitions}x{count}")
        events, feed = self.topics(prefix, partitions)
        settings = self.settings(prefix, guarantee)
        context = multiprocessing.get_context("spawn")
        slots = [context.Array("d", len(_SLOT), lock=False) for _ in range(count)]
        procs = [
            context.Process(
                target=_replica,
                args=(
                    {
                        "use_case": "fraud",
                        "bootstrap": self.bootstrap,
                        "prefix": prefix,
                        "guarantee": guarantee,
                        "state_dir": self.tmp / "state" / f"{prefix}r{i}",
                        "instance": f"r{i}",
                    },
                    str(self.data),
                    slots[i],
                ),
                name=f"replica-{i}",
            )
            for i in range(count)
        ]
        for proc in procs:
            proc.start()
        try:
            _wait_group(self.bootstrap, settings.topics.group("features"), events, partitions, count, procs)
            time.sleep(2.0)  # state recovery (empty) and the first fetches settle
            producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "transactional.id": f"{prefix}bench-producer",
                    "linger.ms": 20,
                    "queue.buffering.max.messages": 1_000_000,
                }
            )
            producer.init_transactions(30)
            producer.begin_transaction()
            produce.publish(self.bootstrap, events, self.messages, feed_topic=feed, producer=producer)
            producer.commit_transaction(60)
            n = len(self.messages)

            def finished() -> bool:
                if any(not p.is_alive() for p in procs):
                    raise RuntimeError("a replica died; see its output above")
                done = sum(int(s[_SLOT["inputs"]]) for s in slots) >= n
                return done and time.time() - max(s[_SLOT["last"]] for s in slots) > 2.0

            _wait(finished, 600, f"{n:,} input messages through {count} replica(s)")
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()  # SIGTERM: quixstreams stops, the replica writes its counts
            for proc in procs:
                proc.join(60)
                if proc.is_alive():
                    proc.kill()
        first = min(s[_SLOT["first"]] for s in slots if s[_SLOT["inputs"]])
        last = max(s[_SLOT["last"]] for s in slots)
        inputs = sum(s[_SLOT["inputs"]] for s in slots)
        payments = sum(s[_SLOT["payments"]] for s in slots)
        return ReplicaRun(
            rate=inputs / (last - first),
            payments_rate=payments / (last - first),
            per_process=[
                s[_SLOT["inputs"]] / (s[_SLOT["last"]] - s[_SLOT["first"]]) if s[_SLOT["inputs"]] > 1 else 0.0
                for s in slots
            ],
            rows=int(sum(s[_SLOT["rows"]] for s in slots)),
            table_waits=int(sum(s[_SLOT["table_waits"]] for s in slots)),
            table_wait_s=sum(s[_SLOT["table_wait_s"]] for s in slots),
        )

    def feature_code_ceiling(self, rates: dict[str, float]) -> None:
        """The feature code alone on the same messages (batch driver: no Kafka, state in dicts),
        and the most a feature process could reach: the cheapest pass-through's cost plus that
        code, as if quixstreams' state and the re-keys cost nothing."""
        runner = LocalRunner(self.featureset())
        started = time.perf_counter()
        for message in self.messages:
            runner.process(None, message.value)
        per_event = (time.perf_counter() - started) / len(self.messages)
        self.record(
            "feature code alone",
            "batch driver on the same events: parse, depersonalize, customer stage, table fold and reads",
            f"{per_event * 1e6:.1f} µs/event = {1 / per_event:,.0f} events/s",
            "reference",
        )
        ceiling = 1 / (1 / rates["bytes"] + per_event)
        self.record(
            "feature process ceiling",
            "pass-through (bytes) + feature code alone, state and re-keys free",
            f"{ceiling:,.0f} events/s = {ceiling / rates['json']:.2f} x pass-through (json)",
            "reference: the target needs >= 0.5 x",
        )

    def pass_through(self, sources: tuple[str, str], sink: str, serializer: str, n: int) -> float:
        """Every message of the events topic and of the feed copied to `sink`, untouched."""

        def wire(app: Application) -> None:
            out = app.topic(sink, value_serializer=serializer, key_serializer="bytes")
            for source in sources:
                app.dataframe(app.topic(source, value_deserializer=serializer, key_deserializer="bytes")).to_topic(out)

        return self.quix_rate(sources, sink, n, wire)

    def topology_floor(self, events: str, feed: str, sink: str, n: int) -> float:
        """The feature process's shape with trivial steps, what quixstreams costs before any
        feature code runs. Events topic (keyed by the raw customer id): a stateless step parses
        the JSON, a 1:1 re-key (`group_by`, a stand-in for the pseudonym) feeds one keyed
        stateful step that reads and writes its key's state for every payment, and a small JSON
        row goes out per payment, keyed by its id. Feed: re-keyed to one key (`group_by`), a
        stateful step reads and writes the fold's state per message, a small row goes out per
        label. Left out: the feed reader thread every replica runs beside the pipeline (a
        second read of the feed into the table views), depersonalization and the features."""

        def count(event: dict[str, Any], state: State) -> dict[str, Any]:
            seen = state.get("n", 0)
            state.set("n", seen + 1)
            return {"payment_id": event.get("payment_id", ""), "n": seen}

        def wire(app: Application) -> None:
            out = app.topic(sink, value_serializer="json", key_serializer="str")
            sdf = app.dataframe(app.topic(events, value_deserializer="json", key_deserializer="bytes"))
            sdf = sdf.group_by(
                lambda e: "c-" + e["customer_id"], name="floor", key_serializer="str", key_deserializer="str"
            )
            sdf.apply(count, stateful=True).to_topic(out, key=lambda r: r["payment_id"])
            fed = app.dataframe(app.topic(feed, value_deserializer="json", key_deserializer="bytes"))
            fed = fed.group_by(lambda _: "feed", name="floor-feed", key_serializer="str", key_deserializer="str")
            fed.apply(count, stateful=True).to_topic(out, key=lambda r: r["payment_id"])

        return self.quix_rate((events, feed), sink, n, wire)

    def quix_rate(self, sources: Sequence[str], sink: str, n: int, wire: Callable[[Application], None]) -> float:
        """Input messages/s of the quixstreams app `wire` builds, over the first `n` messages
        of `sources`, from the first input to the last message processed (on any topic)."""
        timed = _Timed()
        apps: list[Application] = []

        def tick(topic: str, *_: Any) -> None:
            timed.tick(counted=topic in sources)
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

    # --- scorer throughput -------------------------------------------------------------------

    def scorer_throughput(self) -> None:
        prefix = self.prefix("sc")
        features = f"{prefix}fraud-features"
        _produce(self.bootstrap, features, ((r["payment_id"].encode(), msgspec.json.encode(r)) for r in self.rows))
        for family in ("logistic_regression", "xgboost", "hist_gradient_boosting"):
            for guarantee in ("at-least-once", "exactly-once"):
                if family == "hist_gradient_boosting" and guarantee == "exactly-once":
                    continue
                settings = self.settings(prefix, guarantee)
                watcher = ModelWatcher(
                    Registry(self.tracking_uri),
                    MODEL,
                    self.versions[family],
                    tuple(self.fs.columns),
                    featureset_version=self.fs.version,
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

    # --- latency -----------------------------------------------------------------------------

    def paced_slice(self) -> tuple[list[produce.Outgoing], list[produce.Outgoing], int, int]:
        """The warm-up messages, the paced ones (both with the feed's hourly watermarks), and the
        decisions each should bring."""
        messages = self.messages
        warm_end = 2_000
        paced_end = warm_end + int(self.args.seconds * self.args.rate * 2)
        if paced_end > len(messages):
            console.print(f"[yellow]only {len(messages) - warm_end:,} messages to pace: more --payments[/]")
        warm, paced = messages[:warm_end], messages[warm_end:paced_end]
        seen: set[str] = set()

        def decisions(part: list[produce.Outgoing]) -> int:
            before = len(seen)
            seen.update(_payment_id(m.value).payment_id for m in part if not m.feed and not m.invalid)
            return len(seen) - before

        return warm, paced, decisions(warm), decisions(paced)

    def latency(self, guarantee: str, interval: float | None, shadows: bool) -> Latency:
        prefix = self.prefix("lat")
        settings = self.settings(prefix, guarantee, interval)
        events, feed = self.topics(prefix, 1)
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
        warm, paced, warm_payments, payments = self.paced_slice()
        # messages per second that make `--rate` payments per second, labels interleaved
        rate = self.args.rate * len(paced) / max(sum(not m.feed for m in paced), 1)
        reader = _Reader(self.bootstrap, settings.topics.decisions, committed=guarantee == "exactly-once")
        producer = produce.replay_producer(self.bootstrap, paced=True)
        try:
            reader.start()
            produce.publish(self.bootstrap, events, warm, feed_topic=feed, producer=producer)
            _wait(lambda: reader.count >= warm_payments, 180, "the warm-up decisions", processes, logs)
            if shadows:
                # Measure with the shadows running, not starting: each has scored the warm-up rows.
                scores = _ScoreCount(self.bootstrap, settings.topics.shadow_scores)
                challengers = len(self.versions) - 1
                try:
                    _wait(
                        lambda: scores.count() >= challengers * warm_payments,
                        300,
                        "the shadows' warm-up scores",
                        processes,
                        logs,
                    )
                finally:
                    scores.close()
            reader.reset()
            produce.publish(self.bootstrap, events, paced, feed_topic=feed, rate=rate, producer=producer)
            _wait(lambda: reader.count >= payments, 120, "every paced decision", processes, logs)
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
        waits = _TABLE_WAITS.search((logs / f"{prefix}features.log").read_text(errors="replace"))
        return Latency(
            float(np.percentile(lat, 50)),
            float(np.percentile(lat, 99)),
            len(lat),
            int(waits.group(1).replace(",", "")) if waits else 0,
            float(waits.group(2)) if waits else 0.0,
        )

    def repeated(self, guarantee: str, interval: float | None, shadows: bool) -> Summary:
        """`--repeats` runs of one setting, summed up."""
        return Summary([self.latency(guarantee, interval, shadows) for _ in range(self.args.repeats)])

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
        alone = Summary(alone_runs)
        self.record(
            "produce -> decision, champion only, merchant risk from the table",
            f"at-least-once, {rate}, {runs}",
            f"p50 {alone.p50:.1f} ms, p99 {alone.p99:.1f} ms (runs {alone.low:.1f}-{alone.high:.1f}; "
            f"{alone.payments:,} payments a run{alone.waits})",
            f"p99 <= 25 ms; before: p50 4.1 ms, p99 13.4 ms ({BEFORE})",
        )
        if shadowed_runs:
            shadowed = Summary(shadowed_runs)
            self.record(
                "produce -> decision, with 3 shadows",
                f"at-least-once, {rate}, {runs}, alternating with the runs alone",
                f"p50 {shadowed.p50:.1f} ms, p99 {shadowed.p99:.1f} ms ({shadowed.p99 / alone.p99 - 1:+.0%} vs "
                f"alone; runs {shadowed.low:.1f}-{shadowed.high:.1f}{shadowed.waits})",
                "p99 within +10 %; before: p50 4.3 ms, p99 17.1 ms",
            )
        for interval in self.args.intervals:
            committed = self.repeated("exactly-once", interval, shadows=False)
            self.record(
                "produce -> committed decision",
                f"exactly-once, commit {interval:g} s, {rate}, {runs}",
                f"p50 {committed.p50:.0f} ms, p99 {committed.p99:.0f} ms (runs {committed.low:.0f}-"
                f"{committed.high:.0f}{committed.waits})",
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


@dataclass(frozen=True)
class ReplicaRun:
    rate: float
    """Input messages (events topic and feed) per second, first input to last message, all replicas."""
    payments_rate: float
    per_process: list[float]
    rows: int
    table_waits: int
    table_wait_s: float


_SLOT = {
    name: i
    for i, name in enumerate(("inputs", "payments", "first", "last", "rows", "table_waits", "table_wait_s", "dead"))
}
"""What a replica writes into its shared array, by position."""


def _replica(settings: dict[str, Any], data_dir: str, slot: Any) -> None:
    """One feature-process replica (a spawned process): runs until SIGTERM, counting into `slot`.

    inputs = messages of the events topic and the feed; first = wall time of the first input;
    last = of the last message processed on any topic (repartition topics too).
    """
    fs = build_featureset("fraud", Path(data_dir) / "fraud", SECRET)
    live = LiveSettings(**settings)
    events, feed = live.topics.events, live.topics.named(fs.feed)
    process: list[FeatureProcess] = []
    inputs, payments, first, last, rows = (_SLOT[k] for k in ("inputs", "payments", "first", "last", "rows"))

    def tick(topic: str, partition: int, offset: int) -> None:
        now = time.time()
        if topic in (events, feed):
            if not slot[inputs]:
                slot[first] = now
            slot[inputs] += 1
            slot[payments] += topic == events
        slot[last] = now
        slot[rows] = process[0].counts.rows

    process.append(FeatureProcess(fs, live, on_message=tick))
    counts = process[0].run()
    slot[rows] = counts.rows
    slot[_SLOT["table_waits"]] = counts.table_waits
    slot[_SLOT["table_wait_s"]] = counts.table_wait_s
    slot[_SLOT["dead"]] = sum(counts.dead.values())


def _wait_group(bootstrap: str, group: str, topic: str, partitions: int, members: int, procs: Sequence[Any]) -> None:
    """Until `group` has `members` members and every partition of `topic` is assigned to one."""
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def stable() -> bool:
        if any(not p.is_alive() for p in procs):
            raise RuntimeError("a replica died before the group was stable; see its output above")
        try:
            description = admin.describe_consumer_groups([group])[group].result(10)
        except Exception:  # the group does not exist yet
            return False
        assigned = {
            tp.partition
            for member in description.members
            for tp in (member.assignment.topic_partitions if member.assignment else [])
            if tp.topic == topic
        }
        return len(description.members) == members and assigned == set(range(partitions))

    _wait(stable, 180, f"{members} replica(s) in group {group} with all {partitions} partitions")


@dataclass(frozen=True)
class Latency:
    """One paced run: produce -> decision percentiles in ms, and the feature process's waits
    for the table (rows whose day was not final yet when they came)."""

    p50: float
    p99: float
    payments: int
    table_waits: int
    table_wait_s: float


_TABLE_WAITS = re.compile(r"([\d,]+) waits for tables \(([\d.]+) s\)")
"""How `FeatureCounts.summary` reports the waits, in the feature process's last line."""


class Summary:
    """Median p50 and p99 over runs (a paused broker or a busy core decides the tail of any one
    run), the lowest and highest p99, the payments of one run and the median waits for the table."""

    def __init__(self, runs: Sequence[Latency]) -> None:
        p99s = [r.p99 for r in runs]
        self.p50 = float(np.median([r.p50 for r in runs]))
        self.p99 = float(np.median(p99s))
        self.low, self.high = min(p99s), max(p99s)
        self.payments = runs[0].payments
        waits = float(np.median([r.table_waits for r in runs]))
        seconds = float(np.median([r.table_wait_s for r in runs]))
        self.waits = f"; {waits:,.0f} waits for the table, {seconds:.1f} s in all, a run" if waits else ""


class _Timed:
    """Counts messages, from the first counted one to the last message of any kind."""

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0

    def tick(self, *_: Any, counted: bool = True) -> None:
        now = time.perf_counter()
        if counted:
            if not self.count:
                self.first = now
            self.count += 1
        self.last = now

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
    """`samestream COMMAND` with its output in `log`, in lines wide enough to read back whole."""
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli", *command],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "1000"},
    )


def _wait(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    processes: Sequence[subprocess.Popen[bytes]] = (),
    logs: Path | None = None,
) -> None:
    """Until `condition()`; a timeout, or one of `processes` ending, raises with their logs' tails."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        ended = [p for p in processes if p.poll() is not None]
        if ended or time.monotonic() > deadline:
            tails = "".join(
                f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                for log in (sorted(logs.glob("*.log"), key=lambda f: f.stat().st_mtime)[-3:] if logs else [])
            )
            cause = f"{len(ended)} process(es) ended" if ended else f"timed out after {timeout_s} s"
            raise TimeoutError(f"{cause} waiting for {what}{tails}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default=os.environ.get("SAMESTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument(
        "--payments", type=int, default=40_000, help="simulated payments (events are about twice as many)"
    )
    parser.add_argument(
        "--parts",
        type=lambda s: [p for p in s.split(",") if p],
        default=list(PARTS),
        help=f"what to measure, comma-separated: {', '.join(PARTS)}",
    )
    parser.add_argument("--scorer-rows", type=int, default=40_000, help="rows scored in the scorer throughput runs")
    parser.add_argument("--rate", type=float, default=1_000.0, help="payments per second in the latency runs")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each latency run")
    parser.add_argument(
        "--intervals",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=[0.05, 0.1, 0.25],
        help="exactly-once commit intervals to try ('' for none)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="latency runs per setting; the median is reported")
    parser.add_argument("--skip-shadows", action="store_true", help="latency without the runs with shadows")
    parser.add_argument(
        "--guarantees",
        type=lambda s: [g for g in s.split(",") if g],
        default=["at-least-once", "exactly-once"],
        help="guarantees of the feature-process throughput runs",
    )
    parser.add_argument("--tp-repeats", type=int, default=3, help="feature-process runs per setting; the median")
    args = parser.parse_args()
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown --parts {sorted(unknown)}; expected some of {', '.join(PARTS)}")
    bench = Bench(args)
    try:
        bench.setup(models="latency" in args.parts or "scorer" in args.parts)
        on_feed = sum(m.feed for m in bench.messages)
        console.print(
            f"{len(bench.messages) - on_feed:,} events and {on_feed:,} feed messages, {len(bench.rows):,} "
            f"feature rows; models {bench.versions}"
        )
        if "latency" in args.parts:
            bench.latencies()
        if "features" in args.parts:
            bench.feature_throughput()
        if "scorer" in args.parts:
            bench.scorer_throughput()
        bench.report()
    finally:
        bench.clean_up()


if __name__ == "__main__":
    main()
