"""Input mappings: a user's own event files, loaded as they are, without a conversion script.

A mapping says, per event kind, how a file's rows become events of the kind's schema: which
source column feeds which field (`rename`), how values convert (`cast`), in which zone naive
times were written (`timezone`), which fields have a fixed value (`const`), which columns to
ignore (`drop`), and whether each row also carries a label, derived from a flag column and a
feedback delay (`label`). It comes from a TOML file (`Mapping.load`) or from command-line
options (`Mapping.from_options`), both giving the same object, validated when it is built and
against the use case's schemas by `check`.

A value the mapping cannot convert (a time it cannot read, an id that is not a number) is
passed on unchanged, so `FeatureSet.parse` rejects the event naming the field and the value
stays visible in the dead letter; `apply` never raises for a row's content.

For the drivers: build a mapping with `Mapping.load(path)` or `Mapping.from_options(kind, args)`
(the options and their help are in `OPTIONS`), call `check(featureset.schemas)` before reading
(a `MappingError` is a user's mistake, to show as it is; the dict it returns lists fields to warn
about), then read files with `mapped_payloads(path, kind, mapping)` instead of `read_payloads`:
it yields `(kind, position, payload)`, where `kind` may be the derived label's, so parse,
order (`kind_order`) and dead-letter each event by the kind it yields. `files` gives the event
files a TOML mapping names; `digest` belongs in a fingerprint of the inputs. A command line
that offers both forms builds the mapping with `from_command_line`.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
import tomllib
from collections import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import inspect as mi

from features.sources import Payload, read_payloads

CASTS = ("str", "int", "float", "bool", "time")
Schemas = abc.Mapping[str, type[msgspec.Struct]]
"""Event kind -> schema, as `FeatureSet.schemas`."""


class MappingError(ValueError):
    """A mapping that cannot be used as written: what is wrong, what was expected, where."""


class LabelRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Each row also yields a label event of `kind`: the flag of source column `from` (`flag` in
    Python) as a boolean in field `into`, known `delay` after the event's time field `since` (in
    field `at`), plus the event's fields named in `fields` (label field -> event field)."""

    flag: str = msgspec.field(name="from")
    delay: str
    kind: str = "label"
    into: str = "is_fraud"
    at: str = "known_at"
    since: str | None = None
    """Defaults to the event's only field cast to time."""
    fields: dict[str, str] = {}


class KindMapping(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How the rows of one event kind's file become events of its schema."""

    file: str | None = None
    timezone: str | None = None
    """IANA name of the zone naive times are in (`Europe/Stockholm`, `UTC`)."""
    rename: dict[str, str] = {}
    """Schema field -> source column."""
    cast: dict[str, str] = {}
    """Schema field -> one of CASTS."""
    const: dict[str, Any] = {}
    drop: list[str] = []
    label: LabelRule | None = None


class Mapping(msgspec.Struct, dict=True):
    """Event kind -> its KindMapping; validated (time zones, casts, delays) when built."""

    kinds: dict[str, KindMapping]

    def __post_init__(self) -> None:
        self._plans = {kind: _plan(kind, km) for kind, km in self.kinds.items()}

    @classmethod
    def load(cls, path: Path) -> Mapping:
        """Read a TOML file with one table per event kind; `file` is relative to the TOML file."""
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise MappingError(f"{path}: cannot read the mapping: {exc}") from None
        kinds = {}
        for kind, table in document.items():
            if not isinstance(table, dict):
                raise MappingError(f"{path}: top-level key {kind!r} is not a table; put it under [<event kind>]")
            tables = [(f"{kind}.{key}", table.get(key)) for key in ("rename", "cast")]
            label = table.get("label")
            tables.append((f"{kind}.label.fields", label.get("fields") if isinstance(label, dict) else None))
            for where, names in tables:  # msgspec would say `$.rename[...]`: name the key
                for key, value in names.items() if isinstance(names, dict) else ():
                    if not isinstance(value, str):
                        raise MappingError(f"{path}: {where}.{key}: expected a string (a name), got {value!r}")
            try:
                kinds[kind] = msgspec.convert(table, KindMapping)
            except msgspec.ValidationError as exc:
                raise MappingError(f"{path}: [{kind}]: {exc}") from None
            if kinds[kind].file is not None:
                kinds[kind] = msgspec.structs.replace(kinds[kind], file=str(path.parent / str(kinds[kind].file)))
        try:
            return cls(kinds)
        except MappingError as exc:
            raise MappingError(f"{path}: {exc}") from None

    @classmethod
    def from_options(cls, kind: str, options: Sequence[str]) -> Mapping:
        """The mapping of one kind from command-line options (see OPTIONS), `--opt value` or `--opt=value`."""
        items: dict[str, list[str]] = {}
        args = list(options)
        while args:
            arg = args.pop(0)
            name, eq, value = arg.partition("=")
            if name not in OPTIONS:
                raise MappingError(f"unknown mapping option {name!r}; expected one of {', '.join(OPTIONS)}")
            if not eq:
                if not args:
                    raise MappingError(f"{name} needs a value: {OPTIONS[name]}")
                value = args.pop(0)
            items.setdefault(name, []).append(value)
        pairs = {name: _pairs(name, items.get(name, [])) for name in ("--rename", "--cast", "--const", "--label-field")}
        label = None
        label_options = sorted(name for name in items if name.startswith("--label-") and name != "--label-from")
        if "--label-from" in items:
            if "--label-delay" not in items:
                raise MappingError("--label-from needs --label-delay (how long after the event its label is known)")
            given = {
                key: _single(items, f"--label-{key}")
                for key in ("kind", "into", "at", "since")
                if f"--label-{key}" in items
            }
            label = LabelRule(
                flag=_single(items, "--label-from"),
                delay=_single(items, "--label-delay"),
                fields=pairs["--label-field"],
                **given,
            )
        elif label_options:
            raise MappingError(f"{', '.join(label_options)} need --label-from (the flag column labels come from)")
        mapping = KindMapping(
            timezone=_single(items, "--timezone") if "--timezone" in items else None,
            rename=pairs["--rename"],
            cast=pairs["--cast"],
            const=pairs["--const"],
            drop=items.get("--drop", []),
            label=label,
        )
        return cls({kind: mapping})

    @property
    def files(self) -> dict[str, Path]:
        """Kind -> event file, for the kinds whose table names one."""
        return {kind: Path(km.file) for kind, km in self.kinds.items() if km.file is not None}

    @property
    def digest(self) -> str:
        """Hash of what shapes the events, not of where the files are: a changed mapping makes the
        same files a new input (for a fingerprint of what was materialized), on any machine."""
        shape = {kind: msgspec.structs.replace(km, file=None) for kind, km in self.kinds.items()}
        return hashlib.sha256(msgspec.json.encode(shape, order="sorted")).hexdigest()[:16]

    def check(self, schemas: Schemas) -> dict[str, list[str]]:
        """Fail if the mapping names a kind or field the schemas lack, or a value that cannot fit.

        Returns kind -> required fields nothing in the mapping provides: a column of that very
        name in the file still can, so the caller decides whether to warn (a derived label has
        no such columns: a field missing there is an error).
        """
        missing: dict[str, list[str]] = {}
        for kind, km in self.kinds.items():
            schema = _schema(schemas, kind, kind)
            fields = _fields(schema)
            for role, names in (("rename", km.rename), ("cast", km.cast), ("const", km.const)):
                for name in names:
                    _field(fields, kind, name, f"{role} target")
            for name, cast in km.cast.items():
                if not _fits(cast, fields[name]):
                    raise MappingError(
                        f"{kind}.{name}: cast {cast!r} does not fit the schema's type {_describe(fields[name])}"
                    )
            for name, value in km.const.items():
                try:
                    msgspec.convert(value, fields[name].type, strict=False)
                except msgspec.ValidationError as exc:
                    raise MappingError(f"{kind}.{name}: const {value!r} does not fit the schema: {exc}") from None
            provided = set(km.rename) | set(km.const)
            gaps = [name for name, f in fields.items() if f.required and name not in provided]
            if gaps:
                missing[kind] = gaps
            if km.label is not None:
                _check_label(kind, km.label, fields, schemas)
        return missing

    def apply(self, kind: str, payload: Payload) -> list[tuple[str, Payload]]:
        """The event(s) one raw payload maps to: `(kind, dict)` first, then its label if it has one.

        A JSON line that is not an object is returned unchanged, so `FeatureSet.parse` says why.
        """
        try:
            plan = self._plans[kind]
        except KeyError:
            raise MappingError(f"no mapping for event kind {kind!r}; the mapping has {sorted(self._plans)}") from None
        return plan.apply(payload)


OPTIONS = {
    "--rename": "FIELD=COLUMN: the schema field FIELD is read from the source column COLUMN (repeat)",
    "--cast": f"FIELD=TYPE: convert FIELD to {', '.join(CASTS)} (repeat)",
    "--const": "FIELD=VALUE: every event has FIELD set to VALUE (repeat)",
    "--drop": "COLUMN: ignore this source column (repeat)",
    "--timezone": "NAME: IANA zone of naive times in fields cast to time, e.g. Europe/Stockholm or UTC",
    "--label-from": "COLUMN: each row also yields a label with this flag column (0/1, true/false, yes/no)",
    "--label-delay": "DELAY: how long after the event its label is known, e.g. 7d, 36h, 1d12h",
    "--label-kind": "KIND: event kind of the derived label (default: label)",
    "--label-into": "FIELD: label field that receives the flag (default: is_fraud)",
    "--label-at": "FIELD: label field that receives event time + delay (default: known_at)",
    "--label-since": "FIELD: event time field the delay counts from (default: the only field cast to time)",
    "--label-field": "LABEL_FIELD=EVENT_FIELD: copy an event field into the label (repeat)",
}
"""Mapping options and their help, for the command lines that offer them."""


def from_command_line(file: Path | None, kinds: Sequence[str], options: abc.Mapping[str, Any]) -> Mapping | None:
    """The mapping a command was given: a TOML `file`, or `options` (OPTIONS name -> a value, a
    list of values, or None) for the one kind in `kinds` (the kinds of its `--events`); None
    when neither is given."""
    args = [f"{name}={v}" for name, value in options.items() for v in _values(value)]
    if file is not None and args:
        given = sorted({a.partition("=")[0] for a in args})
        raise MappingError(f"give --mapping or the mapping options ({', '.join(given)}), not both")
    if file is not None:
        return Mapping.load(file)
    if not args:
        return None
    distinct = sorted(set(kinds))
    if len(distinct) != 1:
        raise MappingError(
            "the mapping options map the events of one kind: give exactly one kind with --events KIND=PATH "
            f"(got {', '.join(distinct) or 'none'}), or map several kinds with --mapping FILE.toml"
        )
    return Mapping.from_options(distinct[0], args)


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def mapped_payloads(path: Path, kind: str, mapping: Mapping | None) -> Iterator[tuple[str, str, Payload]]:
    """Yield (kind, position, payload) for every event of a file, mapped where the mapping has the kind.

    Positions are those of `read_payloads` (`file:line`); a derived label's is `file:line#<label kind>`.
    Without a mapping for `kind`, payloads pass through unchanged.
    """
    plan = mapping._plans.get(kind) if mapping is not None else None
    if plan is None:
        for position, payload in read_payloads(path):
            yield kind, position, payload
        return
    apply = plan.apply
    for position, payload in read_payloads(path):
        first, *derived = apply(payload)
        yield kind, position, first[1]
        for label_kind, label in derived:
            yield label_kind, f"{position}#{label_kind}", label


# --- how values convert: a value that does not is returned unchanged, for the schema to reject ---

_BOOLS = {"1": True, "true": True, "yes": True, "t": True, "y": True}
_BOOLS |= {"0": False, "false": False, "no": False, "f": False, "n": False}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_UNITS = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6), (math.inf, 1e9))
"""Epoch numbers by magnitude: seconds below 1e11, then ms, µs, ns (each covers 1973-5138)."""
_DELAY = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _to_str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an id a dataframe stored as float: 123.0 -> "123"
    return str(value) if isinstance(value, int | float) else value


def _to_int(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            number = _to_float(value)
            return int(number) if isinstance(number, float) and number.is_integer() else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def _to_bool(value: Any) -> Any:
    if isinstance(value, str):
        return _BOOLS.get(value.strip().lower(), value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return value == 1
    return value


def _epoch(number: float) -> datetime | None:
    for limit, per_second in _EPOCH_UNITS:
        if abs(number) < limit:
            try:
                return _EPOCH + timedelta(seconds=number / per_second)
            except OverflowError:
                return None
    return None


def _to_time(zone: tzinfo | None) -> Callable[[Any], Any]:
    """Cast to an aware datetime: naive times get the zone's offset at that moment (a time in a
    spring-forward gap the offset before the change, a repeated autumn hour its first pass),
    numbers are epoch times; a value already aware keeps its offset."""

    def convert(value: Any) -> Any:
        moment: datetime | None
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                number = _to_float(value)
                moment = _epoch(number) if isinstance(number, float) else None
        elif isinstance(value, datetime):  # pandas' Timestamp too, rebuilt as a plain datetime
            moment = value
            if type(value) is not datetime:
                offset = value.utcoffset()
                moment = _plain(value, None if offset is None else _fixed(offset))
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            moment = _epoch(value)
        else:
            moment = None
        if moment is None:
            return value
        if moment.tzinfo is None:
            if zone is None:  # the schema says a zone is missing
                return value if isinstance(value, str) else moment
            return _plain(moment, _fixed(zone.utcoffset(moment)))  # type: ignore[arg-type]
        return moment

    return convert


_OFFSETS: dict[timedelta, tzinfo] = {timedelta(0): UTC}


def _fixed(offset: timedelta) -> tzinfo:
    """The fixed-offset zone of `offset`, one object per offset."""
    zone = _OFFSETS.get(offset)
    if zone is None:
        zone = _OFFSETS[offset] = timezone(offset)
    return zone


def _plain(moment: datetime, zone: tzinfo | None) -> datetime:
    """`moment` as a plain datetime in `zone`: faster than `replace`, and sheds subclasses msgspec refuses."""
    m = moment
    return datetime(m.year, m.month, m.day, m.hour, m.minute, m.second, m.microsecond, zone, fold=m.fold)


_CAST_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
}


def parse_delay(text: str) -> timedelta:
    """`7d`, `36h`, `1d12h`, `90m`, `30s`, `500ms`, `2w` as a timedelta."""
    compact = text.replace(" ", "")
    parts = _DELAY.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise MappingError(
            f"delay {text!r} does not parse; expected numbers with units w, d, h, m, s, ms, e.g. 7d or 1d12h"
        )
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def parse_timezone(name: str) -> tzinfo:
    """An IANA zone by name (`UTC` included)."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            f"unknown timezone {name!r}; expected an IANA name such as Europe/Stockholm or UTC"
        ) from None


# --- a validated mapping compiled into what one row needs ---


@dataclass(frozen=True, slots=True)
class _LabelPlan:
    kind: str
    flag: str
    into: str
    at: str
    since: str
    delay: timedelta
    copies: tuple[tuple[str, str], ...]

    def derive(self, row: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
        """The row's label; none when its flag is empty (outcome unknown) or its time unreadable
        (the event itself is then rejected, saying why)."""
        flag = row.get(self.flag)
        moment = event.get(self.since)
        if flag is None or not isinstance(moment, datetime):
            return None
        label = {target: event[source] for target, source in self.copies if source in event}
        label[self.into] = _to_bool(flag)
        try:
            if type(moment.tzinfo) is not timezone:  # a zone's clock shifts; elapsed time is what counts
                moment = moment.astimezone(UTC)
            label[self.at] = moment + self.delay
        except OverflowError:  # past year 9999: the label goes without its time, and its dead letter says so
            pass
        return label


@dataclass(frozen=True, slots=True)
class _Plan:
    kind: str
    removed: frozenset[str]
    names: dict[str, str]
    copies: tuple[tuple[str, str], ...]
    casts: tuple[tuple[str, Callable[[Any], Any]], ...]
    const: dict[str, Any]
    label: _LabelPlan | None

    def apply(self, payload: Payload) -> list[tuple[str, Payload]]:
        kind = self.kind
        if isinstance(payload, dict):
            row = payload
        else:
            try:
                row = msgspec.json.decode(payload)
            except (msgspec.DecodeError, RecursionError):
                return [(kind, payload)]
            if not isinstance(row, dict):
                return [(kind, payload)]
        removed, names = self.removed, self.names
        event = {names.get(k, k): v for k, v in row.items() if k not in removed}
        for source, target in self.copies:
            if source in row:
                event[target] = row[source]
        for name, cast in self.casts:
            if name in event:
                event[name] = cast(event[name])
        event.update(self.const)
        if self.label is not None:
            label = self.label.derive(row, event)
            if label is not None:
                return [(kind, event), (self.label.kind, label)]
        return [(kind, event)]


def _plan(kind: str, km: KindMapping) -> _Plan:
    """Validate one kind's mapping (what needs no schema) and compile it."""
    zone = parse_timezone(km.timezone) if km.timezone is not None else None
    casts = []
    for name, cast in km.cast.items():
        if cast not in CASTS:
            raise MappingError(f"{kind}.{name}: unknown cast type {cast!r}; expected one of {', '.join(CASTS)}")
        casts.append((name, _to_time(zone) if cast == "time" else _CAST_FUNCTIONS[cast]))
    times = [name for name, cast in km.cast.items() if cast == "time"]
    if zone is not None and not times:
        raise MappingError(
            f"{kind}: timezone {km.timezone!r} is set but no field is cast to time; "
            'cast the time fields, e.g. cast = { ts = "time" } or --cast ts=time'
        )
    both = sorted(set(km.const) & set(km.rename))
    if both:
        raise MappingError(f"{kind}: {', '.join(both)} both renamed and const; keep one")
    dropped = sorted(set(km.drop) & set(km.rename.values()))
    if dropped:
        raise MappingError(f"{kind}: column(s) {', '.join(dropped)} both renamed and dropped; keep one")
    label = None
    if km.label is not None:
        rule = km.label
        since = rule.since
        if since is None:
            if len(times) != 1:
                found = f"fields {', '.join(times)}" if times else "no field"
                raise MappingError(
                    f"{kind}.label: cannot tell the event time the delay counts from ({found} cast to time); "
                    'name it, e.g. label.since = "ts" or --label-since ts, and cast it to time'
                )
            since = times[0]
        elif since not in times:
            raise MappingError(
                f"{kind}.label: since {since!r} is not cast to time; "
                f'cast it, e.g. cast = {{ {since} = "time" }} or --cast {since}=time'
            )
        if rule.flag in km.rename.values():
            raise MappingError(
                f"{kind}.label: flag column {rule.flag!r} is also renamed; a label's flag stays out of the event"
            )
        try:
            delay = parse_delay(rule.delay)
        except MappingError as exc:
            raise MappingError(f"{kind}.label: {exc}") from None
        label = _LabelPlan(rule.kind, rule.flag, rule.into, rule.at, since, delay, tuple(rule.fields.items()))
    names: dict[str, str] = {}
    copies = []  # a column renamed to several fields
    for target, source in km.rename.items():
        if source in names:
            copies.append((source, target))
        else:
            names[source] = target
    shadowed = set(km.rename) - set(km.rename.values())  # a column named like a renamed field gives way to it
    removed = frozenset(km.drop) | shadowed | ({km.label.flag} if km.label else set())
    return _Plan(kind, removed, names, tuple(copies), tuple(casts), dict(km.const), label)


# --- checks against the schemas ---


def _schema(schemas: Schemas, kind: str, where: str) -> type[msgspec.Struct]:
    try:
        return schemas[kind]
    except KeyError:
        raise MappingError(f"{where}: unknown event kind {kind!r}; expected one of {sorted(schemas)}") from None


def _fields(schema: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    return {f.encode_name: f for f in msgspec.structs.fields(schema)}


def _field(fields: dict[str, msgspec.structs.FieldInfo], where: str, name: str, role: str) -> None:
    if name not in fields:
        raise MappingError(
            f"{where}: {role} {name!r} is not a field of the schema; expected one of {', '.join(fields)}"
        )


def _fits(cast: str, info: msgspec.structs.FieldInfo) -> bool:
    """Whether a cast's result can be a value of the field's type."""
    accepted = {
        "str": (mi.StrType, mi.LiteralType),
        "int": (mi.IntType, mi.FloatType),
        "float": (mi.FloatType,),
        "bool": (mi.BoolType,),
        "time": (mi.DateTimeType,),
    }[cast]
    kind = mi.type_info(info.type)
    options = kind.types if isinstance(kind, mi.UnionType) else (kind,)
    return any(isinstance(t, (*accepted, mi.AnyType)) for t in options)


def _describe(info: msgspec.structs.FieldInfo) -> str:
    return type(mi.type_info(info.type)).__name__.removesuffix("Type").lower()


def _check_label(
    kind: str, rule: LabelRule, event_fields: dict[str, msgspec.structs.FieldInfo], schemas: Schemas
) -> None:
    where = f"{kind}.label"
    fields = _fields(_schema(schemas, rule.kind, where))
    for target, source in rule.fields.items():
        _field(fields, where, target, f"field of the {rule.kind} kind")
        _field(event_fields, where, source, f"{kind} field copied into {target}")
    _field(fields, where, rule.into, f"into (the {rule.kind} field of the flag)")
    _field(fields, where, rule.at, f"at (the {rule.kind} field of its time)")
    if not _fits("bool", fields[rule.into]):
        raise MappingError(f"{where}: into {rule.into!r} is not a boolean field of the {rule.kind} kind")
    if not _fits("time", fields[rule.at]):
        raise MappingError(f"{where}: at {rule.at!r} is not a time field of the {rule.kind} kind")
    provided = {rule.into, rule.at, *rule.fields}
    gaps = [name for name, f in fields.items() if f.required and name not in provided]
    if gaps:
        example = gaps[0]
        raise MappingError(
            f"{where}: the {rule.kind} kind requires {', '.join(gaps)}, which the label does not copy from the "
            f'{kind}; copy each, e.g. fields = {{ {example} = "{example}" }} or --label-field {example}={example}'
        )


def _pairs(option: str, values: list[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, eq, rest = value.partition("=")
        if not eq or not key:
            raise MappingError(f"{option} takes {OPTIONS[option].split(':')[0]}, got {value!r}")
        pairs[key] = rest
    return pairs


def _single(items: dict[str, list[str]], option: str) -> str:
    values = items[option]
    if len(values) > 1:
        raise MappingError(f"{option} given {len(values)} times ({shlex.join(values)}); give it once")
    return values[0]
