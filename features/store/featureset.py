"""Store-waste features: one row per store × product × day, the day before it happens.

One keyed stage, keyed by store. Sales, deliveries and stock counts of a product add to that
product's tally of their business day (the local date in the store's time zone); price changes
join the product's price schedule. When the back office closes a business day D (a `day_close`
event, the end-of-day report), every product of the store rolls D into its history: deliveries
join the stock as batches with their best-before day, sales take stock first in first out, a
closing count corrects the stock, and what expires at the end of D is waste. Then one row per
product describes tomorrow, T = D + 1, with what is known at D's close: demand lags and rolling
means over 7 and 28 days, stock on hand and how much of it expires tomorrow, recent waste and
stock-outs, tomorrow's scheduled price against the base price, the weekday and the season. The
report's units sold per product are the labels: the label of the row for T arrives with T's close.

A day closes at a fixed cut-off, 04:00 local time the next morning: a sale uploaded after its
day's cut-off is rejected as late, so late uploads never change a row already emitted, in
batch and stream alike. Within the cut-off the order of arrival does not matter: a day's
tallies are integer sums (thousandths of a unit), so a sale uploaded after midnight lands in
its own day exactly as if it had arrived on time. Repeated sales and delivery lines (same id
within an open day) are counted and dropped, as are stock events for a day already closed; a
row carries both counts for the product since the previous close.

Personal fields of the POS feed (cashier, loyalty card) are dropped before the stage: state,
changelogs and rows hold none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from features.depersonalize import Policy
from features.featureset import FeatureSet, InvalidEvent, Record, Stage, to_ms
from features.state import State
from features.store import lookups as lookups_module
from features.store import schemas as schemas_module
from features.store.lookups import CATEGORIES, Product, Store, day_date, day_number
from features.store.schemas import DayClose, Delivery, PriceChange, Sale, StockCount

HISTORY_DAYS = 28
RECENT_DAYS = 7
LAGS: tuple[int, ...] = (1, 2, 7, 14, 21, 28)
SAME_WEEKDAY_LAGS: tuple[int, ...] = (7, 14, 21, 28)
MAX_COVER_DAYS = 60.0
MAX_DAYS_SINCE_CHANGE = 60
MILLI = 1000
"""Quantities are tallied in integer thousandths of a unit: sums do not depend on arrival order."""

PRICE_FEATURE = "price_ratio"
PROMOTION_FEATURE = "promotion"
PRICE_SINCE_FEATURE = "days_since_price_change"

FEATURES: tuple[str, ...] = (
    *(f"dow_{d}" for d in range(7)),
    "doy_sin",
    "doy_cos",
    "shelf_life_days",
    "sold_by_weight",
    *(f"category_{c}" for c in (*CATEGORIES, "other")),
    "history_days",
    *(f"lag_{k}" for k in LAGS),
    "mean_7",
    "mean_28",
    "std_28",
    "same_weekday_mean",
    "zero_share_28",
    "trend_7_28",
    "on_hand",
    "expiring_1d",
    "expiring_3d",
    "days_to_expiry",
    "cover_days",
    "waste_7",
    "stockout_days_7",
    PRICE_FEATURE,
    "price_ratio_prev",
    PROMOTION_FEATURE,
    PRICE_SINCE_FEATURE,
)


class StoreFeatureSet(FeatureSet):
    """Features for forecasting tomorrow's demand of every product of a store, at the day's close.

    Parameters
    ----------
    products:
        The product master (unit, shelf life, prices, case size). An event naming a product
        missing from it is rejected as a dead letter.
    stores:
        The store list with each store's time zone, which defines its business days.

    Nothing is pseudonymized, so no secret is needed: the only personal fields, the POS feed's
    cashier and loyalty card, are dropped outright.
    """

    name: ClassVar[str] = "store"
    schemas: ClassVar[Mapping[str, type[msgspec.Struct]]] = {
        "sale": Sale,
        "delivery": Delivery,
        "stock_count": StockCount,
        "price_change": PriceChange,
        "day_close": DayClose,
    }
    kind_order: ClassVar[Mapping[str, int]] = {
        "price_change": 0,
        "delivery": 1,
        "stock_count": 2,
        "sale": 3,
        "day_close": 4,
    }
    policies: ClassVar[Mapping[str, Policy]] = {
        **{
            f: Policy.KEEP
            for f in (
                "sale_id",
                "store_id",
                "product_id",
                "ts",
                "sent_at",
                "quantity",
                "unit",
                "delivery_id",
                "delivered_at",
                "best_before",
                "count_id",
                "counted_at",
                "change_id",
                "published_at",
                "effective_day",
                "price",
                "reason",
                "business_day",
                "units_sold",
            )
        },
        "cashier": Policy.DROP,
        "loyalty_card": Policy.DROP,
    }
    feature_names: ClassVar[tuple[str, ...]] = FEATURES
    columns: ClassVar[Mapping[str, str]] = {
        "row_id": "str",
        "series_id": "str",
        "store_id": "str",
        "product_id": "str",
        "category": "str",
        "unit": "str",
        "day": "ts_ms",
        "event_time": "ts_ms",
        "price": "float",
        "base_price": "float",
        "unit_cost": "float",
        "dq_duplicates": "int",
        "dq_late": "int",
        **{name: "float" for name in FEATURES},
    }
    label_columns: ClassVar[Mapping[str, str]] = {"row_id": "str", "units_sold": "float", "known_at": "ts_ms"}
    entity_column: ClassVar[str] = "series_id"
    row_id: ClassVar[str] = "row_id"
    modules = (schemas_module, lookups_module)

    def __init__(self, products: Mapping[str, Product], stores: Mapping[str, Store]) -> None:
        super().__init__()
        self.products = products
        self.stores = stores
        self._stages = (Stage("store", _store_key, self._store_stage),)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    # ------------------------------------------------------------------ validation

    def check(self, event: msgspec.Struct) -> None:
        store_id: str = event.store_id  # type: ignore[attr-defined]
        store = self.stores.get(store_id)
        if store is None:
            raise InvalidEvent(f"unknown reference: store_id {store_id!r} is not in the store list")
        if isinstance(event, DayClose):
            unknown = sorted(p for p in event.units_sold if p not in self.products)
            if unknown:
                raise InvalidEvent(
                    f"unknown reference: product_ids {unknown[:5]} of the report are not in the product master"
                )
            return
        product = self._product(event.product_id)  # type: ignore[attr-defined]
        if isinstance(event, PriceChange):
            return
        quantity: float = event.quantity  # type: ignore[attr-defined]
        if isinstance(event, StockCount) and quantity < 0:
            raise InvalidEvent(f"negative stock: a count of {quantity:g} {event.unit} of {product.product_id}")
        units = _to_units(product, quantity, event.unit)  # type: ignore[attr-defined]
        if isinstance(event, Sale):
            if units > product.max_sale_qty:
                raise InvalidEvent(
                    f"wrong unit: {quantity:g} {event.unit} of {product.product_id} is {units:g} {product.unit} on one "
                    f"receipt line, more than the plausible {product.max_sale_qty:g} (grams sent as kilograms?)"
                )
            day = store.calendar.day(to_ms(event.ts))
            cutoff = store.calendar.cutoff_ms(day)
            if event.sent_at > cutoff:
                raise InvalidEvent(
                    f"late: sale of business day {day_date(day)} uploaded {(event.sent_at - cutoff) / 3_600_000:.1f} h "
                    "after the day's cut-off, when the day was closed"
                )

    def _product(self, product_id: str) -> Product:
        product = self.products.get(product_id)
        if product is None:
            raise InvalidEvent(f"unknown reference: product_id {product_id!r} is not in the product master")
        return product

    def event_time_ms(self, event: msgspec.Struct) -> int:
        if isinstance(event, Sale):
            return to_ms(event.ts)
        if isinstance(event, Delivery):
            return to_ms(event.delivered_at)
        if isinstance(event, StockCount):
            return to_ms(event.counted_at)
        if isinstance(event, PriceChange):
            return to_ms(event.published_at)
        assert isinstance(event, DayClose)
        return self.stores[event.store_id].calendar.cutoff_ms(day_number(event.business_day))

    # ------------------------------------------------------------------ depersonalization

    def depersonalize(self, event: msgspec.Struct) -> Record:
        """Identifiers of goods and places are kept; the cashier and the loyalty card are dropped."""
        t = self.event_time_ms(event)
        if isinstance(event, DayClose):
            return {
                "kind": "day_close",
                "t": t,
                "day": day_number(event.business_day),
                "store_id": event.store_id,
                "units_sold": dict(event.units_sold),
            }
        store_id: str = event.store_id  # type: ignore[attr-defined]
        product = self.products[event.product_id]  # type: ignore[attr-defined]
        if isinstance(event, PriceChange):
            return {
                "kind": "price_change",
                "t": t,
                "store_id": store_id,
                "product_id": product.product_id,
                "effective": day_number(event.effective_day),
                "price": event.price,
                "promotion": event.reason == "promotion",
            }
        record: Record = {
            "kind": event.__struct_config__.tag,
            "t": t,
            "day": self.stores[store_id].calendar.day(t),
            "store_id": store_id,
            "product_id": product.product_id,
            "milli": round(_to_units(product, event.quantity, event.unit) * MILLI),  # type: ignore[attr-defined]
        }
        if isinstance(event, Sale):
            record["id"] = event.sale_id
        elif isinstance(event, Delivery):
            record |= {"id": event.delivery_id, "expiry": day_number(event.best_before)}
        return record

    def label_rows(self, record: Record) -> list[Record]:
        """The end-of-day report: units sold per product, the label of that day's rows."""
        if record["kind"] != "day_close":
            return []
        store, day, known_at = record["store_id"], record["day"], record["t"]
        iso = day_date(day).isoformat()
        return [
            {"row_id": f"{store}|{product}|{iso}", "units_sold": units, "known_at": known_at}
            for product, units in sorted(record["units_sold"].items())
        ]

    # ------------------------------------------------------------------ the stage

    def _store_stage(self, record: Record, state: State) -> list[Record]:
        kind = record["kind"]
        if kind == "day_close":
            return self._close(record, state)
        product_id: str = record["product_id"]
        if kind == "price_change":
            history = _history(state, product_id)
            history["prices"].append([record["effective"], record["t"], record["price"], record["promotion"]])
            state.set(f"h:{product_id}", history)
            return []
        key = f"o:{product_id}"
        tallies = state.get(key)
        if tallies is None:
            tallies = {"days": {}, "duplicate": 0, "late": 0}
            products = state.get("products") or {}
            products[product_id] = 1
            state.set("products", products)
        closed = state.get("closed")
        if closed is not None and record["day"] <= closed:
            tallies["late"] += 1
        else:
            day = tallies["days"].setdefault(str(record["day"]), {"sold": 0, "in": [], "count": None, "ids": {}})
            if kind == "stock_count":
                if day["count"] is None or record["t"] >= day["count"][0]:
                    day["count"] = [record["t"], record["milli"]]
            elif record["id"] in day["ids"]:
                tallies["duplicate"] += 1
            else:
                day["ids"][record["id"]] = 1
                if kind == "sale":
                    day["sold"] += record["milli"]
                else:
                    day["in"].append([record["expiry"], record["milli"]])
        state.set(key, tallies)
        return []

    def _close(self, record: Record, state: State) -> list[Record]:
        """Roll every product of the store through the closed day; emit tomorrow's rows."""
        day: int = record["day"]
        closed = state.get("closed")
        if closed is not None and day <= closed:
            return []
        store = self.stores[record["store_id"]]
        products = sorted(set(state.get("products") or {}) | set(record["units_sold"]))
        rows = [self._close_product(store, self.products[p], day, record["t"], state) for p in products]
        state.set("closed", day)
        return rows

    def _close_product(self, store: Store, product: Product, day: int, cutoff: int, state: State) -> Record:
        pid = product.product_id
        tallies = state.get(f"o:{pid}") or {"days": {}, "duplicate": 0, "late": 0}
        history = _history(state, pid)
        open_days = [int(d) for d in tallies["days"] if int(d) <= day]
        start = history["end"] + 1 if history["end"] is not None else min([*open_days, day])
        for d in range(start, day + 1):
            _roll(history, tallies["days"].pop(str(d), None), d, product)
        row = self._row(store, product, history, day + 1, cutoff, tallies)
        tallies["duplicate"] = tallies["late"] = 0
        state.set(f"o:{pid}", tallies)
        state.set(f"h:{pid}", history)
        return row

    def _row(
        self, store: Store, product: Product, history: dict[str, Any], day: int, cutoff: int, tallies: dict[str, Any]
    ) -> Record:
        """The row for `day` (tomorrow), from the history through the day before it."""
        units = [x / MILLI for x in history["hist"]]
        n = len(units)
        mean_all = sum(units) / n if n else 0.0
        recent = units[-RECENT_DAYS:]
        mean_7 = sum(recent) / len(recent) if recent else 0.0
        std_28 = math.sqrt(sum((x - mean_all) ** 2 for x in units) / n) if n else 0.0
        same_weekday = [units[-k] for k in SAME_WEEKDAY_LAGS if n >= k]
        batches = history["batches"]
        on_hand = sum(q for _, q in batches) / MILLI
        price, promotion, effective = _price_at(history["prices"], day, product.base_price)
        previous, _, _ = _price_at(history["prices"], day - 1, product.base_price)
        category = product.category if product.category in CATEGORIES else "other"
        weekday = (day + 3) % 7
        season = 2 * math.pi * day_date(day).timetuple().tm_yday / 365.25
        cover = min(on_hand / mean_7, MAX_COVER_DAYS) if mean_7 > 0 else (MAX_COVER_DAYS if on_hand > 0 else 0.0)
        iso = day_date(day).isoformat()
        return {
            "row_id": f"{store.store_id}|{product.product_id}|{iso}",
            "series_id": f"{store.store_id}|{product.product_id}",
            "store_id": store.store_id,
            "product_id": product.product_id,
            "category": category,
            "unit": product.unit,
            "day": day * 86_400_000,
            "event_time": cutoff,
            "price": price,
            "base_price": product.base_price,
            "unit_cost": product.unit_cost,
            "dq_duplicates": tallies["duplicate"],
            "dq_late": tallies["late"],
            **_WEEKDAY_ONE_HOT[weekday],
            "doy_sin": math.sin(season),
            "doy_cos": math.cos(season),
            "shelf_life_days": float(product.shelf_life_days),
            "sold_by_weight": float(product.unit == "kg"),
            **_CATEGORY_ONE_HOT[category],
            "history_days": float(n),
            **{f"lag_{k}": units[-k] if n >= k else mean_all for k in LAGS},
            "mean_7": mean_7,
            "mean_28": mean_all,
            "std_28": std_28,
            "same_weekday_mean": sum(same_weekday) / len(same_weekday) if same_weekday else mean_all,
            "zero_share_28": sum(1 for x in units if x == 0) / n if n else 0.0,
            "trend_7_28": mean_7 / mean_all if mean_all > 0 else 1.0,
            "on_hand": on_hand,
            "expiring_1d": sum(q for expiry, q in batches if expiry <= day) / MILLI,
            "expiring_3d": sum(q for expiry, q in batches if expiry <= day + 2) / MILLI,
            "days_to_expiry": float(batches[0][0] - day + 1) if batches else 0.0,
            "cover_days": cover,
            "waste_7": sum(history["waste"]) / MILLI,
            "stockout_days_7": float(sum(history["out"])),
            PRICE_FEATURE: price / product.base_price,
            "price_ratio_prev": previous / product.base_price,
            PROMOTION_FEATURE: float(promotion),
            PRICE_SINCE_FEATURE: float(
                MAX_DAYS_SINCE_CHANGE if effective is None else min(day - effective, MAX_DAYS_SINCE_CHANGE)
            ),
        }


def _store_key(record: Record) -> str:
    return str(record["store_id"])


def _to_units(product: Product, quantity: float, unit: str) -> float:
    """`quantity` of `unit` in the product's own unit, or a `wrong unit` rejection."""
    factor = product.factor(unit)
    if factor is None:
        raise InvalidEvent(
            f"wrong unit: {quantity:g} {unit} of {product.product_id} ({product.name}) cannot be converted to "
            f"{product.unit}; the product master sells it by the {product.unit}"
        )
    return quantity * factor


def _history(state: State, product_id: str) -> dict[str, Any]:
    return state.get(f"h:{product_id}") or {
        "end": None,
        "hist": [],
        "waste": [],
        "out": [],
        "batches": [],
        "prices": [],
    }


def _roll(history: dict[str, Any], tally: dict[str, Any] | None, day: int, product: Product) -> None:
    """Move one product's stock and history through business day `day`.

    Deliveries join the stock as batches, sales take the oldest batches first, a closing count
    replaces the projected stock (missing units leave from the oldest batches, surplus units
    are taken as fresh), and batches whose best-before day is `day` expire as waste.
    """
    batches: list[list[int]] = history["batches"]
    sold = tally["sold"] if tally else 0
    for expiry, milli in tally["in"] if tally else ():
        _add(batches, expiry, milli)
    _take(batches, sold)
    if tally and tally["count"] is not None:
        held = sum(q for _, q in batches)
        counted = tally["count"][1]
        if counted < held:
            _take(batches, held - counted)
        elif counted > held:
            _add(batches, day + product.shelf_life_days - 1, counted - held)
    closing = sum(q for _, q in batches)
    waste = sum(q for expiry, q in batches if expiry <= day)
    history["batches"] = [b for b in batches if b[0] > day]
    _push(history["hist"], sold, HISTORY_DAYS)
    _push(history["waste"], waste, RECENT_DAYS)
    _push(history["out"], int(closing <= 0), RECENT_DAYS)
    history["prices"] = _prune(history["prices"], day)
    history["end"] = day


def _add(batches: list[list[int]], expiry: int, milli: int) -> None:
    for batch in batches:
        if batch[0] == expiry:
            batch[1] += milli
            return
    batches.append([expiry, milli])
    batches.sort()


def _take(batches: list[list[int]], milli: int) -> None:
    """Remove `milli` from the oldest batches first (all of the stock at most)."""
    for batch in batches:
        if milli <= 0:
            break
        take = min(batch[1], milli)
        batch[1] -= take
        milli -= take
    batches[:] = [b for b in batches if b[1] > 0]


def _push(values: list[int], value: int, keep: int) -> None:
    values.append(value)
    if len(values) > keep:
        del values[0]


def _price_at(prices: list[list[Any]], day: int, base: float) -> tuple[float, bool, int | None]:
    """(price, promotion, effective day) in force on `day`: the latest change effective by then.

    Among changes effective the same day the one published last wins, whatever the arrival order.
    """
    best = None
    for entry in prices:
        if entry[0] <= day and (best is None or (entry[0], entry[1]) > (best[0], best[1])):
            best = entry
    if best is None:
        return base, False, None
    return float(best[2]), bool(best[3]), int(best[0])


def _prune(prices: list[list[Any]], day: int) -> list[list[Any]]:
    """Drop changes that can no longer be in force after `day`."""
    current = None
    for entry in prices:
        if entry[0] <= day and (current is None or (entry[0], entry[1]) > (current[0], current[1])):
            current = entry
    return [e for e in prices if e[0] > day or e is current]


def _one_hot(prefix: str, values: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return {v: {f"{prefix}_{other}": float(v == other) for other in values} for v in values}


_CATEGORY_ONE_HOT = _one_hot("category", (*CATEGORIES, "other"))
_WEEKDAY_ONE_HOT = {d: {f"dow_{other}": float(d == other) for other in range(7)} for d in range(7)}
