"""Which optional fields a dataset carries, and the record every command builds its FeatureSet from.

`materialize` finds the optional fields (`FeatureSet.optional_fields`) the events carry,
mapped as they are loaded, in the first `SAMPLE` events of each file: a field is present when
most of them (at least half) have it, so a few faulty rows do not switch a group off; for a
field whose absence the schema fills with a value (an empty free-text reference), when any of
them has it. Events then lacking a field of a group that is on are dead letters naming it.
It writes them, with the reference files it was given, to `featureset.json` in the use case's
data folder (a run that fails puts back what was there). `train`, `score`, `produce`,
`features` and `serve` build the FeatureSet from that record, so the live process computes the
features the model was trained on, and the model's FeatureSet version (checked by the scorer)
says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from features.mapping import Mapping, Schemas, mapped_payloads
from features.sources import Payload

RECORD = "featureset.json"
SAMPLE = 1_000
"""Events read per file to tell which optional fields the file carries."""


@dataclass(frozen=True)
class BuiltFor:
    """What a FeatureSet is built for: the optional fields its events carry (None: all of them)
    and its reference files by name (e.g. `merchants`)."""

    fields: tuple[str, ...] | None = None
    references: dict[str, str] = field(default_factory=dict)


def read_record(folder: Path) -> BuiltFor | None:
    """The record in `folder`, or None where no materialize wrote one."""
    path = folder / RECORD
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        fields = data.get("fields")
        return BuiltFor(
            tuple(fields) if fields is not None else None,
            {str(k): str(v) for k, v in data.get("references", {}).items()},
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{path}: unreadable record of the FeatureSet's fields ({exc}); delete it and materialize"
        ) from None


def write_record(folder: Path, built: BuiltFor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORD
    body = {"fields": None if built.fields is None else sorted(built.fields), "references": built.references}
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


def present_fields(
    schemas: Schemas,
    optional: Iterable[str],
    sources: Sequence[tuple[str, Path]],
    mapping: Mapping | None = None,
    sample: int = SAMPLE,
) -> tuple[str, ...]:
    """The optional fields the first `sample` events of each (kind, path) source carry (see the
    module's rule), counting only sources whose kind's schema has the field."""
    wanted = frozenset(optional)
    lacking: dict[str, int] = {}
    carrying: dict[str, int] = {}
    filled: set[str] = set()
    for kind, path in sources:
        schema = schemas.get(kind)
        if schema is None:
            continue
        infos = {f.encode_name: f for f in msgspec.structs.fields(schema) if f.encode_name in wanted}
        if not infos:
            continue
        filled |= {name for name, f in infos.items() if f.default not in (None, msgspec.NODEFAULT)}
        seen = 0
        for yielded, _, payload in mapped_payloads(path, kind, mapping):
            if yielded != kind:
                continue
            row = _as_dict(payload)
            for name in infos:
                tally = lacking if row.get(name) is None else carrying
                tally[name] = tally.get(name, 0) + 1
            seen += 1
            if seen >= sample:
                break
    return tuple(sorted(n for n, k in carrying.items() if n in filled or k >= lacking.get(n, 0)))


def _as_dict(payload: Payload) -> dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    try:
        row = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return {}
    return row if isinstance(row, dict) else {}
