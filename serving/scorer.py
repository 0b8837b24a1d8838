"""The live scorer: feature rows in, one decision per row out, from the model behind an alias.

A quixstreams Application in its own consumer group reads `<use case>-features`, decides each
row with the model the `ModelWatcher` currently holds and the use case's decider
(`serving.deciders`: a fraud verdict, a loan offer, a store order), and writes a decision
record (see `serving.records`) to `<use case>-decisions`. Under exactly-once, decisions and the
consumed offsets commit in one Kafka transaction: a scorer killed at any moment and restarted
leaves exactly one committed decision per row. A row that cannot be decided (missing or
non-numeric inputs, or a model error) becomes a dead letter and the stream goes on.

The same class scores for the shadow harness: a challenger writes score records to
`<use case>-shadow-scores` and records a model error in the score record instead.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from quixstreams import Application, message_context
from quixstreams.models.serializers.json import JSONSerializer

from features.featureset import FeatureSet
from serving.records import Item, dead_letter, dead_letter_key, encode_body
from serving.registry import ModelWatcher
from serving.settings import Guarantee, LiveSettings, OffsetReset
from serving.supervise import run_supervised

log = logging.getLogger("samestream.scorer")
_decode = msgspec.json.Decoder(dict).decode


@dataclass
class ScoreCounts:
    """Exact counts since start: rows scored per model version, rows rejected."""

    scored: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    dead: int = 0

    def summary(self) -> str:
        per_version = ", ".join(f"v{v}: {n:,}" for v, n in sorted(self.scored.items()))
        scored = sum(self.scored.values())
        return (
            f"{scored:,} rows scored ({per_version or 'none'}), {self.errors:,} model errors, "
            f"{self.dead:,} dead letters"
        )


class ScoringProcess:
    """Scores every feature row with `watcher.current`.

    Parameters
    ----------
    fs:
        The FeatureSet that made the rows (names the row id and the use case).
    settings:
        Broker, guarantee, prefix.
    watcher:
        Holds the model, loaded for the use case's decider; `start()` it first.
    challenger:
        False: the champion, decisions to `<use case>-decisions`, unscorable rows to dead letters.
        True: a shadow, score records (with `error`) to `<use case>-shadow-scores`, at-least-once;
        unscorable rows are skipped (the champion dead-letters them).
    role:
        Names the consumer group (`<prefix><use case>-<role>`).
    """

    def __init__(
        self,
        fs: FeatureSet,
        settings: LiveSettings,
        watcher: ModelWatcher,
        *,
        challenger: bool = False,
        role: str = "scorer",
        offset_reset: OffsetReset = "earliest",
        on_message: Callable[[str, int, int], None] | None = None,
    ) -> None:
        if watcher.current is None:
            raise ValueError("start the ModelWatcher before building a ScoringProcess")
        if watcher.decider.use_case != fs.name:
            raise ValueError(
                f"the ModelWatcher loads models for {watcher.decider.use_case} decisions, the rows are {fs.name}'s: "
                f"build it with decider=serving.deciders.decider_for({fs.name!r})"
            )
        self.fs = fs
        self.watcher = watcher
        self.decider = watcher.decider
        self.challenger = challenger
        self.counts = ScoreCounts()
        self._on_message = on_message
        self._stop_after = 0
        self._seen = 0
        self.settings = settings
        self.role = role
        self.offset_reset: OffsetReset = offset_reset
        self.app = self._application()

    def _application(self) -> Application:
        """A new Application with the pipeline wired in: one per (re)start, see `run_supervised`."""
        topics = self.settings.topics
        challenger = self.challenger
        guarantee: Guarantee | None = "at-least-once" if challenger else None
        app = self.app = self.settings.application(
            self.role,
            guarantee=guarantee,
            offset_reset=self.offset_reset,
            on_message_processed=self._processed,
            background=challenger,
        )
        features = app.topic(topics.features, value_deserializer="bytes", key_deserializer="bytes")
        outputs = {
            kind: app.topic(name, key_serializer="str", value_serializer=JSONSerializer(dumps=encode_body))
            for kind, name in (
                ("decision", topics.shadow_scores if challenger else topics.decisions),
                ("dead", topics.deadletters),
            )
        }
        sdf = app.dataframe(features).apply(self._score, metadata=True)
        if challenger:
            sdf = sdf.filter(lambda item: item[0] != "skip")
        sdf.to_topic(lambda item, *_: outputs[item[0]], key=self._key)
        return app

    def _processed(self, topic: str, partition: int, offset: int) -> None:
        self._seen += 1
        if self._on_message is not None:
            self._on_message(topic, partition, offset)
        if self._stop_after and self._seen >= self._stop_after:
            self.app.stop()

    def _key(self, item: Item) -> str:
        kind, body = item
        return dead_letter_key(body) if kind == "dead" else str(body[self.fs.row_id])

    def _score(self, value: bytes, key: bytes | None, timestamp: int, headers: Any) -> Item:
        model = self.watcher.current
        assert model is not None
        decider = self.decider
        row_id = self.fs.row_id
        try:
            row = _decode(value)
            values = [row[name] for name in model.row_features]
            extra = [row[name] for name in decider.row_columns]
            ident = row[row_id]
        except msgspec.DecodeError as exc:
            return self._dead(f"schema violation: feature row is not JSON: {exc}", value)
        except (KeyError, TypeError) as exc:
            return self._dead(f"schema violation: feature row lacks {exc}", value)
        if not isinstance(ident, str | int):
            return self._dead(f"schema violation: {row_id} is {type(ident).__name__}, not a string", row)
        if not all(type(v) in (float, int) for v in values + extra):
            names = (*model.row_features, *decider.row_columns)
            bad = [n for n, v in zip(names, values + extra, strict=True) if type(v) not in (float, int)]
            return self._dead(f"schema violation: non-numeric features {bad[:5]}", row)
        error = None
        started = time.perf_counter()
        try:
            decided = decider.decide(model, row, values)
        except Exception as exc:  # a failing model must not stop the stream
            decided, error = dict.fromkeys(decider.fields), f"model error: {type(exc).__name__}: {exc}"
        model_ms = (time.perf_counter() - started) * 1000.0
        if error is not None:
            self.counts.errors += 1
            if not self.challenger:
                return self._dead(f"{error} ({model.label})", row)
        else:
            self.counts.scored[model.version] += 1
        decided_at = time.time() * 1000.0
        body: dict[str, Any] = {
            row_id: str(ident),
            **decided,
            "model": model.name,
            "version": model.version,
            "alias": model.ref,
            "latency_ms": round(decided_at - timestamp, 3),
            "model_ms": round(model_ms, 4),
            "decided_at": int(decided_at),
        }
        if self.challenger:
            body["error"] = error
        return ("decision", body)

    def _dead(self, reason: str, payload: Any) -> Item:
        """A dead letter for the champion; a challenger skips the row (the champion reports it)."""
        self.counts.dead += 1
        if self.challenger:
            return ("skip", {})
        ctx = message_context()
        return dead_letter(self.fs, "scorer", ctx.topic, ctx.partition, ctx.offset, None, reason, payload)

    def run(self, idle_timeout: float = 0.0, max_rows: int = 0) -> ScoreCounts:
        """Score until stopped (SIGINT/SIGTERM); or, if `idle_timeout` > 0, until idle that long;
        or, if `max_rows` > 0, until that many rows have been consumed."""
        self._stop_after = max_rows
        try:
            run_supervised(self._application, idle_timeout, self.role)
        finally:
            self.watcher.stop()
        log.info("scorer stopped: %s", self.counts.summary())
        return self.counts
