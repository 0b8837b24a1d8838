"""LocalRunner: an event the FeatureSet's own code fails on costs that event, never the run."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from features.depersonalize import Policy
from features.featureset import FeatureSet, LocalRunner, Record, Stage
from features.state import State


class Reading(msgspec.Struct, tag="reading", tag_field="type"):
    reading_id: str
    t: int
    sensor: str
    value: float
    owner_email: str


class BrittleFeatureSet(FeatureSet):
    """Depersonalization fails on one sensor, the stage on another: bugs, not bad input."""

    name: ClassVar[str] = "brittle"
    schemas: ClassVar[dict[str, type[msgspec.Struct]]] = {"reading": Reading}
    kind_order: ClassVar[dict[str, int]] = {"reading": 0}
    policies: ClassVar[dict[str, Policy]] = {
        **{f: Policy.KEEP for f in ("reading_id", "t", "sensor", "value")},
        "owner_email": Policy.DROP,
    }
    columns: ClassVar[dict[str, str]] = {"reading_id": "str", "t": "ts_ms", "total": "float"}
    feature_names: ClassVar[tuple[str, ...]] = ("total",)
    label_columns: ClassVar[dict[str, str]] = {}
    entity_column: ClassVar[str] = "sensor"
    row_id: ClassVar[str] = "reading_id"

    def event_time_ms(self, event: msgspec.Struct) -> int:
        return event.t  # type: ignore[attr-defined, no-any-return]

    def depersonalize(self, event: msgspec.Struct) -> Record:
        if event.sensor == "unreadable":  # type: ignore[attr-defined]
            raise KeyError(event.owner_email)  # type: ignore[attr-defined]
        return {k: v for k, v in msgspec.structs.asdict(event).items() if k != "owner_email"}

    @property
    def stages(self) -> tuple[Stage, ...]:
        def total(record: Record, state: State) -> list[Record]:
            if record["sensor"] == "broken":
                raise ZeroDivisionError(f"no calibration for {record['sensor']}, owner ada@example.com")
            running = state.get("total", 0.0) + record["value"]
            state.set("total", running)
            return [{"reading_id": record["reading_id"], "t": record["t"], "total": running}]

        return (Stage("sensor", lambda r: r["sensor"], total),)


def reading(i: int, sensor: str, value: float = 1.0) -> Reading:
    return Reading(f"r{i}", i, sensor, value, "ada@example.com")


def test_a_stage_failure_is_a_dead_letter_with_a_redacted_reason_and_the_run_goes_on() -> None:
    runner = LocalRunner(BrittleFeatureSet())
    first = runner.run(reading(1, "ok", 2.0))
    failed = runner.run(reading(2, "broken"), source="replay", position="event 2")
    after = runner.run(reading(3, "ok", 3.0))

    assert [r["total"] for r in (*first.rows, *after.rows)] == [2.0, 5.0]
    assert failed.rows == [] and failed.dead_letter is not None
    letter = failed.dead_letter
    assert (letter.source, letter.position, letter.kind) == ("replay", "event 2", "reading")
    assert letter.reason.startswith("processing error in stage sensor: ZeroDivisionError: no calibration for broken")
    assert "ada@example.com" not in letter.reason + letter.payload


def test_a_depersonalization_failure_names_the_error_type_only() -> None:
    outcome = LocalRunner(BrittleFeatureSet()).process("reading", msgspec.json.encode(reading(1, "unreadable")))
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason == "processing error: KeyError while reading the event"
    assert "ada@example.com" not in outcome.dead_letter.payload


def test_a_check_that_overflows_is_an_impossible_value() -> None:
    class Overflowing(BrittleFeatureSet):
        def event_time_ms(self, event: msgspec.Struct) -> int:
            raise OverflowError("date value out of range")

    outcome = LocalRunner(Overflowing()).process("reading", msgspec.json.encode(reading(1, "ok")))
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason == "impossible value: OverflowError: date value out of range"
