"""The live scorer: feature rows in, one decision per row out, from the model behind an alias.

A quixstreams Application in its own consumer group reads `<use case>-features`, decides each
row with the model the `ModelWatcher` currently holds and the use case's decider
(`serving.deciders`: a fraud verdict, a loan offer, a store order), and writes a decision
record (see `serving.records`) to `<use case>-decisions`. Under exactly-once, decisions and the
consumed offsets commit in one Kafka transaction: a scorer killed at any moment and restarted
leaves exactly one committed decision per row. A row that cannot be decided (missing or
non-numeric inputs, or a model error) becomes a dead letter and the stream goes on.

`read_row` and `decision_record` are shared with the shadow harness's challengers
(`serving.challenger`), so a challenger checks rows and writes records as the champion does.
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
from serving.deciders import Decider
from serving.poison import PoisonList
from serving.records import Item, dead_letter, dead_letter_key, encode_body
from serving.registry import LoadedModel, ModelWatcher
from serving.settings import LiveSettings, OffsetReset
from serving.supervise import run_supervised

log = logging.getLogger("samestream.scorer")
_decode = msgspec.json.Decoder(dict).decode


class Unscorable(ValueError):
    """A feature row the model cannot be asked about: why, and what to keep of it."""

    def __init__(self, reason: str, payload: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.payload = payload


def read_row(
    value: bytes | None, model: LoadedModel, decider: Decider, row_id: str
) -> tuple[dict[str, Any], list[float]]:
    """A feature row and its model inputs, in `model.row_features` order.

    Raises Unscorable if the message is empty, the row is not JSON, lacks an input or the row id,
    has a non-numeric input (a schema violation, never a model error), or was made by another
    FeatureSet version than the model was trained on (version skew).
    """
    if not value:
        raise Unscorable(
            f"empty message: the value is {'NULL' if value is None else 'empty'}; a row is a JSON object", b""
        )
    try:
        row = _decode(value)
        values = [row[name] for name in model.row_features]
        extra = [row[name] for name in decider.row_columns]
        ident = row[row_id]
    except msgspec.DecodeError as exc:
        raise Unscorable(f"schema violation: feature row is not JSON: {exc}", value) from None
    except (KeyError, TypeError) as exc:
        raise Unscorable(f"schema violation: feature row lacks {exc}", value) from None
    if not isinstance(ident, str | int):
        raise Unscorable(f"schema violation: {row_id} is {type(ident).__name__}, not a string", row)
    made_by = row.get("featureset_version")
    if made_by != model.featureset_version:
        raise Unscorable(
            f"version skew: the row was made by FeatureSet {made_by}, {model.label} was trained on "
            f"{model.featureset_version}; retrain, or run the feature process the model was trained with",
            row,
        )
    if not all(type(v) in (float, int) for v in values + extra):
        names = (*model.row_features, *decider.row_columns)
        bad = [n for n, v in zip(names, values + extra, strict=True) if type(v) not in (float, int)]
        raise Unscorable(f"schema violation: non-numeric features {bad[:5]}", row)
    return row, values


def decision_record(
    row_id: str,
    row: dict[str, Any],
    decided: dict[str, Any],
    model: LoadedModel,
    timestamp: int,
    model_ms: float | None,
) -> dict[str, Any]:
    """The record of one decided row (`serving.records`); `timestamp` is the row's publication."""
    decided_at = time.time() * 1000.0
    return {
        row_id: str(row[row_id]),
        **decided,
        "model": model.name,
        "version": model.version,
        "alias": model.ref,
        "latency_ms": round(decided_at - timestamp, 3),
        "model_ms": None if model_ms is None else round(model_ms, 4),
        "decided_at": int(decided_at),
    }


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
    """Scores every feature row with `watcher.current`, one at a time, as it arrives.

    Parameters
    ----------
    fs:
        The FeatureSet that made the rows (names the row id and the use case).
    settings:
        Broker, guarantee, prefix.
    watcher:
        Holds the model, loaded for the use case's decider; `start()` it first.
    role:
        Names the consumer group (`<prefix><use case>-<role>`).
    """

    def __init__(
        self,
        fs: FeatureSet,
        settings: LiveSettings,
        watcher: ModelWatcher,
        *,
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
        self.counts = ScoreCounts()
        self._on_message = on_message
        self._stop_after = 0
        self._seen = 0
        self.settings = settings
        self.role = role
        self.offset_reset: OffsetReset = offset_reset
        self.poison = PoisonList(settings.state_dir / f"{settings.topics.group(role)}-poison.json")
        self.app = self._application()

    def _application(self) -> Application:
        """A new Application with the pipeline wired in: one per (re)start, see `run_supervised`."""
        topics = self.settings.topics
        app = self.app = self.settings.application(
            self.role, offset_reset=self.offset_reset, on_message_processed=self._processed
        )
        features = app.topic(topics.features, value_deserializer="bytes", key_deserializer="bytes")
        outputs = {
            kind: app.topic(name, key_serializer="str", value_serializer=JSONSerializer(dumps=encode_body))
            for kind, name in (
                ("decision", topics.decisions),
                ("dead", topics.deadletters),
            )
        }
        sdf = app.dataframe(features).apply(self._score, metadata=True)
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

    def _score(self, value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> Item:
        ctx = message_context()
        position = self.poison.current = (ctx.topic, ctx.partition, ctx.offset)
        crashed = self.poison.reason(position)
        if crashed is not None:
            return self._dead(crashed, b"")
        model = self.watcher.current
        assert model is not None
        try:
            row, values = read_row(value, model, self.decider, self.fs.row_id)
        except Unscorable as exc:
            return self._dead(exc.reason, exc.payload)
        started = time.perf_counter()
        try:
            decided = self.decider.decide(model, row, values)
        except Exception as exc:  # a failing model must not stop the stream
            self.counts.errors += 1
            return self._dead(f"model error: {type(exc).__name__}: {exc} ({model.label})", row)
        model_ms = (time.perf_counter() - started) * 1000.0
        self.counts.scored[model.version] += 1
        return ("decision", decision_record(self.fs.row_id, row, decided, model, timestamp, model_ms))

    def _dead(self, reason: str, payload: Any) -> Item:
        self.counts.dead += 1
        ctx = message_context()
        return dead_letter(self.fs, "scorer", ctx.topic, ctx.partition, ctx.offset, None, reason, payload)

    def run(self, idle_timeout: float = 0.0, max_rows: int = 0) -> ScoreCounts:
        """Score until stopped (SIGINT/SIGTERM); or, if `idle_timeout` > 0, until idle that long;
        or, if `max_rows` > 0, until that many rows have been consumed."""
        self._stop_after = max_rows
        try:
            run_supervised(self._application, idle_timeout, self.role, self.poison)
        finally:
            self.watcher.stop()
        log.info("scorer stopped: %s", self.counts.summary())
        return self.counts
