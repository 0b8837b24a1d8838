"""The replay order both drivers use: one rule, so a replayed file and a topic agree.

Events that feed keyed stages are replayed in event-time order, ties broken by the FeatureSet's
kind order (a label known at t counts for a payment at t), then by the order they were read:
that is the order one key's events have on its partition when `samestream produce` publishes
them, and the order the batch driver gives each key's state. Events of a table's feed keep the
order of the feed itself (file order, files in the order given): the table's time rule
(`features.tables`) is about the order the feed carried them in.
"""

from __future__ import annotations

import msgspec

from features.featureset import FeatureSet

OrderKey = tuple[int, int, int]


def order_key(fs: FeatureSet, kind: str, event: msgspec.Struct, read: int) -> OrderKey:
    """Sort key of the `read`-th event read: feed events by read order, others by event time."""
    if kind in fs.feed_kinds:
        return (read, 0, read)
    return (fs.event_time_ms(event), fs.kind_order[kind], read)
