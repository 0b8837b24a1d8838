"""Input mappings: renames, casts, naive times in a zone, constants, derived labels, drops, every
error a user can meet, the TOML and option forms, and a card history mapped end to end."""

from __future__ import annotations

import csv
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.depersonalize import Policy
from features.featureset import FeatureSet, InvalidEvent, Stage, to_ms
from features.fraud.schemas import Currency, FraudLabel, Id, Timestamp
from features.mapping import (
    KindMapping,
    LabelRule,
    Mapping,
    MappingError,
    mapped_payloads,
    parse_delay,
    parse_timezone,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")


class Payment(msgspec.Struct, tag="payment", tag_field="type", forbid_unknown_fields=False):
    """The fields a card history has: what the fraud payment will require once its others are optional."""

    payment_id: Id
    ts: Timestamp
    customer_id: Id
    merchant_id: Id
    amount: Annotated[float, msgspec.Meta(ge=0.0)]
    currency: Currency
    reference: str = ""


class Offer(msgspec.Struct, tag="offer", tag_field="type"):
    offer_id: Id
    ts: Timestamp
    opened: Timestamp | None = None


class Outcome(msgspec.Struct, tag="outcome", tag_field="type"):
    offer_id: Id
    accepted: bool
    decided: Timestamp


SCHEMAS = {"payment": Payment, "label": FraudLabel}


class CardHistory(FeatureSet):
    """Just enough FeatureSet to validate card-history events with the real `parse`."""

    name = "cards"
    schemas = SCHEMAS
    kind_order = {"label": 0, "payment": 1}
    policies = {
        "payment_id": Policy.KEEP,
        "ts": Policy.KEEP,
        "customer_id": Policy.PSEUDONYMIZE,
        "merchant_id": Policy.KEEP,
        "amount": Policy.KEEP,
        "currency": Policy.KEEP,
        "reference": Policy.REDACT,
        "is_fraud": Policy.KEEP,
        "known_at": Policy.KEEP,
    }
    columns: dict[str, str] = {}
    feature_names = ()
    label_columns: dict[str, str] = {}
    entity_column = "customer_id"
    row_id = "payment_id"

    def event_time_ms(self, event: msgspec.Struct) -> int:
        return to_ms(event.ts if isinstance(event, Payment) else event.known_at)  # type: ignore[attr-defined]

    def depersonalize(self, event: msgspec.Struct) -> dict[str, Any]:
        return msgspec.to_builtins(event)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return ()


CARD_TOML = """
[payment]
timezone = "Europe/Stockholm"
cast = { ts = "time", customer_id = "str", merchant_id = "str", amount = "float" }
const = { currency = "EUR" }
drop = ["TX_TIME_SECONDS", "TX_TIME_DAYS"]

[payment.rename]
payment_id = "TRANSACTION_ID"
ts = "TX_DATETIME"
customer_id = "CUSTOMER_ID"
merchant_id = "TERMINAL_ID"
amount = "TX_AMOUNT"

[payment.label]
kind = "label"
from = "TX_FRAUD"
delay = "7d"
fields = { payment_id = "payment_id", merchant_id = "merchant_id" }
"""

CARD_OPTIONS = [
    *("--timezone", "Europe/Stockholm"),
    *("--rename", "payment_id=TRANSACTION_ID", "--rename", "ts=TX_DATETIME", "--rename", "customer_id=CUSTOMER_ID"),
    *("--rename", "merchant_id=TERMINAL_ID", "--rename=amount=TX_AMOUNT"),
    *("--cast", "ts=time", "--cast", "customer_id=str", "--cast", "merchant_id=str", "--cast", "amount=float"),
    *("--const", "currency=EUR", "--drop", "TX_TIME_SECONDS", "--drop=TX_TIME_DAYS"),
    *("--label-kind", "label", "--label-from", "TX_FRAUD", "--label-delay", "7d"),
    *("--label-field", "payment_id=payment_id", "--label-field", "merchant_id=merchant_id"),
]

ROW = {
    "TRANSACTION_ID": "0",
    "TX_DATETIME": "2018-04-01 00:00:31",
    "CUSTOMER_ID": "596",
    "TERMINAL_ID": "3156",
    "TX_AMOUNT": "57.16",
    "TX_TIME_SECONDS": "31",
    "TX_TIME_DAYS": "0",
    "TX_FRAUD": "1",
}


def toml(tmp_path: Path, text: str, name: str = "mapping.toml") -> Mapping:
    path = tmp_path / name
    path.write_text(text)
    return Mapping.load(path)


def one(kind: str = "payment", **fields: Any) -> Mapping:
    return Mapping({kind: KindMapping(**fields)})


def mapped(mapping: Mapping, payload: Any, kind: str = "payment") -> dict[str, Any]:
    """The event a payload maps to (its label, if any, left aside)."""
    return mapping.apply(kind, payload)[0][1]  # type: ignore[return-value]


def cast_one(cast: str, value: Any, timezone_name: str | None = None) -> Any:
    mapping = one(cast={"x": cast}, timezone=timezone_name)
    return mapped(mapping, {"x": value})["x"]


# --- renames, drops, constants ---


def test_rename_moves_a_column_to_its_field_and_keeps_the_others() -> None:
    mapping = one(rename={"payment_id": "TRANSACTION_ID", "amount": "TX_AMOUNT"})
    assert mapped(mapping, {"TRANSACTION_ID": "7", "TX_AMOUNT": "1.5", "channel": "pos"}) == {
        "payment_id": "7",
        "amount": "1.5",
        "channel": "pos",
    }


def test_a_renamed_field_wins_over_a_column_of_its_name_and_names_can_swap() -> None:
    assert mapped(one(rename={"ts": "TX_DATETIME"}), {"ts": "old", "TX_DATETIME": "new"}) == {"ts": "new"}
    assert mapped(one(rename={"a": "b", "b": "a"}), {"a": 1, "b": 2}) == {"a": 2, "b": 1}


def test_one_column_can_feed_two_fields() -> None:
    mapping = one(rename={"merchant_id": "TERMINAL_ID", "reference": "TERMINAL_ID"})
    assert mapped(mapping, {"TERMINAL_ID": "T1"}) == {"merchant_id": "T1", "reference": "T1"}


def test_a_missing_source_column_leaves_its_field_missing() -> None:
    assert mapped(one(rename={"amount": "TX_AMOUNT"}), {"other": "x"}) == {"other": "x"}


def test_drop_removes_columns_and_const_sets_fields_in_every_event() -> None:
    mapping = one(drop=["TX_TIME_SECONDS", "absent"], const={"currency": "EUR", "amount": 0})
    event = mapped(mapping, {"TX_TIME_SECONDS": "31", "currency": "SEK", "keep": "k"})
    assert event == {"currency": "EUR", "amount": 0, "keep": "k"}


def test_apply_does_not_change_the_payload_it_is_given() -> None:
    row = dict(ROW)
    Mapping.from_options("payment", CARD_OPTIONS).apply("payment", row)
    assert row == ROW


# --- casts ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [(596, "596"), (3156.0, "3156"), (2.5, "2.5"), ("C1", "C1"), (True, "true"), (False, "false"), ([1], [1])],
)
def test_cast_str(value: Any, expected: Any) -> None:
    assert cast_one("str", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12", 12), (" 12 ", 12), ("12.0", 12), (12.0, 12), (7, 7), ("12.5", "12.5"), (12.5, 12.5), ("x", "x")],
)
def test_cast_int(value: Any, expected: Any) -> None:
    result = cast_one("int", value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("57.16", 57.16), (" 1e3 ", 1000.0), (3, 3.0), (2.5, 2.5), ("12,50", "12,50"), ("nan", "nan"), ("inf", "inf")],
)
def test_cast_float(value: Any, expected: Any) -> None:
    result = cast_one("float", value)
    assert result == expected and type(result) is type(expected)


def test_cast_float_leaves_booleans_alone() -> None:
    assert cast_one("float", True) is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *((v, True) for v in ("1", "true", "True", "TRUE", "yes", "Yes", "y", "t", " 1 ", 1, 1.0, True)),
        *((v, False) for v in ("0", "false", "False", "no", "NO", "n", "f", 0, 0.0, False)),
        *((v, v) for v in ("maybe", "", 2, -1, 0.5, None)),
    ],
)
def test_cast_bool(value: Any, expected: Any) -> None:
    result = cast_one("bool", value)
    assert result == expected and type(result) is type(expected)


# --- times ---


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-01-15T10:00:00", "2024-01-15T09:00:00"),  # CET, +01:00
        ("2024-07-15 10:00:00", "2024-07-15T08:00:00"),  # CEST, +02:00
        ("2024-07-15 10:00:00.250", "2024-07-15T08:00:00.250000"),
        ("2024-07-15", "2024-07-14T22:00:00"),  # a date is its local midnight
        # spring forward, 2024-03-31 02:00 -> 03:00
        ("2024-03-31 01:59:59", "2024-03-31T00:59:59"),
        ("2024-03-31 02:30:00", "2024-03-31T01:30:00"),  # in the gap: the offset before the change
        ("2024-03-31 03:00:00", "2024-03-31T01:00:00"),
        # fall back, 2024-10-27 03:00 -> 02:00: the repeated hour is read as its first pass
        ("2024-10-27 01:59:59", "2024-10-26T23:59:59"),
        ("2024-10-27 02:30:00", "2024-10-27T00:30:00"),
        ("2024-10-27 03:00:00", "2024-10-27T02:00:00"),
    ],
)
def test_naive_times_are_read_in_the_timezone(text: str, utc: str) -> None:
    moment = cast_one("time", text, "Europe/Stockholm")
    assert isinstance(moment, datetime) and moment.tzinfo is not None
    assert moment.astimezone(UTC).replace(tzinfo=None).isoformat() == utc
    assert moment.replace(tzinfo=None) == datetime.fromisoformat(text)  # the wall clock as written


def test_a_time_keeps_the_zone_offset_it_had_then() -> None:
    winter = cast_one("time", "2024-01-15 10:00:00", "Europe/Stockholm")
    summer = cast_one("time", "2024-07-15 10:00:00", "Europe/Stockholm")
    assert winter.utcoffset() == timedelta(hours=1) and summer.utcoffset() == timedelta(hours=2)
    assert cast_one("time", "2024-07-15 10:00:00", "UTC").tzinfo is UTC


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)))
def test_any_naive_time_gets_the_offset_the_zone_had_at_that_wall_clock(naive: datetime) -> None:
    moment = cast_one("time", naive.isoformat(sep=" "), "Europe/Stockholm")
    assert moment.replace(tzinfo=None) == naive
    assert moment.utcoffset() == STOCKHOLM.utcoffset(naive)


@pytest.mark.parametrize(
    "value",
    ["2024-07-15T10:00:00+05:30", "2024-07-15T04:30:00Z", datetime(2024, 7, 15, 4, 30, tzinfo=UTC)],
)
def test_aware_times_keep_their_offset(value: Any) -> None:
    moment = cast_one("time", value, "Europe/Stockholm")
    assert moment == datetime(2024, 7, 15, 4, 30, tzinfo=UTC)
    assert moment.utcoffset() == (timedelta(hours=5, minutes=30) if "+05:30" in str(value) else timedelta(0))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1712345678, datetime(2024, 4, 5, 19, 34, 38, tzinfo=UTC)),
        (1712345678.5, datetime(2024, 4, 5, 19, 34, 38, 500_000, tzinfo=UTC)),
        ("1712345678", datetime(2024, 4, 5, 19, 34, 38, tzinfo=UTC)),  # a CSV cell
        (1712345678901, datetime(2024, 4, 5, 19, 34, 38, 901_000, tzinfo=UTC)),  # milliseconds
        ("1712345678901", datetime(2024, 4, 5, 19, 34, 38, 901_000, tzinfo=UTC)),
        (1712345678901234, datetime(2024, 4, 5, 19, 34, 38, 901_234, tzinfo=UTC)),  # microseconds
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (-86_400, datetime(1969, 12, 31, tzinfo=UTC)),
    ],
)
def test_epoch_numbers_are_seconds_or_milliseconds_by_magnitude(value: Any, expected: datetime) -> None:
    assert cast_one("time", value, "Europe/Stockholm") == expected
    assert cast_one("time", value) == expected  # epoch times need no zone


def test_epoch_nanoseconds_from_a_parquet_integer_column() -> None:
    moment = cast_one("time", 1712345678901234567)
    assert abs(moment - datetime(2024, 4, 5, 19, 34, 38, 901_234, tzinfo=UTC)) <= timedelta(microseconds=1)


def test_datetime_objects_naive_aware_pandas_and_dates() -> None:
    utc_ten = datetime(2024, 7, 15, 8, 0, tzinfo=UTC)
    assert cast_one("time", datetime(2024, 7, 15, 10, 0), "Europe/Stockholm") == utc_ten
    naive = cast_one("time", pd.Timestamp("2024-07-15 10:00:00.123456789"), "Europe/Stockholm")
    assert type(naive) is datetime and naive == utc_ten + timedelta(microseconds=123_456)
    aware = cast_one("time", pd.Timestamp("2024-07-15 08:00:00", tz="UTC"))
    assert type(aware) is datetime and aware == utc_ten
    zoned = cast_one("time", pd.Timestamp("2024-07-15 10:00:00", tz="Europe/Stockholm"))  # a zoned Parquet column
    assert type(zoned) is datetime and zoned == utc_ten and zoned.utcoffset() == timedelta(hours=2)
    assert cast_one("time", date(2024, 7, 15), "Europe/Stockholm") == datetime(2024, 7, 14, 22, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01 10:00:00", "15/07/2024 10:00", "", 10**30, None, [1]])
def test_a_time_that_cannot_be_read_stays_as_it_is(value: Any) -> None:
    assert cast_one("time", value, "Europe/Stockholm") == value


def test_a_naive_time_without_a_timezone_stays_naive_for_the_schema_to_reject() -> None:
    assert cast_one("time", "2024-07-15 10:00:00") == "2024-07-15 10:00:00"
    assert cast_one("time", pd.Timestamp("2024-07-15 10:00:00")) == datetime(2024, 7, 15, 10, 0)
    with pytest.raises(msgspec.ValidationError, match="timezone component"):
        msgspec.convert({"known_at": cast_one("time", "2024-07-15 10:00:00")}, FraudLabel, strict=False)


# --- derived labels ---


def card_mapping(**label: Any) -> Mapping:
    rule = {"flag": "TX_FRAUD", "delay": "7d", "fields": {"payment_id": "payment_id", "merchant_id": "merchant_id"}}
    return one(
        timezone="Europe/Stockholm",
        rename={"payment_id": "TRANSACTION_ID", "ts": "TX_DATETIME", "merchant_id": "TERMINAL_ID"},
        cast={"ts": "time", "merchant_id": "str"},
        label=LabelRule(**(rule | label)),
    )


def test_a_row_yields_its_event_and_a_label_known_after_the_delay() -> None:
    events = card_mapping().apply(
        "payment", {"TRANSACTION_ID": "p1", "TX_DATETIME": "2024-07-15 10:00:00", "TERMINAL_ID": 42, "TX_FRAUD": "1"}
    )
    (kind, event), (label_kind, label) = events
    assert kind == "payment" and label_kind == "label"
    assert "TX_FRAUD" not in event  # the outcome stays out of the event
    assert label == {
        "payment_id": "p1",
        "merchant_id": "42",  # copied after the cast
        "is_fraud": True,
        "known_at": event["ts"] + timedelta(days=7),
    }
    assert label["known_at"] == datetime(2024, 7, 22, 8, 0, tzinfo=UTC)


def test_a_delay_across_a_clock_change_is_elapsed_time() -> None:
    row = {"TRANSACTION_ID": "p1", "TX_DATETIME": "2024-03-28 12:00:00", "TERMINAL_ID": "m", "TX_FRAUD": "0"}
    (_, event), (_, label) = card_mapping().apply("payment", row)
    assert label["known_at"] - event["ts"] == timedelta(hours=168)
    assert label["known_at"] == datetime(2024, 4, 4, 11, 0, tzinfo=UTC)  # 13:00 in Stockholm, summer time by then
    assert label["is_fraud"] is False


def test_a_delay_from_a_time_with_a_named_zone_is_elapsed_time_too() -> None:
    parquet_time = datetime(2024, 3, 28, 12, 0, tzinfo=STOCKHOLM)  # pyarrow gives zoned columns like this
    row = {"TRANSACTION_ID": "p1", "TX_DATETIME": parquet_time, "TERMINAL_ID": "m", "TX_FRAUD": 1}
    (_, label) = card_mapping().apply("payment", row)[1]
    assert label["known_at"] == datetime(2024, 4, 4, 11, 0, tzinfo=UTC)


def test_a_row_without_its_flag_or_with_an_unreadable_time_has_no_label() -> None:
    mapping = card_mapping()
    assert len(mapping.apply("payment", {"TRANSACTION_ID": "p1", "TX_DATETIME": "2024-07-15 10:00:00"})) == 1
    bad_time = mapping.apply("payment", {"TRANSACTION_ID": "p1", "TX_DATETIME": "soon", "TX_FRAUD": "1"})
    assert bad_time == [("payment", {"payment_id": "p1", "ts": "soon"})]


def test_a_flag_that_is_not_a_boolean_reaches_the_label_as_it_is() -> None:
    row = {"TRANSACTION_ID": "p1", "TX_DATETIME": "2024-07-15 10:00:00", "TERMINAL_ID": "m", "TX_FRAUD": "maybe"}
    label = card_mapping().apply("payment", row)[1][1]
    assert label["is_fraud"] == "maybe"
    with pytest.raises(msgspec.ValidationError, match=r"Expected `bool`, got `str` - at `\$.is_fraud`"):
        msgspec.convert(label, FraudLabel, strict=False)


def test_a_label_of_another_use_case_names_its_own_kind_and_fields() -> None:
    mapping = one(
        "offer",
        rename={"offer_id": "OFFER", "ts": "SENT", "opened": "OPENED"},
        cast={"ts": "time", "opened": "time"},
        label=LabelRule(
            flag="TOOK_IT",
            delay="30d",
            kind="outcome",
            into="accepted",
            at="decided",
            since="ts",
            fields={"offer_id": "offer_id"},
        ),
    )
    assert mapping.check({"offer": Offer, "outcome": Outcome}) == {}
    row = {"OFFER": "O1", "SENT": 1_700_000_000, "OPENED": 1_700_086_400, "TOOK_IT": "yes"}
    (_, label) = mapping.apply("offer", row)[1]
    assert label == {"offer_id": "O1", "accepted": True, "decided": datetime(2023, 12, 14, 22, 13, 20, tzinfo=UTC)}
    assert msgspec.convert(label, Outcome, strict=False).accepted is True


# --- JSON lines ---


def test_a_json_line_is_mapped_like_a_row() -> None:
    mapping = Mapping.from_options("payment", CARD_OPTIONS)
    line = b'{"TRANSACTION_ID": "0", "TX_DATETIME": 1522540831000, "CUSTOMER_ID": 596, "TERMINAL_ID": 3156.0,'
    line += b' "TX_AMOUNT": 57.16, "TX_FRAUD": 0}\n'
    (_, event), (_, label) = mapping.apply("payment", line)
    assert event == {
        "payment_id": "0",
        "ts": datetime(2018, 4, 1, 0, 0, 31, tzinfo=UTC),
        "customer_id": "596",
        "merchant_id": "3156",
        "amount": 57.16,
        "currency": "EUR",
    }
    assert label["is_fraud"] is False


@pytest.mark.parametrize("line", [b'{"TRANSACTION_ID": ', b"[1, 2]", b'"text"'])
def test_a_json_line_that_is_not_an_object_passes_unchanged_and_parse_says_why(line: bytes) -> None:
    mapping = Mapping.from_options("payment", CARD_OPTIONS)
    assert mapping.apply("payment", line) == [("payment", line)]
    with pytest.raises(InvalidEvent, match="schema violation"):
        CardHistory().parse("payment", line)


def test_a_json_line_nested_too_deep_passes_unchanged() -> None:
    line = b"[" * 100_000 + b"]" * 100_000
    assert Mapping.from_options("payment", CARD_OPTIONS).apply("payment", line) == [("payment", line)]


def test_a_label_whose_time_would_pass_year_9999_is_rejected_for_it() -> None:
    row = {"TRANSACTION_ID": "p1", "TX_DATETIME": "9999-12-30T00:00:00+00:00", "TERMINAL_ID": "m", "TX_FRAUD": "1"}
    (_, event), (_, label) = card_mapping().apply("payment", row)
    assert event["ts"] == datetime(9999, 12, 30, tzinfo=UTC) and "known_at" not in label
    with pytest.raises(InvalidEvent, match="missing required field `known_at`"):
        CardHistory().parse("label", label)


VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.datetimes(),
    st.datetimes().map(lambda d: d.replace(tzinfo=STOCKHOLM)),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9))])),
    st.dates(),
    st.lists(st.integers(), max_size=3),
)


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from([*ROW, "ts", "other"]), VALUES))
def test_apply_never_raises_for_what_a_row_holds(row: dict[str, Any]) -> None:
    for events in (
        Mapping.from_options("payment", CARD_OPTIONS).apply("payment", row),
        card_mapping().apply("payment", row),
    ):
        assert [kind for kind, _ in events] in (["payment"], ["payment", "label"])


@settings(deadline=None)
@given(st.binary(max_size=200) | st.dictionaries(st.sampled_from(list(ROW)), VALUES).map(msgspec.json.encode))
def test_apply_never_raises_for_a_json_line(line: bytes) -> None:
    events = Mapping.from_options("payment", CARD_OPTIONS).apply("payment", line)
    assert events[0][0] == "payment"


# --- TOML and options ---


def test_toml_and_options_give_the_same_mapping(tmp_path: Path) -> None:
    assert toml(tmp_path, CARD_TOML) == Mapping.from_options("payment", CARD_OPTIONS)


def test_every_label_option_has_its_toml_key(tmp_path: Path) -> None:
    text = """
    [offer]
    rename = { ts = "SENT" }
    cast = { ts = "time", opened = "time" }
    [offer.label]
    from = "TOOK_IT"
    delay = "1d12h"
    kind = "outcome"
    into = "accepted"
    at = "decided"
    since = "ts"
    fields = { offer_id = "offer_id" }
    """
    options = ["--rename", "ts=SENT", "--cast", "ts=time", "--cast", "opened=time", "--label-from", "TOOK_IT"]
    options += ["--label-delay", "1d12h", "--label-kind", "outcome", "--label-into", "accepted"]
    options += ["--label-at", "decided", "--label-since", "ts", "--label-field", "offer_id=offer_id"]
    assert toml(tmp_path, text) == Mapping.from_options("offer", options)


def test_options_and_toml_defaults_agree(tmp_path: Path) -> None:
    from_toml = toml(tmp_path, '[payment]\ncast = { ts = "time" }\n[payment.label]\nfrom = "F"\ndelay = "1h"\n')
    from_options = Mapping.from_options("payment", ["--cast", "ts=time", "--label-from", "F", "--label-delay", "1h"])
    assert from_toml == from_options
    label = from_options.kinds["payment"].label
    assert label is not None and (label.kind, label.into, label.at, label.since) == (
        "label",
        "is_fraud",
        "known_at",
        None,
    )
    assert Mapping.from_options("payment", []) == one()


def test_the_digest_changes_with_what_shapes_events_not_with_where_files_are(tmp_path: Path) -> None:
    from_toml = toml(tmp_path, CARD_TOML.replace("[payment]\n", '[payment]\nfile = "transactions.csv"\n', 1))
    reordered = ["--cast", "amount=float", *CARD_OPTIONS]  # the same casts, another order
    assert from_toml.digest == Mapping.from_options("payment", reordered).digest
    assert from_toml.digest != Mapping.from_options("payment", [*CARD_OPTIONS, "--drop", "X"]).digest
    assert from_toml.digest != Mapping.from_options("payment", [*CARD_OPTIONS[:-1], "payment_id=payment_id"]).digest


def test_a_toml_file_names_its_kinds_files_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    text = '[payment]\nfile = "../transactions.csv"\n[label]\nfile = "/data/labels.jsonl"\n[other]\n'
    mapping = toml(tmp_path / "conf", text)
    assert mapping.files == {"payment": tmp_path / "conf" / "../transactions.csv", "label": Path("/data/labels.jsonl")}


def test_a_kind_without_a_mapping_passes_through_mapped_payloads_but_apply_refuses_it(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_bytes(b'{"payment_id": "p1"}\n')
    mapping = Mapping.from_options("payment", CARD_OPTIONS)
    assert list(mapped_payloads(path, "label", mapping)) == [("label", "labels.jsonl:1", b'{"payment_id": "p1"}\n')]
    assert list(mapped_payloads(path, "label", None)) == [("label", "labels.jsonl:1", b'{"payment_id": "p1"}\n')]
    with pytest.raises(MappingError, match=r"no mapping for event kind 'label'; the mapping has \['payment'\]"):
        mapping.apply("label", b"{}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[payment\n", "mapping.toml: cannot read the mapping: Expected ']'"),
        ('timezone = "UTC"\n', "top-level key 'timezone' is not a table; put it under [<event kind>]"),
        ('[payment]\nrenames = { a = "b" }\n', "[payment]: Object contains unknown field `renames`"),
        ('[payment]\ndrop = "TX"\n', "[payment]: Expected `array`, got `str` - at `$.drop`"),
        ("[payment]\nrename = { ts = 3 }\n", "mapping.toml: payment.rename.ts: expected a string (a name), got 3"),
        ("[payment]\ncast = { ts = true }\n", "payment.cast.ts: expected a string (a name), got True"),
        ("[payment.label]\nfields = { a = 1 }\n", "payment.label.fields.a: expected a string (a name), got 1"),
        ('[payment.label]\nflag = "F"\ndelay = "1d"\n', "Object contains unknown field `flag` - at `$.label`"),
        ('[payment.label]\ndelay = "1d"\n', "Object missing required field `from` - at `$.label`"),
        ('[payment]\ntimezone = "Mars/Olympus"\ncast = { ts = "time" }\n', "mapping.toml: unknown timezone"),
    ],
)
def test_toml_errors_name_the_file_and_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MappingError, match=re.escape(message)):
        toml(tmp_path, text)


def test_a_missing_or_unreadable_toml_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"absent.toml: cannot read the mapping: \[Errno 2\]"):
        Mapping.load(tmp_path / "absent.toml")
    (tmp_path / "latin1.toml").write_bytes(b'[payment]\nconst = { city = "G\xf6teborg" }\n')
    with pytest.raises(MappingError, match="latin1.toml: cannot read the mapping: 'utf-8' codec"):
        Mapping.load(tmp_path / "latin1.toml")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--renam", "a=b"], "unknown mapping option '--renam'; expected one of --rename, --cast,"),
        (["payment_id=TRANSACTION_ID"], "unknown mapping option 'payment_id'"),
        (["--rename"], "--rename needs a value: FIELD=COLUMN: the schema field"),
        (["--rename", "payment_id"], "--rename takes FIELD=COLUMN, got 'payment_id'"),
        (["--cast", "=str"], r"--cast takes FIELD=TYPE, got '=str'"),
        (["--label-field", "payment_id"], "--label-field takes LABEL_FIELD=EVENT_FIELD, got 'payment_id'"),
        (["--timezone", "UTC", "--timezone=CET"], "--timezone given 2 times (UTC CET); give it once"),
        (["--label-from", "F"], "--label-from needs --label-delay (how long after the event its label is known)"),
        (["--label-delay", "7d", "--label-kind", "x"], "--label-delay, --label-kind need --label-from"),
        (["--cast", "ts=time", "--label-from", "F", "--label-delay", "7 days"], "payment.label: delay '7 days'"),
    ],
)
def test_option_errors(options: list[str], message: str) -> None:
    with pytest.raises(MappingError, match=re.escape(message)):
        Mapping.from_options("payment", options)


# --- validation when built ---


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"cast": {"customer_id": "string"}},
            "payment.customer_id: unknown cast type 'string'; expected one of str, int, float, bool, time",
        ),
        (
            {"timezone": "Europe/Stokholm", "cast": {"ts": "time"}},
            "unknown timezone 'Europe/Stokholm'; expected an IANA name such as Europe/Stockholm or UTC",
        ),
        (
            {"timezone": "UTC"},
            "payment: timezone 'UTC' is set but no field is cast to time; "
            'cast the time fields, e.g. cast = { ts = "time" } or --cast ts=time',
        ),
        (
            {"rename": {"currency": "CUR"}, "const": {"currency": "EUR"}},
            "payment: currency both renamed and const; keep one",
        ),
        (
            {"rename": {"ts": "TX_DATETIME"}, "drop": ["TX_DATETIME"]},
            "payment: column(s) TX_DATETIME both renamed and dropped; keep one",
        ),
        (
            {"label": LabelRule(flag="F", delay="1d")},
            "payment.label: cannot tell the event time the delay counts from (no field cast to time); "
            'name it, e.g. label.since = "ts" or --label-since ts, and cast it to time',
        ),
        (
            {"cast": {"ts": "time", "sent": "time"}, "label": LabelRule(flag="F", delay="1d")},
            "(fields ts, sent cast to time)",
        ),
        (
            {"cast": {"ts": "time"}, "label": LabelRule(flag="F", delay="1d", since="sent")},
            "payment.label: since 'sent' is not cast to time; "
            'cast it, e.g. cast = { sent = "time" } or --cast sent=time',
        ),
        (
            {"cast": {"ts": "time"}, "rename": {"is_fraud": "F"}, "label": LabelRule(flag="F", delay="1d")},
            "payment.label: flag column 'F' is also renamed; a label's flag stays out of the event",
        ),
        (
            {"cast": {"ts": "time"}, "label": LabelRule(flag="F", delay="a week")},
            "payment.label: delay 'a week' does not parse; "
            "expected numbers with units w, d, h, m, s, ms, e.g. 7d or 1d12h",
        ),
    ],
)
def test_a_mapping_is_validated_when_built(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=re.escape(message)):
        one(**fields)


@pytest.mark.parametrize(
    ("text", "delay"),
    [
        ("7d", timedelta(days=7)),
        ("36h", timedelta(hours=36)),
        ("1d12h", timedelta(hours=36)),
        ("1d 12h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("2w", timedelta(weeks=2)),
        ("1.5d", timedelta(hours=36)),
        ("0s", timedelta(0)),
    ],
)
def test_delays(text: str, delay: timedelta) -> None:
    assert parse_delay(text) == delay


@pytest.mark.parametrize("text", ["", "7", "d7", "7 days", "-1d", "7d-", "1h30", "P7D", "7D"])
def test_delays_that_do_not_parse(text: str) -> None:
    with pytest.raises(MappingError, match=f"delay {text!r} does not parse"):
        parse_delay(text)


def test_timezones() -> None:
    assert parse_timezone("UTC") is UTC and parse_timezone("utc") is UTC
    assert parse_timezone("Europe/Stockholm") == STOCKHOLM
    for name in ("Europe/Stokholm", "", "../etc/passwd", "+01:00"):
        with pytest.raises(MappingError, match="unknown timezone"):
            parse_timezone(name)


# --- checks against the schemas ---


def test_check_lists_the_required_fields_nothing_provides() -> None:
    mapping = Mapping.from_options("payment", CARD_OPTIONS)
    assert mapping.check(SCHEMAS) == {}
    partial = one(rename={"payment_id": "TRANSACTION_ID"}, const={"currency": "EUR"})
    assert partial.check(SCHEMAS) == {"payment": ["ts", "customer_id", "merchant_id", "amount"]}


def test_check_accepts_casts_that_fit_optional_and_any_fields() -> None:
    class Loose(msgspec.Struct):
        when: datetime | None = None
        anything: Any = None
        count: int | None = None
        rate: float = 0.0

    mapping = one(cast={"when": "time", "anything": "bool", "count": "int", "rate": "int"})
    assert mapping.check({"payment": Loose}) == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"rename": {"payment": "TRANSACTION_ID"}},
            "payment: rename target 'payment' is not a field of the schema; "
            "expected one of payment_id, ts, customer_id, merchant_id, amount, currency, reference",
        ),
        ({"cast": {"card": "str"}}, r"payment: cast target 'card' is not a field of the schema"),
        ({"const": {"currencie": "EUR"}}, "payment: const target 'currencie' is not a field of the schema"),
        ({"cast": {"amount": "str"}}, r"payment.amount: cast 'str' does not fit the schema's type float"),
        ({"cast": {"ts": "str"}}, r"payment.ts: cast 'str' does not fit the schema's type datetime"),
        ({"cast": {"customer_id": "int"}}, "payment.customer_id: cast 'int' does not fit the schema's type str"),
        (
            {"const": {"currency": "eur"}},
            r"payment.currency: const 'eur' does not fit the schema: Expected `str` matching regex",
        ),
        ({"const": {"amount": -1}}, "payment.amount: const -1 does not fit the schema: Expected `float` >= 0.0"),
    ],
)
def test_check_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=re.escape(message)):
        one(**fields).check(SCHEMAS)


def test_check_refuses_a_kind_the_use_case_lacks() -> None:
    with pytest.raises(
        MappingError, match=r"payments: unknown event kind 'payments'; expected one of \['label', 'payment'\]"
    ):
        one("payments").check(SCHEMAS)


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (
            {"kind": "chargeback"},
            "payment.label: unknown event kind 'chargeback'; expected one of ['label', 'payment']",
        ),
        (
            {"fields": {"payment": "payment_id"}},
            "payment.label: field of the label kind 'payment' is not a field of the schema",
        ),
        (
            {"fields": {"payment_id": "payment"}},
            "payment.label: payment field copied into payment_id 'payment' is not a field of the schema",
        ),
        (
            {"into": "fraud"},
            "payment.label: into (the label field of the flag) 'fraud' is not a field of the schema",
        ),
        ({"at": "known"}, "payment.label: at (the label field of its time) 'known' is not a field of the schema"),
        ({"into": "merchant_id"}, "payment.label: into 'merchant_id' is not a boolean field of the label kind"),
        ({"at": "merchant_id"}, "payment.label: at 'merchant_id' is not a time field of the label kind"),
        (
            {"fields": {"payment_id": "payment_id"}},
            "payment.label: the label kind requires merchant_id, which the label does not copy from the payment; "
            'copy each, e.g. fields = { merchant_id = "merchant_id" } or --label-field merchant_id=merchant_id',
        ),
    ],
)
def test_check_label_errors(label: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=re.escape(message)):
        card_mapping(**label).check(SCHEMAS)


# --- end to end: a card history in a file ---


CARD_ROWS = [
    # TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_TIME_SECONDS, TX_TIME_DAYS, TX_FRAUD
    (0, "2018-04-01 00:00:31", 596, 3156, "57.16", 31, 0, 0),
    (1, "2018-04-01 00:02:10", 4961, 3412, "81.51", 130, 0, 0),
    (2, "2018-04-01 00:07:56", 2, 1365, "146.00", 476, 0, 1),
    (3, "2018-03-25 02:30:00", 4128, 8737, "0.00", 0, 0, 0),  # in the spring-forward gap; a zero amount
    (4, "2018-10-28 02:30:00", 927, 9906, "12.00", 0, 0, 1),  # the repeated autumn hour
    (5, "2018-04-01 00:09:29", 4128, 8737, "", 569, 0, ""),  # no amount, no outcome yet
    (6, "01/04/2018 00:10", 927, 9906, "5.50", 600, 0, 0),  # a time the mapping cannot read
    (7, "2018-04-01 00:11:00", 927, 9906, "5,50", 660, 0, 1),  # a decimal comma
]


def write_cards(path: Path) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "TRANSACTION_ID",
                "TX_DATETIME",
                "CUSTOMER_ID",
                "TERMINAL_ID",
                "TX_AMOUNT",
                "TX_TIME_SECONDS",
                "TX_TIME_DAYS",
                "TX_FRAUD",
            ]
        )
        out.writerows(CARD_ROWS)


def test_a_card_history_csv_maps_and_parses_end_to_end(tmp_path: Path) -> None:
    write_cards(tmp_path / "transactions.csv")
    mapping = toml(tmp_path, CARD_TOML.replace("[payment]\n", '[payment]\nfile = "transactions.csv"\n', 1))
    assert mapping.check(SCHEMAS) == {}
    fs = CardHistory()
    parsed: dict[str, Any] = {}
    rejected: dict[str, str] = {}
    for kind, position, payload in mapped_payloads(mapping.files["payment"], "payment", mapping):
        try:
            parsed[position] = fs.parse(kind, payload)
        except InvalidEvent as exc:
            rejected[position] = exc.reason
            dead = fs.dead_letter("transactions.csv", position, kind, exc.reason, payload)
            assert "<redacted>" in dead.payload and "'customer_id'" in dead.payload  # masked under its schema name
    payments = [f"transactions.csv:{n}" for n in (2, 3, 4, 5, 6)]
    labels = [f"transactions.csv:{n}#label" for n in (2, 3, 4, 5, 6, 9)]  # line 9's payment fails, its label not
    assert sorted(parsed) == sorted(payments + labels)
    first = parsed["transactions.csv:2"]
    assert first == Payment(
        payment_id="0",
        ts=datetime(2018, 4, 1, 0, 0, 31, tzinfo=timezone(timedelta(hours=2))),
        customer_id="596",
        merchant_id="3156",
        amount=57.16,
        currency="EUR",
    )
    assert parsed["transactions.csv:2#label"] == FraudLabel(
        payment_id="0", merchant_id="3156", is_fraud=False, known_at=datetime(2018, 4, 7, 22, 0, 31, tzinfo=UTC)
    )
    assert parsed["transactions.csv:4#label"].is_fraud is True
    assert parsed["transactions.csv:5"].ts == datetime(2018, 3, 25, 1, 30, tzinfo=UTC)  # gap: offset before the change
    assert parsed["transactions.csv:6"].ts == datetime(2018, 10, 28, 0, 30, tzinfo=UTC)  # first pass of 02:30
    assert parsed["transactions.csv:5"].amount == 0.0
    assert "transactions.csv:7#label" not in parsed  # no outcome in the row, no label
    assert rejected == {
        "transactions.csv:7": "schema violation: Object missing required field `amount`",
        "transactions.csv:8": "schema violation: Invalid RFC3339 encoded datetime - at `$.ts`",
        "transactions.csv:9": "schema violation: Expected `float`, got `str` - at `$.amount`",
    }


def test_a_card_history_parquet_with_its_own_column_types(tmp_path: Path) -> None:
    naive = pd.to_datetime(["2018-04-01 00:00:31", "2018-07-01 12:00:00"]).as_unit("ns")
    table = pa.table(
        {
            "TRANSACTION_ID": pa.array([0, 1], pa.int64()),
            "TX_DATETIME": pa.array(naive, pa.timestamp("ns")),
            "CUSTOMER_ID": pa.array([596, 4961], pa.int64()),
            "TERMINAL_ID": pa.array([3156.0, None], pa.float64()),  # a gap made the ids floats
            "TX_AMOUNT": pa.array([57.16, 81.51]),
            "TX_FRAUD": pa.array([0, 1], pa.int8()),
        }
    )
    pq.write_table(table, tmp_path / "transactions.parquet")
    options = [*CARD_OPTIONS, "--cast", "payment_id=str"]
    mapping = Mapping.from_options("payment", options)
    fs = CardHistory()
    results = []
    for kind, position, payload in mapped_payloads(tmp_path / "transactions.parquet", "payment", mapping):
        try:
            results.append((position, fs.parse(kind, payload)))
        except InvalidEvent as exc:
            results.append((position, exc.reason))
    assert [p for p, _ in results] == [
        "transactions.parquet:0",
        "transactions.parquet:0#label",
        "transactions.parquet:1",
        "transactions.parquet:1#label",
    ]
    payment = results[0][1]
    assert isinstance(payment, Payment) and payment.merchant_id == "3156" and payment.customer_id == "596"
    assert payment.ts == datetime(2018, 3, 31, 22, 0, 31, tzinfo=UTC)
    assert results[2][1] == "schema violation: Object missing required field `merchant_id`"
    assert results[3][1] == "schema violation: Object missing required field `merchant_id`"


def test_from_command_line_takes_a_file_or_the_options_of_one_kind(tmp_path: Path) -> None:
    from features.mapping import from_command_line

    toml = tmp_path / "cards.toml"
    toml.write_text('[payment]\nrename = { payment_id = "TRANSACTION_ID" }\n')
    assert from_command_line(None, ["payment"], {"--rename": None, "--timezone": None}) is None
    assert from_command_line(toml, [], {"--rename": None}) == Mapping.load(toml)
    given = from_command_line(None, ["payment"], {"--rename": ["payment_id=TRANSACTION_ID"], "--drop": []})
    assert given == Mapping.from_options("payment", ["--rename", "payment_id=TRANSACTION_ID"])
    with pytest.raises(MappingError, match=r"give --mapping or the mapping options \(--rename\), not both"):
        from_command_line(toml, ["payment"], {"--rename": ["a=b"]})
    with pytest.raises(MappingError, match="exactly one kind with --events KIND=PATH .got label, payment"):
        from_command_line(None, ["payment", "label"], {"--timezone": "UTC"})
    with pytest.raises(MappingError, match="got none"):
        from_command_line(None, [], {"--timezone": "UTC"})
