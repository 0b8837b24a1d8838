"""Seeded grocery-chain simulator for the store-waste use case.

`simulate_store` writes, into one folder, what a chain's systems would export:

* ``sales.jsonl``: POS receipt lines (`features.store.schemas.Sale`), in upload order;
  JSON lines carry their ``type``, as events on the shared topic do;
* ``deliveries.csv``: delivery-note lines from the warehouse system, mostly in cases;
* ``stock_counts.csv``: closing shelf counts, each product about once a week;
* ``price_changes.<parquet|jsonl>``: regular price changes, promotions and markdowns,
  published ahead of the day they take effect;
* ``day_closes.jsonl``: each store's end-of-day report of units sold per product;
* ``products.csv`` and ``stores.csv``: the product master and the store list;
* ``truth.json`` and ``truth_daily.parquet``: what the faulty feeds should yield, for tests.

The world: stores in a few European time zones, each with its own size, sell a catalogue of
fresh products (bakery, dairy, produce, meat, fish, deli, ready meals), by the piece or by
weight. Demand per store × product × day follows the category's weekday profile, a yearly
season, a slowly drifting local level, day-to-day noise, and the price: each product has its own
price elasticity, promotions draw extra shoppers. Sales are capped by the stock on the shelf.
Stock arrives each morning from the order placed at the previous close; every delivery is a
batch with a best-before day, sold first in, first out, and what expires unsold is waste. A
little stock disappears (damage, theft), which the counts reveal. The store orders like many
do: same weekday last week plus a margin, rounded up to whole cases; it marks a product down
by 30 % for the next day when much of its stock would otherwise expire.

Faulty records are injected at fixed rates, and every one is counted in ``truth.json``:

* sales: uploads after their day's cut-off (late), uploads after midnight but in time
  (applied), retransmitted duplicates, lines with a missing field, units that cannot be
  converted (kg for a product sold by the piece), grams sent as kilograms, lines of products
  missing from the master; and, valid, weights sent in grams (converted);
* deliveries: re-sent lines (duplicates), missing quantities, a unit that cannot be converted,
  unknown products;
* stock counts: negative counts, missing quantities, unconvertible units, unknown products;
* price changes: missing effective days, unknown products.

The same seed and arguments give byte-identical files.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from faker import Faker

from features.store.lookups import CUTOFF_HOUR

__all__ = ["StoreSimulation", "simulate_store"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_DAYS = 35
OPEN_HOUR, CLOSE_HOUR = 7, 22
MARKDOWN_DEPTH = 0.3
PROMOTION_DEPTH = 0.2
PROMOTION_PULL = 1.3
"""Promotions are advertised: they draw shoppers beyond what the price cut alone does."""

# Rates of faulty records (per record of the kind).
SALE_LATE = 0.002
SALE_AFTER_MIDNIGHT = 0.004
SALE_MISSING = 0.001
SALE_BAD_UNIT = 0.0005
SALE_GRAMS_AS_KG = 0.002
"""Of lines sold by weight."""
SALE_IN_GRAMS = 0.03
"""Of lines sold by weight: valid, converted."""
SALE_DUPLICATE = 0.003
SALE_UNKNOWN = 0.0005
DELIVERY_DUPLICATE = 0.005
DELIVERY_MISSING = 0.003
DELIVERY_BAD_UNIT = 0.002
DELIVERY_UNKNOWN = 0.002
COUNT_NEGATIVE = 0.005
COUNT_MISSING = 0.003
COUNT_BAD_UNIT = 0.002
COUNT_UNKNOWN = 0.002
PRICE_MISSING = 0.003
PRICE_UNKNOWN = 0.002


@dataclass(frozen=True)
class StoreSimulation:
    """Where a simulation was written, and how big it is."""

    folder: Path
    n_stores: int
    n_products: int
    days: int
    n_sales: int
    """Receipt lines written, faulty ones included."""
    truth: dict[str, Any]


# ----------------------------------------------------------------------------- the world


class _Product(NamedTuple):
    product_id: str
    name: str
    category: str
    unit: str
    shelf_life: int
    price: float
    cost: float
    case: float
    max_line: float
    demand: float
    """Mean units per day in an average store at the base price."""
    line: float
    """Mean units per receipt line."""
    elasticity: float
    season: float
    """Amplitude of the yearly cycle; its peak is mid-summer when positive."""


CATALOGUE: tuple[_Product, ...] = (
    _Product("P001", "Sourdough loaf", "bakery", "piece", 2, 3.9, 1.5, 8, 12, 14, 1.1, 1.6, 0.0),
    _Product("P002", "Baguette", "bakery", "piece", 1, 1.6, 0.5, 20, 12, 30, 1.3, 1.4, 0.05),
    _Product("P003", "Cinnamon buns 4-pack", "bakery", "piece", 3, 3.2, 1.3, 6, 8, 9, 1.1, 2.0, -0.1),
    _Product("P004", "Rye bread", "bakery", "piece", 5, 2.8, 1.1, 10, 10, 11, 1.1, 1.2, -0.05),
    _Product("P005", "Croissant", "bakery", "piece", 1, 1.2, 0.35, 24, 20, 26, 1.8, 1.9, 0.0),
    _Product("P006", "Whole milk 1 l", "dairy", "piece", 10, 1.3, 0.8, 12, 12, 40, 1.6, 0.8, 0.0),
    _Product("P007", "Semi-skimmed milk 1 l", "dairy", "piece", 10, 1.2, 0.75, 12, 12, 34, 1.6, 0.8, 0.0),
    _Product("P008", "Natural yoghurt 500 g", "dairy", "piece", 14, 1.5, 0.8, 8, 10, 18, 1.3, 1.3, 0.1),
    _Product("P009", "Fresh cream 2 dl", "dairy", "piece", 12, 1.4, 0.7, 10, 8, 9, 1.2, 1.1, -0.25),
    _Product("P010", "Butter 500 g", "dairy", "piece", 21, 4.2, 2.6, 10, 8, 12, 1.1, 1.5, -0.2),
    _Product("P011", "Eggs 12-pack", "dairy", "piece", 21, 3.6, 2.1, 8, 6, 15, 1.1, 1.0, -0.1),
    _Product("P012", "Bananas", "produce", "kg", 5, 1.9, 1.0, 18, 8, 22, 1.1, 1.2, 0.0),
    _Product("P013", "Tomatoes", "produce", "kg", 6, 3.5, 1.9, 6, 6, 12, 0.7, 1.4, 0.35),
    _Product("P014", "Strawberries 400 g", "produce", "piece", 3, 3.9, 2.0, 10, 8, 10, 1.3, 2.3, 0.9),
    _Product("P015", "Lettuce", "produce", "piece", 4, 1.8, 0.8, 12, 6, 11, 1.1, 1.7, 0.45),
    _Product("P016", "Apples", "produce", "kg", 21, 2.6, 1.4, 12, 8, 15, 1.0, 1.1, -0.25),
    _Product("P017", "Avocado", "produce", "piece", 4, 1.1, 0.55, 20, 12, 16, 1.6, 1.8, 0.1),
    _Product("P018", "Cucumber", "produce", "piece", 7, 0.9, 0.4, 15, 8, 14, 1.2, 1.4, 0.3),
    _Product("P019", "Mushrooms 250 g", "produce", "piece", 5, 2.2, 1.1, 10, 6, 8, 1.1, 1.5, -0.3),
    _Product("P020", "Fresh herbs", "produce", "piece", 4, 1.5, 0.6, 12, 6, 7, 1.1, 1.8, 0.3),
    _Product("P021", "Minced beef", "meat", "kg", 4, 11.9, 7.5, 6, 4, 9, 0.6, 1.3, -0.1),
    _Product("P022", "Chicken breast", "meat", "kg", 5, 12.5, 7.8, 6, 4, 8, 0.7, 1.5, 0.1),
    _Product("P023", "Pork chops", "meat", "kg", 5, 9.9, 6.0, 6, 4, 5, 0.8, 1.5, 0.4),
    _Product("P024", "Sausages 400 g", "meat", "piece", 10, 3.9, 2.2, 12, 6, 10, 1.2, 1.4, 0.45),
    _Product("P025", "Salmon fillet", "fish", "kg", 3, 24.0, 15.5, 4, 3, 4, 0.45, 1.8, 0.0),
    _Product("P026", "Cod fillet", "fish", "kg", 2, 19.0, 12.0, 4, 3, 3, 0.45, 1.8, -0.15),
    _Product("P027", "Prawns 200 g", "fish", "piece", 4, 5.5, 3.1, 10, 6, 5, 1.1, 1.9, 0.2),
    _Product("P028", "Ham slices 150 g", "deli", "piece", 12, 2.6, 1.4, 12, 8, 13, 1.2, 1.2, 0.0),
    _Product("P029", "Cheddar 300 g", "deli", "piece", 30, 4.4, 2.6, 8, 6, 9, 1.1, 1.1, -0.1),
    _Product("P030", "Hummus 200 g", "deli", "piece", 10, 2.1, 0.9, 12, 6, 8, 1.1, 1.6, 0.25),
    _Product("P031", "Olives by weight", "deli", "kg", 14, 14.0, 7.5, 3, 2, 2, 0.2, 1.3, 0.2),
    _Product("P032", "Fresh pasta 400 g", "deli", "piece", 8, 3.4, 1.6, 10, 6, 8, 1.2, 1.7, -0.15),
    _Product("P033", "Chicken salad bowl", "ready_meals", "piece", 2, 5.9, 2.9, 8, 6, 9, 1.1, 2.2, 0.35),
    _Product("P034", "Lasagne ready meal", "ready_meals", "piece", 4, 4.9, 2.4, 8, 6, 8, 1.1, 2.0, -0.35),
    _Product("P035", "Sushi box", "ready_meals", "piece", 1, 7.9, 4.2, 6, 6, 7, 1.2, 2.4, 0.2),
    _Product("P036", "Soup of the day 500 ml", "ready_meals", "piece", 4, 3.9, 1.8, 8, 6, 6, 1.1, 2.0, -0.55),
)

WEEKDAYS = {  # Monday .. Sunday
    "bakery": (0.85, 0.85, 0.9, 0.95, 1.15, 1.45, 1.2),
    "dairy": (0.95, 0.9, 0.95, 1.0, 1.2, 1.35, 0.75),
    "produce": (0.9, 0.85, 0.95, 1.0, 1.25, 1.4, 0.75),
    "meat": (0.8, 0.8, 0.85, 1.0, 1.45, 1.55, 0.65),
    "fish": (0.75, 0.8, 0.9, 1.05, 1.7, 1.2, 0.55),
    "deli": (0.9, 0.9, 0.95, 1.0, 1.25, 1.35, 0.75),
    "ready_meals": (1.1, 1.1, 1.1, 1.1, 1.15, 0.8, 0.7),
}
HOURS = np.array(  # share of a day's receipt lines per opening hour, 07:00 .. 21:00
    [0.03, 0.05, 0.06, 0.07, 0.08, 0.09, 0.07, 0.06, 0.07, 0.09, 0.11, 0.1, 0.07, 0.05, 0.0]
)
HOURS = HOURS / HOURS.sum()


class _Site(NamedTuple):
    timezone: str
    locale: str


SITES: tuple[_Site, ...] = (
    _Site("Europe/Stockholm", "sv_SE"),
    _Site("Europe/Berlin", "de_DE"),
    _Site("Europe/Helsinki", "fi_FI"),
    _Site("Europe/London", "en_GB"),
    _Site("Europe/Lisbon", "pt_PT"),
    _Site("Europe/Paris", "fr_FR"),
)


@dataclass
class _Truth:
    """What every feed should yield: dead letters by kind and reason, and everything else."""

    dead_letters: dict[str, dict[str, int]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    converted_units: int = 0
    after_midnight: int = 0
    out_of_order: int = 0
    records: dict[str, int] = field(default_factory=dict)

    def dead(self, kind: str, reason: str, n: int = 1) -> None:
        if n:
            counts = self.dead_letters.setdefault(kind, {})
            counts[reason] = counts.get(reason, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "dead_letters": {k: dict(sorted(v.items())) for k, v in sorted(self.dead_letters.items())},
            "duplicates": dict(sorted(self.duplicates.items())),
            "converted_units": self.converted_units,
            "after_midnight": self.after_midnight,
            "out_of_order": self.out_of_order,
            "records": dict(sorted(self.records.items())),
        }


# ----------------------------------------------------------------------------- writers


class _SaleLine(msgspec.Struct, omit_defaults=True, tag="sale", tag_field="type"):
    sale_id: str
    store_id: str
    product_id: str
    ts: str
    sent_at: int
    quantity: float
    unit: str
    cashier: str
    loyalty_card: str | None = None


class _DayCloseLine(msgspec.Struct, tag="day_close", tag_field="type"):
    store_id: str
    business_day: str
    units_sold: dict[str, float]


class _PriceLine(msgspec.Struct, omit_defaults=True, tag="price_change", tag_field="type"):
    change_id: str
    store_id: str
    product_id: str
    published_at: datetime
    price: float
    reason: str
    effective_day: date | None = None


PRICE_SCHEMA = pa.schema(
    [
        ("change_id", pa.string()),
        ("store_id", pa.string()),
        ("product_id", pa.string()),
        ("published_at", pa.timestamp("ms", tz="UTC")),
        ("effective_day", pa.date32()),
        ("price", pa.float64()),
        ("reason", pa.string()),
    ]
)
DELIVERY_FIELDS = ("delivery_id", "store_id", "product_id", "delivered_at", "quantity", "unit", "best_before")
COUNT_FIELDS = ("count_id", "store_id", "product_id", "counted_at", "quantity", "unit")
DAILY_FIELDS = ("store_id", "product_id", "day", "demand", "sold", "feed", "waste")


@dataclass
class _Pending:
    """Receipt lines not yet written: the gateway writes them in upload order."""

    sent: list[np.ndarray] = field(default_factory=list)
    store: list[np.ndarray] = field(default_factory=list)
    ts: list[np.ndarray] = field(default_factory=list)
    applied: list[np.ndarray] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)

    def add(self, sent: np.ndarray, store: np.ndarray, ts: np.ndarray, applied: np.ndarray, lines: list[bytes]) -> None:
        self.sent.append(sent)
        self.store.append(store)
        self.ts.append(ts)
        self.applied.append(applied)
        self.lines.extend(lines)


class _Writers:
    """The output files of one simulation."""

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder = folder
        self.encode = msgspec.json.Encoder().encode
        self.sales = (folder / "sales.jsonl").open("wb")
        self.closes = (folder / "day_closes.jsonl").open("wb")
        self._files = [
            (folder / "deliveries.csv").open("w", newline="", encoding="utf-8"),
            (folder / "stock_counts.csv").open("w", newline="", encoding="utf-8"),
        ]
        self._deliveries = csv.writer(self._files[0])
        self._deliveries.writerow(DELIVERY_FIELDS)
        self._counts = csv.writer(self._files[1])
        self._counts.writerow(COUNT_FIELDS)
        self.records = {"sale": 0, "delivery": 0, "stock_count": 0, "price_change": 0, "day_close": 0}
        self.prices: list[_PriceLine] = []
        self.price_path = folder / f"price_changes.{fmt}"
        self.fmt = fmt
        self.daily: dict[str, list[Any]] = {name: [] for name in DAILY_FIELDS}

    def delivery(self, row: list[str]) -> None:
        self._deliveries.writerow(row)
        self.records["delivery"] += 1

    def count(self, row: list[str]) -> None:
        self._counts.writerow(row)
        self.records["stock_count"] += 1

    def close(self) -> None:
        self.records["price_change"] = len(self.prices)
        for handle in (self.sales, self.closes, *self._files):
            handle.close()
        self.prices.sort(key=lambda p: (p.published_at, p.change_id))
        if self.fmt == "jsonl":
            self.price_path.write_bytes(msgspec.json.Encoder().encode_lines(self.prices))
        else:
            columns = {name: [getattr(p, name) for p in self.prices] for name in PRICE_SCHEMA.names}
            pq.write_table(pa.table(columns, schema=PRICE_SCHEMA), self.price_path, compression="zstd")
        pq.write_table(pa.table(self.daily), self.folder / "truth_daily.parquet", compression="zstd")


# ----------------------------------------------------------------------------- the simulation


class _World:
    """Stores, products, prices and people: everything fixed before day one."""

    def __init__(self, n_stores: int, days: int, start: date, seed: int, rng: np.random.Generator) -> None:
        self.products = CATALOGUE
        self.p = len(CATALOGUE)
        self.s = n_stores
        self.start = start
        self.day0 = (start - date(1970, 1, 1)).days
        self.store_ids = [f"S{i + 1:03d}" for i in range(n_stores)]
        sites = [SITES[i % len(SITES)] for i in range(n_stores)]
        self.timezones = [site.timezone for site in sites]
        self.size = np.exp(rng.normal(0.0, 0.35, n_stores))
        self.kg = np.array([p.unit == "kg" for p in CATALOGUE])
        self.shelf = np.array([p.shelf_life for p in CATALOGUE])
        self.case = np.array([p.case for p in CATALOGUE], dtype=np.float64)
        self.demand = np.array([p.demand for p in CATALOGUE])
        self.line = np.array([p.line for p in CATALOGUE])
        self.elasticity = np.array([p.elasticity for p in CATALOGUE])
        self.season = np.array([p.season for p in CATALOGUE])
        self.weekday = np.array([WEEKDAYS[p.category] for p in CATALOGUE])
        self.loose = rng.random(self.p) < 0.25
        """Products delivered loose, in pieces or kg; the rest arrive in whole cases."""
        self.offset = np.zeros((n_stores, days + 3), dtype=np.int64)
        for s, name in enumerate(self.timezones):
            zone = ZoneInfo(name)
            for d in range(days + 3):
                noon = datetime(*(start + timedelta(days=d)).timetuple()[:3], 12, tzinfo=zone)
                self.offset[s, d] = int(noon.utcoffset() // timedelta(milliseconds=1))  # type: ignore[operator]
        # the chain's shelf price without markdowns: regular prices drift every few months,
        # promotions run a few days every five weeks or so
        regular = np.repeat(np.array([p.price for p in CATALOGUE])[:, None], days + 3, axis=1)
        self.promotion = np.zeros((self.p, days + 3), dtype=bool)
        for p in range(self.p):
            d = int(rng.integers(20, 90))
            while d < days + 3:
                regular[p, d:] = np.round(regular[p, d - 1] * rng.uniform(0.95, 1.08), 2)
                d += int(rng.integers(60, 120))
            d = int(rng.integers(5, 40))
            while d < days + 3:
                length = int(rng.integers(2, 5))
                self.promotion[p, d : d + length] = True
                d += length + int(rng.integers(25, 50))
        self.regular = regular
        self.scheduled = np.round(regular * np.where(self.promotion, 1 - PROMOTION_DEPTH, 1.0), 2)
        self.count_weekday = rng.integers(0, 7, (n_stores, self.p))
        fakers: dict[str, Faker] = {}
        self.cashiers: list[list[str]] = []
        for site in sites:
            if site.locale not in fakers:
                fakers[site.locale] = Faker(site.locale)
                fakers[site.locale].seed_instance(seed * 7919 + len(fakers))
            self.cashiers.append([fakers[site.locale].name() for _ in range(int(rng.integers(6, 12)))])
        self.loyalty = [
            [f"{x:013d}" for x in rng.integers(10**12, 10**13, int(400 * self.size[s]) + 50).tolist()]
            for s in range(n_stores)
        ]

    def midnight_ms(self, d: int) -> np.ndarray:
        """UTC epoch ms of each store's local midnight starting day `d`."""
        return (self.day0 + d) * DAY_MS - self.offset[:, d]

    def cutoff_ms(self, d: int) -> np.ndarray:
        """When day `d` closes in each store: CUTOFF_HOUR o'clock local the next morning."""
        return self.midnight_ms(d + 1) + CUTOFF_HOUR * HOUR_MS


def _round_units(values: np.ndarray, kg: np.ndarray) -> np.ndarray:
    """Whole pieces, or grams of goods sold by weight."""
    return np.where(kg, np.round(values, 3), np.round(values))


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _iso_local(utc_ms: np.ndarray, offset_ms: np.ndarray) -> list[str]:
    """RFC 3339 local times with their UTC offset, as a till or a handheld writes them."""
    text = np.datetime_as_string((utc_ms + offset_ms).astype("datetime64[ms]"), unit="ms").tolist()
    return [
        f"{t}{'-' if m < 0 else '+'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
        for t, m in zip(text, (offset_ms // 60_000).tolist(), strict=True)
    ]


def _iso_utc(utc_ms: np.ndarray) -> list[str]:
    return [f"{t}Z" for t in np.datetime_as_string((utc_ms // 1000).astype("datetime64[s]"), unit="s").tolist()]


class _Simulation:
    """The chain, day by day: deliver, sell, count, expire, report, order, mark down."""

    def __init__(self, world: _World, out: _Writers, rng: np.random.Generator) -> None:
        self.w = world
        self.out = out
        self.rng = rng
        self.truth = _Truth()
        shape = (world.s, world.p)
        self.stock = np.zeros((*shape, int(world.shelf.max())))
        """Units per store × product × days left: index 0 expires at the end of today."""
        self.sold = np.zeros((*shape, 7))
        self.level = np.zeros(shape)
        self.order = np.ceil(world.demand * world.size[:, None] * 1.3 / world.case) * world.case
        self.markdown = np.zeros(shape, dtype=bool)
        self.pending = _Pending()
        self.last_ts = np.full(world.s, np.iinfo(np.int64).min, dtype=np.int64)
        self.serial = 0

    def _id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:09d}"

    def run_day(self, d: int) -> None:
        w = self.w
        today = w.start + timedelta(days=d)
        midnight = w.midnight_ms(d)
        self._deliver(d, today, midnight)
        price = np.round(w.scheduled[None, :, d] * np.where(self.markdown, 1 - MARKDOWN_DEPTH, 1.0), 2)
        season = 1.0 + w.season * np.cos(2 * math.pi * (today.timetuple().tm_yday - 196) / 365.25)
        self.level = 0.98 * self.level + self.rng.normal(0.0, 0.02, self.level.shape)
        rate = (
            (w.demand * season * w.weekday[:, today.weekday()])[None, :]
            * w.size[:, None]
            * np.exp(self.level + self.rng.normal(0.0, 0.18, self.level.shape))
            * np.power(price / w.regular[None, :, d], -w.elasticity)
            * np.where(w.promotion[:, d], PROMOTION_PULL, 1.0)
        )
        demand, sold, feed = self._sell(d, rate, midnight)
        self._shrink()
        self._count(d, midnight)
        waste = self.stock[:, :, 0].copy()
        self.stock[:, :, :-1] = self.stock[:, :, 1:]
        self.stock[:, :, -1] = 0.0
        self._close(d, today, demand, sold, feed, waste)
        self._plan(d, sold)

    # ------------------------------------------------------------------ morning

    def _deliver(self, d: int, today: date, midnight: np.ndarray) -> None:
        """Yesterday's order arrives before opening: one batch, one delivery-note line per product."""
        w, rng, truth = self.w, self.rng, self.truth
        stores, products = np.nonzero(self.order > 0)
        quantity = self.order[stores, products]
        self.stock[stores, products, w.shelf[products] - 1] += quantity
        self.order[:] = 0.0
        stamps = _iso_utc(midnight[stores] + rng.integers(5 * HOUR_MS, 7 * HOUR_MS, len(stores)))
        fault = rng.random(len(stores))
        for i, (s, p) in enumerate(zip(stores.tolist(), products.tolist(), strict=True)):
            product = w.products[p]
            row = [
                self._id("D"),
                w.store_ids[s],
                product.product_id,
                stamps[i],
                _number(quantity[i] if w.loose[p] else quantity[i] / w.case[p]),
                product.unit if w.loose[p] else "case",
                (today + timedelta(days=int(w.shelf[p]) - 1)).isoformat(),
            ]
            u = fault[i]
            if u < DELIVERY_MISSING:
                row[4] = ""
                truth.dead("delivery", "schema violation")
            elif u < DELIVERY_MISSING + DELIVERY_BAD_UNIT:
                row[4], row[5] = _number(quantity[i]), "piece" if product.unit == "kg" else "kg"
                truth.dead("delivery", "wrong unit")
            self.out.delivery(row)
            if DELIVERY_MISSING + DELIVERY_BAD_UNIT <= u < DELIVERY_MISSING + DELIVERY_BAD_UNIT + DELIVERY_DUPLICATE:
                self.out.delivery(row)
                truth.duplicates["delivery"] = truth.duplicates.get("delivery", 0) + 1
        for _ in range(rng.binomial(len(stores), DELIVERY_UNKNOWN)):
            s = int(rng.integers(0, w.s))
            self.out.delivery(
                [
                    self._id("D"),
                    w.store_ids[s],
                    f"P9{int(rng.integers(0, 100)):02d}",
                    _iso_utc(midnight[s : s + 1] + 6 * HOUR_MS)[0],
                    "4",
                    "case",
                    (today + timedelta(days=3)).isoformat(),
                ]
            )
            truth.dead("delivery", "unknown reference")

    # ------------------------------------------------------------------ the shop floor

    def _sell(self, d: int, rate: np.ndarray, midnight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shoppers arrive through the day and take what is on the shelf, in time order.

        Returns demand, units sold and what the POS feed should tally after its faults, per
        store × product.
        """
        w, rng = self.w, self.rng
        cells = np.repeat(np.arange(w.s * w.p), rng.poisson(rate / w.line).ravel())
        product = cells % w.p
        kg = w.kg[product]
        size = np.where(
            kg,
            np.maximum(np.round(rng.gamma(4.0, w.line[product] / 4.0), 3), 0.05),
            1 + rng.poisson(np.maximum(w.line[product] - 1.0, 0.0)),
        )
        seconds = (OPEN_HOUR + rng.choice(len(HOURS), len(cells), p=HOURS) + rng.random(len(cells))) * 3600.0
        ts = midnight[cells // w.p] + (seconds * 1000).astype(np.int64)
        order = np.lexsort((ts, cells))
        cells, product, kg, size, ts = cells[order], product[order], kg[order], size[order], ts[order]
        demand = np.bincount(cells, weights=size, minlength=w.s * w.p).reshape(w.s, w.p)
        taken_before = np.cumsum(size) - size
        cell_start = np.zeros(w.s * w.p)
        if len(cells):
            first = np.r_[0, np.flatnonzero(np.diff(cells)) + 1]
            cell_start[cells[first]] = taken_before[first]
        room = self.stock.sum(axis=2).ravel()[cells] - (taken_before - cell_start[cells])
        quantity = _round_units(np.clip(np.minimum(size, room), 0.0, None), kg)
        keep = quantity > 0
        cells, product, kg, quantity, ts = cells[keep], product[keep], kg[keep], quantity[keep], ts[keep]
        sold = _round_units(np.bincount(cells, weights=quantity, minlength=w.s * w.p).reshape(w.s, w.p), w.kg)
        self._take(sold)
        applied = self._write_sales(d, cells // w.p, product, kg, quantity, ts)
        feed = np.bincount(cells, weights=np.where(applied, quantity, 0.0), minlength=w.s * w.p)
        return _round_units(demand, w.kg), sold, _round_units(feed.reshape(w.s, w.p), w.kg)

    def _take(self, amount: np.ndarray) -> None:
        """Remove `amount` per store × product from the oldest batches first."""
        left = np.clip(np.cumsum(self.stock, axis=2) - amount[:, :, None], 0.0, None)
        self.stock = np.round(np.minimum(self.stock, left), 3)

    def _write_sales(
        self, d: int, store: np.ndarray, product: np.ndarray, kg: np.ndarray, quantity: np.ndarray, ts: np.ndarray
    ) -> np.ndarray:
        """Receipt lines with upload times and faults; True where the feed applies the line."""
        w, rng, truth = self.w, self.rng, self.truth
        n = len(ts)
        u, v = rng.random(n), rng.random(n)
        edges = np.cumsum([SALE_LATE, SALE_AFTER_MIDNIGHT, SALE_MISSING, SALE_BAD_UNIT])
        late = u < edges[0]
        after_midnight = (u >= edges[0]) & (u < edges[1])
        missing = (u >= edges[1]) & (u < edges[2])
        bad_unit = (u >= edges[2]) & (u < edges[3])
        grams_as_kg = kg & (u >= edges[3]) & (v < SALE_GRAMS_AS_KG)
        in_grams = kg & (u >= edges[3]) & (v >= SALE_GRAMS_AS_KG) & (v < SALE_GRAMS_AS_KG + SALE_IN_GRAMS)
        applied = ~(late | missing | bad_unit | grams_as_kg)
        duplicate = applied & ~after_midnight & (rng.random(n) < SALE_DUPLICATE)
        sent = ts + rng.integers(200, 90_000, n)
        sent = np.where(late, w.cutoff_ms(d)[store] + rng.integers(HOUR_MS, 48 * HOUR_MS, n), sent)
        sent = np.where(
            after_midnight, w.midnight_ms(d + 1)[store] + rng.integers(0, CUTOFF_HOUR * HOUR_MS - 60_000, n), sent
        )
        resent = sent + rng.integers(30_000, 1_800_000, n)
        truth.dead("sale", "late", int(late.sum()))
        truth.dead("sale", "schema violation", int(missing.sum()))
        truth.dead("sale", "wrong unit", int(bad_unit.sum() + grams_as_kg.sum()))
        truth.after_midnight += int(after_midnight.sum())
        truth.converted_units += int(in_grams.sum())
        truth.duplicates["sale"] = truth.duplicates.get("sale", 0) + int(duplicate.sum())

        stamps = _iso_local(ts, w.offset[store, d])
        cashier = rng.integers(0, 1 << 30, n).tolist()
        loyalty = np.where(rng.random(n) < 0.4, rng.integers(0, 1 << 30, n), -1).tolist()
        day_tag = f"{w.start + timedelta(days=d):%Y%m%d}"
        encode = self.out.encode
        lines: list[bytes] = []
        extra_lines: list[bytes] = []
        extra_sent: list[int] = []
        extra_store: list[int] = []
        extra_ts: list[int] = []
        for i, (s, p, q) in enumerate(zip(store.tolist(), product.tolist(), quantity.tolist(), strict=True)):
            item = w.products[p]
            unit = item.unit
            if in_grams[i]:
                q, unit = round(q * 1000.0, 3), "g"
            elif grams_as_kg[i]:
                q = round(q * 1000.0, 3)
            elif bad_unit[i]:
                unit = "piece" if item.unit == "kg" else "kg"
            cashiers, cards = w.cashiers[s], w.loyalty[s]
            line = _SaleLine(
                f"{w.store_ids[s]}-{day_tag}-{i:07d}",
                w.store_ids[s],
                item.product_id,
                stamps[i],
                int(sent[i]),
                q,
                unit,
                cashiers[cashier[i] % len(cashiers)],
                cards[loyalty[i] % len(cards)] if loyalty[i] >= 0 else None,
            )
            if missing[i]:
                payload = msgspec.to_builtins(line)
                del payload[("product_id", "quantity", "ts", "unit")[cashier[i] % 4]]
                lines.append(encode(payload))
            else:
                lines.append(encode(line))
            if duplicate[i]:
                extra_lines.append(encode(msgspec.structs.replace(line, sent_at=int(resent[i]))))
                extra_sent.append(int(resent[i]))
                extra_store.append(s)
                extra_ts.append(int(ts[i]))
        midnight = w.midnight_ms(d)
        for _ in range(rng.binomial(n, SALE_UNKNOWN)):
            s = int(rng.integers(0, w.s))
            moment = int(midnight[s] + rng.integers(OPEN_HOUR * HOUR_MS, CLOSE_HOUR * HOUR_MS))
            extra_lines.append(
                encode(
                    _SaleLine(
                        self._id(f"{w.store_ids[s]}-X"),
                        w.store_ids[s],
                        f"P9{int(rng.integers(0, 100)):02d}",
                        _iso_local(np.array([moment]), w.offset[s : s + 1, d])[0],
                        moment + 1_000,
                        1.0,
                        "piece",
                        w.cashiers[s][0],
                    )
                )
            )
            extra_sent.append(moment + 1_000)
            extra_store.append(s)
            extra_ts.append(moment)
            truth.dead("sale", "unknown reference")
        self.pending.add(
            np.r_[sent, np.array(extra_sent, dtype=np.int64)],
            np.r_[store, np.array(extra_store, dtype=np.int64)],
            np.r_[ts, np.array(extra_ts, dtype=np.int64)],
            np.r_[applied, np.zeros(len(extra_sent), dtype=bool)],
            lines + extra_lines,
        )
        self._flush(int(w.midnight_ms(d + 1).min()))
        return applied

    def _flush(self, until_ms: int) -> None:
        """Write the held-back lines uploaded before `until_ms`, in upload order."""
        pending = self.pending
        if not pending.lines:
            return
        sent = np.concatenate(pending.sent)
        store = np.concatenate(pending.store)
        ts = np.concatenate(pending.ts)
        applied = np.concatenate(pending.applied)
        order = np.argsort(sent, kind="stable")
        ready = order[sent[order] < until_ms]
        rest = order[sent[order] >= until_ms]
        self.out.sales.write(b"".join(pending.lines[i] + b"\n" for i in ready.tolist()))
        self.out.records["sale"] += len(ready)
        self._count_out_of_order(store[ready], ts[ready], applied[ready])
        lines = pending.lines
        self.pending = _Pending()
        if len(rest):
            self.pending.add(sent[rest], store[rest], ts[rest], applied[rest], [lines[i] for i in rest.tolist()])

    def _count_out_of_order(self, store: np.ndarray, ts: np.ndarray, applied: np.ndarray) -> None:
        """Applied lines written after a later-scanned applied line of the same store."""
        for s in np.unique(store[applied]).tolist():
            times = ts[applied & (store == s)]
            before = np.maximum.accumulate(np.r_[self.last_ts[s], times])[:-1]
            self.truth.out_of_order += int((times < before).sum())
            self.last_ts[s] = max(int(self.last_ts[s]), int(times.max()))

    def _shrink(self) -> None:
        """A little stock goes missing (damaged, stolen): only a count can tell."""
        w = self.w
        lost = (self.rng.random((w.s, w.p)) < 0.03) * np.where(w.kg, 0.2, 1.0)
        self._take(np.minimum(lost, self.stock.sum(axis=2)))

    # ------------------------------------------------------------------ evening

    def _count(self, d: int, midnight: np.ndarray) -> None:
        """Closing counts: each product once a week, expiring items still on the shelf."""
        w, rng, truth = self.w, self.rng, self.truth
        stores, products = np.nonzero(w.count_weekday == (w.start + timedelta(days=d)).weekday())
        quantity = self.stock.sum(axis=2)[stores, products]
        stamps = _iso_local(
            midnight[stores] + 22 * HOUR_MS + rng.integers(0, HOUR_MS, len(stores)), w.offset[stores, d]
        )
        fault = rng.random(len(stores))
        edges = np.cumsum([COUNT_NEGATIVE, COUNT_MISSING, COUNT_BAD_UNIT])
        for i, (s, p) in enumerate(zip(stores.tolist(), products.tolist(), strict=True)):
            product = w.products[p]
            row = [self._id("C"), w.store_ids[s], product.product_id, stamps[i], _number(quantity[i]), product.unit]
            if fault[i] < edges[0]:
                row[4] = _number(-max(quantity[i], 1.0))
                truth.dead("stock_count", "negative stock")
            elif fault[i] < edges[1]:
                row[4] = ""
                truth.dead("stock_count", "schema violation")
            elif fault[i] < edges[2]:
                row[5] = "piece" if product.unit == "kg" else "kg"
                truth.dead("stock_count", "wrong unit")
            self.out.count(row)
        for _ in range(rng.binomial(len(stores), COUNT_UNKNOWN)):
            s = int(rng.integers(0, w.s))
            moment = midnight[s : s + 1] + 22 * HOUR_MS
            self.out.count(
                [
                    self._id("C"),
                    w.store_ids[s],
                    f"P9{int(rng.integers(0, 100)):02d}",
                    _iso_local(moment, w.offset[s : s + 1, d])[0],
                    "3",
                    "piece",
                ]
            )
            truth.dead("stock_count", "unknown reference")

    def _close(
        self, d: int, today: date, demand: np.ndarray, sold: np.ndarray, feed: np.ndarray, waste: np.ndarray
    ) -> None:
        """The back office's end-of-day report per store, and the day's truth per product."""
        w = self.w
        ids = [p.product_id for p in w.products]
        for s, store_id in enumerate(w.store_ids):
            report = _DayCloseLine(store_id, today.isoformat(), dict(zip(ids, sold[s].tolist(), strict=True)))
            self.out.closes.write(self.out.encode(report) + b"\n")
            self.out.records["day_close"] += 1
        daily = self.out.daily
        daily["store_id"].extend(np.repeat(w.store_ids, w.p).tolist())
        daily["product_id"].extend(ids * w.s)
        daily["day"].extend([today] * (w.s * w.p))
        for name, values in (("demand", demand), ("sold", sold), ("feed", feed), ("waste", _round_units(waste, w.kg))):
            daily[name].extend(values.ravel().tolist())

    def _plan(self, d: int, sold: np.ndarray) -> None:
        """Tomorrow's order and markdowns, as the store decides them today.

        Order: same weekday last week plus a margin, less the stock left, in whole cases. A
        product whose stock expiring tomorrow exceeds half of that is marked down for a day.
        """
        w = self.w
        self.sold[:, :, d % 7] = sold
        tomorrow = (w.start + timedelta(days=d + 1)).weekday()
        if d >= 6:
            expected = self.sold[:, :, (d + 1) % 7]
        else:
            expected = w.demand[None, :] * w.size[:, None] * w.weekday[None, :, tomorrow]
        target = 1.1 * expected + 0.8 * np.sqrt(expected)
        need = np.clip(target - self.stock.sum(axis=2), 0.0, None)
        cases = np.ceil(need / w.case - 1e-9) * w.case
        self.order = np.where(w.loose, _round_units(np.ceil(need * 10) / 10, w.kg), cases)
        expiring = self.stock[:, :, 0]
        self.markdown = (expiring >= 1.0) & (expiring > 0.5 * expected)
        stores, products = np.nonzero(self.markdown)
        published = _datetimes(w.midnight_ms(d)[stores] + 21 * HOUR_MS + 30 * 60_000)
        for i, (s, p) in enumerate(zip(stores.tolist(), products.tolist(), strict=True)):
            for day, price, reason in (
                (d + 1, round(w.scheduled[p, d + 1] * (1 - MARKDOWN_DEPTH), 2), "markdown"),
                (d + 2, float(w.scheduled[p, d + 2]), "regular"),
            ):
                self._price(s, p, published[i], day, price, reason)

    def _price(self, s: int, p: int, published: datetime, day: int, price: float, reason: str) -> None:
        effective = self.w.start + timedelta(days=day)
        missing = self.rng.random() < PRICE_MISSING
        if missing:
            self.truth.dead("price_change", "schema violation")
        self.out.prices.append(
            _PriceLine(
                self._id("PC"),
                self.w.store_ids[s],
                self.w.products[p].product_id,
                published,
                float(price),
                reason,
                None if missing else effective,
            )
        )

    def scheduled_prices(self, days: int) -> None:
        """The chain's planned changes, published ahead: promotions a week, other changes 3 days."""
        w = self.w
        for p in range(w.p):
            for day in range(1, days + 2):
                if w.scheduled[p, day] == w.scheduled[p, day - 1]:
                    continue
                lead = 7 if w.promotion[p, day] and not w.promotion[p, day - 1] else 3
                published = _datetimes(np.array([(w.day0 + day - lead) * DAY_MS + 6 * HOUR_MS]))[0]
                reason = "promotion" if w.promotion[p, day] else "regular"
                for s in range(w.s):
                    self._price(s, p, published, day, float(w.scheduled[p, day]), reason)

    def finish(self, days: int) -> None:
        """Write the last held-back uploads and add price changes of products nobody listed."""
        w, rng = self.w, self.rng
        self._flush(np.iinfo(np.int64).max)
        for _ in range(rng.binomial(len(self.out.prices), PRICE_UNKNOWN)):
            day = int(rng.integers(1, days))
            published = _datetimes(np.array([(w.day0 + day - 3) * DAY_MS + 6 * HOUR_MS]))[0]
            self.out.prices.append(
                _PriceLine(
                    self._id("PC"),
                    w.store_ids[int(rng.integers(0, w.s))],
                    f"P9{int(rng.integers(0, 100)):02d}",
                    published,
                    1.0,
                    "regular",
                    w.start + timedelta(days=day),
                )
            )
            self.truth.dead("price_change", "unknown reference")


def _datetimes(utc_ms: np.ndarray) -> list[datetime]:
    return [datetime.fromtimestamp(ms / 1000, UTC) for ms in utc_ms.tolist()]


class _Progress:
    """Turns a fraction done into increments that add up to `total`."""

    def __init__(self, total: int, advance: Callable[[int], None] | None) -> None:
        self.total = total
        self.sent = 0
        self.advance = advance

    def to(self, fraction: float) -> None:
        due = min(self.total, int(self.total * fraction))
        if self.advance is not None and due > self.sent:
            self.advance(due - self.sent)
        self.sent = max(self.sent, due)


def stores_for(n_sales: int, days: int) -> int:
    """How many stores make about `n_sales` receipt lines over `days` days."""
    per_store_day = float(sum(p.demand / p.line for p in CATALOGUE)) * 0.95
    return max(1, round(n_sales / (per_store_day * days)))


def simulate_store(
    out_dir: Path,
    *,
    n_sales: int = 400_000,
    days: int = 182,
    seed: int = 7,
    fmt: Literal["parquet", "jsonl"] = "parquet",
    start: date = date(2025, 6, 2),
    progress: Callable[[int], None] | None = None,
) -> StoreSimulation:
    """Simulate about `n_sales` receipt lines over `days` days from `start` and write every feed.

    The number of stores follows from `n_sales` and `days`; the catalogue is fixed. Price changes
    are written as ``fmt``; the other feeds have the format their source system uses.
    `progress` receives increments that add up to `n_sales`.
    """
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt must be 'parquet' or 'jsonl', not {fmt!r}")
    if days < MIN_DAYS:
        raise ValueError(f"days must be at least {MIN_DAYS} (four weeks of history and a week to forecast), not {days}")
    if n_sales < 1_000:
        raise ValueError(f"n_sales must be at least 1,000, not {n_sales}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    world = _World(stores_for(n_sales, days), days, start, seed, rng)
    _write_reference(world, out_dir)
    writers = _Writers(out_dir, fmt)
    sim = _Simulation(world, writers, rng)
    tracker = _Progress(n_sales, progress)
    try:
        sim.scheduled_prices(days)
        for d in range(days):
            sim.run_day(d)
            tracker.to(0.97 * (d + 1) / days)
        sim.finish(days)
    finally:
        writers.close()
    sim.truth.records = dict(writers.records)
    truth = sim.truth.as_dict()
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    tracker.to(1.0)
    return StoreSimulation(out_dir, world.s, world.p, days, writers.records["sale"], truth)


def _write_reference(world: _World, folder: Path) -> None:
    with (folder / "products.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "product_id",
                "name",
                "category",
                "unit",
                "shelf_life_days",
                "base_price",
                "unit_cost",
                "case_size",
                "max_sale_qty",
            ]
        )
        for p in world.products:
            writer.writerow(
                [p.product_id, p.name, p.category, p.unit, p.shelf_life, p.price, p.cost, p.case, p.max_line]
            )
    with (folder / "stores.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["store_id", "timezone"])
        writer.writerows(zip(world.store_ids, world.timezones, strict=True))
