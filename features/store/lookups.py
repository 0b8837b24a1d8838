"""Reference data the store features enrich with: the product master and the store list.

Loaded once by a driver and passed in; the feature code never reads files or topics itself. A
store's time zone defines its business days: every source's clock is mapped onto them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from features.windows import DAY_MS, HOUR_MS

CATEGORIES: tuple[str, ...] = ("bakery", "dairy", "produce", "meat", "fish", "deli", "ready_meals")
"""Product categories with a feature of their own; any other category counts as `other`."""

UNITS: tuple[str, ...] = ("piece", "kg")
"""Units a product can be stocked and sold in; events may also say `g` or `case`."""

CUTOFF_HOUR = 4
"""Local hour of the next morning at which a business day closes: a sale uploaded later is late."""

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class Product:
    """One row of the product master."""

    product_id: str
    name: str
    category: str
    unit: str
    shelf_life_days: int
    base_price: float
    unit_cost: float
    case_size: float
    """Units (pieces or kg) in one case as the warehouse ships it."""
    max_sale_qty: float
    """Most units one receipt line can plausibly hold; more means a unit mix-up (g sent as kg)."""

    def factor(self, unit: str) -> float | None:
        """How many of the product's units one `unit` is, or None when that cannot be known."""
        if unit == self.unit:
            return 1.0
        if unit == "case":
            return self.case_size
        if unit == "g" and self.unit == "kg":
            return 0.001
        return None


class Calendar:
    """Business days of one time zone: local dates as day numbers, and when each day closes.

    Day numbers count local calendar days since 1970-01-01. UTC offsets are looked up once per
    UTC hour and cut-offs once per day, so mapping millions of events costs a dict lookup each.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._offsets: dict[int, int] = {}
        self._cutoffs: dict[int, int] = {}

    def day(self, ms: int) -> int:
        """The local business day of an instant (epoch milliseconds)."""
        hour = ms // HOUR_MS
        offset = self._offsets.get(hour)
        if offset is None:
            moment = datetime.fromtimestamp(hour * 3600, UTC).astimezone(self.zone)
            offset = self._offsets[hour] = int(moment.utcoffset() // timedelta(milliseconds=1))  # type: ignore[operator]
        return (ms + offset) // DAY_MS

    def cutoff_ms(self, day: int) -> int:
        """When `day` closes: `CUTOFF_HOUR` o'clock local time the next morning, epoch ms."""
        cutoff = self._cutoffs.get(day)
        if cutoff is None:
            local = datetime.combine(day_date(day + 1), time(CUTOFF_HOUR), tzinfo=self.zone)
            cutoff = self._cutoffs[day] = int(local.timestamp() * 1000)
        return cutoff


@dataclass(frozen=True, slots=True)
class Store:
    """One row of the store list, with the calendar of its time zone."""

    store_id: str
    timezone: str
    calendar: Calendar


def day_number(value: date) -> int:
    return value.toordinal() - EPOCH_ORDINAL


def day_date(day: int) -> date:
    return date.fromordinal(day + EPOCH_ORDINAL)


def load_products(path: str | Path) -> dict[str, Product]:
    """Read the product master CSV once, at start-up; say which row is wrong if one is."""
    fields = (
        "product_id",
        "name",
        "category",
        "unit",
        "shelf_life_days",
        "base_price",
        "unit_cost",
        "case_size",
        "max_sale_qty",
    )

    def build(row: dict[str, str]) -> Product:
        product = Product(
            row["product_id"],
            row["name"],
            row["category"],
            row["unit"],
            int(row["shelf_life_days"]),
            float(row["base_price"]),
            float(row["unit_cost"]),
            float(row["case_size"]),
            float(row["max_sale_qty"]),
        )
        if product.unit not in UNITS:
            raise ValueError(f"unit {product.unit!r} is not one of {UNITS}")
        if product.shelf_life_days < 1 or min(product.base_price, product.case_size, product.max_sale_qty) <= 0:
            raise ValueError("shelf_life_days, base_price, case_size and max_sale_qty must be positive")
        return product

    return {p.product_id: p for p in _read(path, fields, build, "product master")}


def load_stores(path: str | Path) -> dict[str, Store]:
    """Read the store list CSV (store_id, timezone) once, at start-up."""
    calendars: dict[str, Calendar] = {}

    def build(row: dict[str, str]) -> Store:
        name = row["timezone"]
        if name not in calendars:
            try:
                calendars[name] = Calendar(ZoneInfo(name))
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as Europe/Berlin)") from None
        return Store(row["store_id"], name, calendars[name])

    return {s.store_id: s for s in _read(path, ("store_id", "timezone"), build, "store list")}


def _read(path: str | Path, fields: Iterable[str], build: Callable[[dict[str, str]], Any], what: str) -> list[Any]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(fields) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: the {what} lacks columns {sorted(missing)}")
        out = []
        for line, row in enumerate(reader, start=2):
            try:
                out.append(build(row))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: bad {what} row: {exc}") from None
        return out
