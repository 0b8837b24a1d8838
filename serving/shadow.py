"""Shadow scoring: any number of challengers score the live feature stream beside the champion.

Each challenger runs in its own OS process, on CPU time nothing else wants (`SCHED_IDLE`), in
its own consumer group: it reads the feature rows at its own pace in batches
(`serving.batched`), scores each batch at once (`serving.challenger`) and writes score records
to `<use case>-shadow-scores`. The champion (`samestream serve`) shares nothing with them: a
slow challenger only lags in its own group, one that raises records the error and goes on, and
one whose process dies is restarted with backoff while the others carry on.

A collector process reads the champion's decisions, the challengers' scores and the labels, in
batches too, into DuckDB (`serving.live_metrics`) and logs live metrics per model to MLflow every
`metrics_interval` seconds, and once more when it stops. Every use case's records are kept
(a loan offer as its P(accept) and rate, a store order as its forecast and order); ranking
metrics are computed only where a label judges the score (fraud, `Decider.ranked`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Message

from features.featureset import FeatureSet
from features.usecases import build_featureset
from serving.batched import BatchConsumer
from serving.challenger import ChallengerProcess
from serving.deciders import Decider, decider_for
from serving.live_metrics import LiveScoreWriter, MlflowLiveLog, compute, open_live_db
from serving.records import Item
from serving.registry import ModelUnavailable, ModelWatcher, Registry, is_version
from serving.settings import LiveSettings, OffsetReset

log = logging.getLogger("samestream.shadow")
_decode = msgspec.json.Decoder(dict).decode
_decode_any = msgspec.json.Decoder().decode
RESTART_BACKOFF_S = (2.0, 5.0, 10.0, 30.0, 60.0)
HEALTHY_AFTER_S = 60.0
COLLECT_EVERY_S = 5.0
"""How long the collector gathers records before one DuckDB insert per table."""
NICENESS = 19
PRELOAD = ("serving.shadow", "mlflow.pyfunc", "sklearn.pipeline", "sklearn.linear_model")


def yield_cpu() -> None:
    """Run this process only on CPU time nothing else wants: Linux's `SCHED_IDLE` class, which
    any waking process preempts at once (a nice level still takes slices from the champion on a
    busy machine); elsewhere, the lowest nice level."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(NICENESS)


@dataclass(frozen=True)
class ShadowConfig:
    """Everything a shadow process needs; picklable, so child processes get a copy."""

    settings: LiveSettings
    data_dir: Path
    secret: str
    tracking_uri: str
    model_name: str
    challengers: tuple[str, ...]
    """Aliases (watched, like the champion's) or version numbers."""
    live_db: Path
    metrics_interval: float = 30.0
    top_k: int = 100
    watch_interval: float = 5.0
    offset_reset: OffsetReset = "earliest"
    idle_timeout: float = 0.0
    """> 0: every process stops after that many seconds without input (tests, replays)."""

    def featureset(self) -> FeatureSet:
        return build_featureset(self.settings.use_case, self.data_dir, self.secret)


def resolve_challengers(registry: Registry, name: str, given: tuple[str, ...]) -> tuple[str, ...]:
    """The challengers to run: those given (checked now), else every `challenger*` alias."""
    if given:
        for ref in given:
            registry.resolve(name, ref)
        return given
    found = tuple(sorted(a for a in registry.aliases(name) if a.startswith("challenger")))
    if not found:
        raise ModelUnavailable(
            f"{name} has no challenger-* alias; pass --challenger ALIAS_OR_VERSION, or let "
            "`samestream train` register challengers"
        )
    return found


def role_of(ref: str) -> str:
    """Consumer-group role of a challenger: one group per alias or version."""
    return f"shadow-v{ref}" if is_version(ref) else f"shadow-{ref}"


def run_challenger(config: ShadowConfig, ref: str) -> None:
    """Child process: score the feature stream with one challenger until stopped or idle."""
    yield_cpu()
    _child_logging()
    fs = config.featureset()
    watcher = ModelWatcher(
        Registry(config.tracking_uri),
        config.model_name,
        ref,
        tuple(fs.columns),
        config.watch_interval,
        decider_for(fs.name),
        fs.version,
    )
    watcher.start()
    process = ChallengerProcess(fs, config.settings, watcher, role=role_of(ref), offset_reset=config.offset_reset)
    process.run(idle_timeout=config.idle_timeout)


def run_collector(config: ShadowConfig, challengers_done: Any) -> None:
    """Child process: decisions, shadow scores and labels into DuckDB; live metrics to MLflow.

    With an idle timeout it stops once every challenger has stopped (`challengers_done` is
    set) and nothing has arrived for that long, so it never quits before their last scores.
    """
    yield_cpu()
    _child_logging()
    fs = config.featureset()
    decider = decider_for(fs.name)
    topics = config.settings.topics
    con = open_live_db(config.live_db, fs)
    writer = LiveScoreWriter(fs, con)
    parsers = {
        topics.decisions: _score_parser(fs.row_id, "champion", decider, many=False),
        topics.shadow_scores: _score_parser(fs.row_id, "challenger", decider, many=True),
        topics.labels: _label_parser,
    }

    def collect(messages: list[Message]) -> None:
        writer.write([item for m in messages for item in parsers[m.topic()](m.value())])

    mlflow_log = MlflowLiveLog(config.tracking_uri, fs.name, topics.features, config.top_k)
    reader = con.cursor()

    def report() -> None:
        metrics = compute(reader, fs, config.top_k, decider.ranked)
        mlflow_log.log(metrics)
        for m in metrics:
            log.info(
                "%-10s %s v%s: %d scored, %d errors, AP %s, p@%d %s, latency p50/p99 %s/%s ms, agreement %s",
                m.role,
                m.model,
                m.version,
                m.scored,
                m.errors,
                _fmt(m.average_precision),
                config.top_k,
                _fmt(m.precision_at_k),
                _fmt(m.latency_p50_ms),
                _fmt(m.latency_p99_ms),
                _fmt(m.agreement),
            )

    consumer = BatchConsumer(
        config.settings,
        "shadow-collector",
        list(parsers),
        collect,
        offset_reset=config.offset_reset,
        every_s=COLLECT_EVERY_S,
        idle_timeout=config.idle_timeout,
        may_stop=challengers_done.is_set,
    )
    stop = threading.Event()
    ticker = threading.Thread(target=_every, args=(config.metrics_interval, stop, report), daemon=True)
    ticker.start()
    try:
        consumer.run()
    finally:
        stop.set()
        ticker.join()
        report()
        mlflow_log.close()
        reader.close()
        con.close()


def _score_parser(row_id: str, role: str, decider: Decider, many: bool) -> Callable[[bytes], list[Item]]:
    """Items of a decision (one record per message) or of challenger scores (an array of them)."""

    def item(body: dict[str, Any]) -> Item:
        score, decision = decider.summary(body)
        return (
            "score",
            {
                "id": str(body[row_id]),
                "model": body["model"],
                "version": str(body["version"]),
                "alias": body.get("alias"),
                "role": role,
                "score": score,
                "decision": decision,
                "latency_ms": body.get("latency_ms"),
                "model_ms": body.get("model_ms"),
                "decided_at": body.get("decided_at"),
                "error": body.get("error"),
            },
        )

    def parse(value: bytes | None) -> list[Item]:
        if not value:
            return []
        try:
            decoded = _decode_any(value)
            return [item(body) for body in (decoded if many else [decoded])]
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
            return []

    return parse


def _label_parser(value: bytes | None) -> list[Item]:
    """A label row, or nothing for a message that is not one (NULL, empty, not a JSON object)."""
    if not value:
        return []
    try:
        return [("label", _decode(value))]
    except (msgspec.DecodeError, TypeError):
        return []


def _every(interval: float, stop: threading.Event, task: Callable[[], None]) -> None:
    while not stop.wait(interval):
        try:
            task()
        except Exception:  # a failed metrics round must not end the next ones
            log.exception("live metrics round failed")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _child_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s [{multiprocessing.current_process().name}] %(name)s: %(message)s"
    )


@dataclass
class _Child:
    name: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    process: Any = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    finished: bool = False


class ShadowHarness:
    """Starts the collector and one process per challenger, restarts any that die, stops all.

    `run()` returns when stopped (SIGINT/SIGTERM or `stop()`), or when every child has exited
    on its own (the idle timeout).
    """

    def __init__(self, config: ShadowConfig) -> None:
        self.config = config
        # Children fork from a clean server process that imported the heavy modules once: a
        # (re)start costs a fork and a model load, not a new interpreter and its imports.
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(list(PRELOAD))
        self._stop = threading.Event()
        self._challengers_done = self._context.Event()
        self.challengers = [
            _Child(f"challenger-{role_of(ref).removeprefix('shadow-')}", run_challenger, (config, ref))
            for ref in config.challengers
        ]
        self.children = [_Child("collector", run_collector, (config, self._challengers_done)), *self.challengers]
        self.restarts = 0

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def run(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGTERM, self.stop)
        for child in self.children:
            self._start(child)
        try:
            while not self._stop.wait(0.5):
                for child in self.children:
                    self._supervise(child)
                if all(c.finished for c in self.challengers):
                    self._challengers_done.set()
                if all(c.finished for c in self.children):
                    return
        finally:
            self._shutdown()

    def _start(self, child: _Child) -> None:
        child.process = self._context.Process(target=child.target, args=child.args, name=child.name, daemon=False)
        child.process.start()
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("started %s (pid %s)", child.name, child.process.pid)

    def _supervise(self, child: _Child) -> None:
        if child.finished:
            return
        if child.restart_at is not None:
            if time.monotonic() >= child.restart_at:
                self.restarts += 1
                self._start(child)
            return
        code = child.process.exitcode
        if code is None:
            return
        if code == 0:
            child.finished = True
            return
        if time.monotonic() - child.started_at > HEALTHY_AFTER_S:
            child.failures = 0
        delay = RESTART_BACKOFF_S[min(child.failures, len(RESTART_BACKOFF_S) - 1)]
        child.failures += 1
        child.restart_at = time.monotonic() + delay
        log.warning(
            "%s exited with code %s; restarting in %.0f s (the champion is not affected)", child.name, code, delay
        )

    def _shutdown(self) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.exitcode is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + 20.0
        for process in running:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()
