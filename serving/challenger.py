"""A challenger of the shadow harness: the feature stream scored in micro-batches, off the decision path.

A challenger only has to keep up with the stream, not answer each row at once. So it reads what
has arrived in batches (`serving.batched`) and scores each second's rows in one model call
where the use case's decider allows it (`Decider.decide_batch`): a tree ensemble that costs
half a millisecond a row one at a time costs a small fraction of that in bulk. On a machine the
champion shares, the CPU challengers leave idle is what keeps the champion's tail latency
(BENCHMARKS.md).

Records are the champion's (`serving.scorer.decision_record`) plus `error`, written to
`<use case>-shadow-scores` as JSON arrays of up to `RECORDS_PER_MESSAGE` (one message per
record would cost the shared broker and the collector a thousand messages a second per
challenger) and delivered before the batch's offsets are committed: at-least-once, and the
collector keys them by (row, model, version). `latency_ms` runs from the row's publication to
its score, the wait for the batch included. `model_ms`, the figure to put beside the
champion's, is timed the champion's way, one row alone, on up to `TIMED_ROWS` rows of each
batch; the other records carry null. A model that fails on the batch is asked row by row, so
each failing row gets its error and the others their scores.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import numpy as np
from confluent_kafka import KafkaError, Message, Producer

from features.featureset import FeatureSet
from serving import produce
from serving.batched import BatchConsumer
from serving.registry import LoadedModel, ModelWatcher
from serving.scorer import ScoreCounts, Unscorable, decision_record, read_row
from serving.settings import BACKGROUND_BATCH_MS, LiveSettings, OffsetReset

log = logging.getLogger("samestream.challenger")
BATCH_S = 1.0
"""How long a batch gathers rows: a second's rows cost one model call, and wait a second for it."""
TIMED_ROWS = 8
"""Rows per batch also scored one at a time, for a per-row `model_ms` comparable with the champion's."""
RECORDS_PER_MESSAGE = 500
"""Score records per Kafka message (a JSON array): about 150 kB, under the broker's 1 MB limit."""
FLUSH_TIMEOUT_S = 30.0
_encode = msgspec.json.Encoder().encode


class ChallengerProcess:
    """Scores the feature stream with `watcher.current` in batches; score records to the shadow topic.

    Parameters
    ----------
    fs:
        The FeatureSet that made the rows.
    settings:
        Broker and prefix; a challenger is always at-least-once.
    watcher:
        Holds the challenger's model; `start()` it first. A batch is scored by one version.
    role:
        Names the consumer group: one per challenger, so each reads at its own pace.
    """

    def __init__(
        self,
        fs: FeatureSet,
        settings: LiveSettings,
        watcher: ModelWatcher,
        *,
        role: str,
        offset_reset: OffsetReset = "earliest",
    ) -> None:
        if watcher.current is None:
            raise ValueError("start the ModelWatcher before building a ChallengerProcess")
        self.fs = fs
        self.watcher = watcher
        self.decider = watcher.decider
        self.role = role
        self.offset_reset: OffsetReset = offset_reset
        self.settings = settings
        self.topic = settings.topics.shadow_scores
        self.counts = ScoreCounts()
        self.producer = Producer({"bootstrap.servers": settings.bootstrap, "linger.ms": BACKGROUND_BATCH_MS})
        self._failed: list[KafkaError] = []

    def run(self, idle_timeout: float = 0.0) -> ScoreCounts:
        """Score until stopped (SIGINT/SIGTERM) or, if `idle_timeout` > 0, until idle that long."""
        consumer = BatchConsumer(
            self.settings,
            self.role,
            [self.settings.topics.features],
            self.score,
            offset_reset=self.offset_reset,
            every_s=BATCH_S,
            idle_timeout=idle_timeout,
        )
        produce.ensure_topic(self.settings.bootstrap, self.topic, 1)
        try:
            consumer.run()
        finally:
            self.watcher.stop()
        log.info("challenger %s stopped: %s", self.role, self.counts.summary())
        return self.counts

    def score(self, messages: list[Message]) -> None:
        """Check the batch's rows, decide them, send their score records and wait for delivery."""
        model = self.watcher.current
        assert model is not None
        rows: list[dict[str, Any]] = []
        inputs: list[list[float]] = []
        stamps: list[int] = []
        for message in messages:
            try:
                row, values = read_row(message.value(), model, self.decider, self.fs.row_id)
            except Unscorable:
                self.counts.dead += 1  # the champion dead-letters the same row
                continue
            rows.append(row)
            inputs.append(values)
            stamps.append(message.timestamp()[1])
        if not rows:
            return
        matrix = np.asarray(inputs, dtype=np.float64)
        decided, errors = self._decide(model, rows, matrix)
        timed = self._timed(model, rows, matrix)
        row_id = self.fs.row_id
        records = []
        for i, row in enumerate(rows):
            record = decision_record(row_id, row, decided[i], model, stamps[i], timed.get(i))
            record["error"] = errors[i]
            records.append(record)
        key = f"{model.name} v{model.version}".encode()
        for start in range(0, len(records), RECORDS_PER_MESSAGE):
            chunk = records[start : start + RECORDS_PER_MESSAGE]
            self.producer.produce(self.topic, _encode(chunk), key, on_delivery=self._delivered)
            self.producer.poll(0)
        self._confirm()

    def _decide(
        self, model: LoadedModel, rows: list[dict[str, Any]], values: np.ndarray
    ) -> tuple[list[dict[str, Any]], list[str | None]]:
        """Decision fields and error (or None) per row: the batch at once, else row by row."""
        decided: list[dict[str, Any]]
        errors: list[str | None]
        try:
            decided = self.decider.decide_batch(model, rows, values)
        except Exception:  # a failing model must not stop the stream: find the rows it fails on
            decided, errors = [], []
            for row, inputs in zip(rows, values.tolist(), strict=True):
                try:
                    decided.append(self.decider.decide(model, row, inputs))
                    errors.append(None)
                except Exception as exc:
                    decided.append(dict.fromkeys(self.decider.fields))
                    errors.append(f"model error: {type(exc).__name__}: {exc}")
        else:
            errors = [None for _ in rows]
        failed = sum(e is not None for e in errors)
        self.counts.errors += failed
        self.counts.scored[model.version] += len(rows) - failed
        return decided, errors

    def _timed(self, model: LoadedModel, rows: list[dict[str, Any]], values: np.ndarray) -> dict[int, float]:
        """Row index -> ms of `decide` on that row alone, for up to TIMED_ROWS rows spread over the batch."""
        step = max(1, len(rows) // TIMED_ROWS)
        timed = {}
        for i in range(0, len(rows), step)[:TIMED_ROWS]:
            started = time.perf_counter()
            try:
                self.decider.decide(model, rows[i], values[i].tolist())
            except Exception:  # recorded as the row's error already
                continue
            timed[i] = (time.perf_counter() - started) * 1000.0
        return timed

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append(error)

    def _confirm(self) -> None:
        """Every message delivered, or the process ends before the batch's offsets are committed:
        the harness restarts it and the batch is read and scored again."""
        left = self.producer.flush(FLUSH_TIMEOUT_S)
        failed, self._failed = self._failed, []
        if left or failed:
            raise RuntimeError(
                f"{left} messages to {self.topic} undelivered after {FLUSH_TIMEOUT_S:.0f} s, {len(failed)} failed"
                + (f" (first: {failed[0]})" if failed else "")
                + "; the batch will be scored again"
            )
