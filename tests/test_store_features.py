"""Store features, faulty-record handling and the order/markdown policy, against hand-computed values."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from features.featureset import LocalRunner
from features.store import StoreFeatureSet
from features.store.lookups import Calendar, Product, Store, day_number, load_products
from features.store.policy import Spread, decide, markdown_scenario, order_quantity, service_level

ZONE = ZoneInfo("Europe/Stockholm")
D0 = date(2026, 3, 2)  # a Monday; Stockholm is at UTC+1 until the clocks change on 29 March
PRODUCTS = {
    "BREAD": Product("BREAD", "Sourdough loaf", "bakery", "piece", 2, 4.0, 1.5, 10, 20),
    "MILK": Product("MILK", "Whole milk 1 l", "dairy", "piece", 3, 1.5, 0.9, 12, 24),
    "BANANA": Product("BANANA", "Bananas", "produce", "kg", 5, 2.0, 1.0, 18, 15),
}
STORES = {"S1": Store("S1", "Europe/Stockholm", Calendar(ZONE))}


@pytest.fixture
def fs() -> StoreFeatureSet:
    return StoreFeatureSet(PRODUCTS, STORES)


def local(day: int, hour: float) -> datetime:
    """Local time in the store, `day` days after D0."""
    return datetime.combine(D0 + timedelta(days=day), datetime.min.time(), tzinfo=ZONE) + timedelta(hours=hour)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def sale(day: int, qty: float, product: str = "BREAD", unit: str = "piece", hour: float = 10, **over: Any) -> dict:
    sale.n = getattr(sale, "n", 0) + 1  # type: ignore[attr-defined]
    event = {
        "sale_id": f"s{sale.n}",  # type: ignore[attr-defined]
        "store_id": "S1",
        "product_id": product,
        "ts": local(day, hour).isoformat(),
        "sent_at": ms(local(day, hour)) + 30_000,
        "quantity": qty,
        "unit": unit,
        "cashier": "Astrid Lindqvist",
        "loyalty_card": "4000123412341234",
    }
    return event | over


def delivery(day: int, qty: float, best_before: int, product: str = "BREAD", unit: str = "piece", **over: Any) -> dict:
    event = {
        "delivery_id": f"d{day}-{product}-{qty}-{best_before}",
        "store_id": "S1",
        "product_id": product,
        "delivered_at": local(day, 6).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "quantity": qty,
        "unit": unit,
        "best_before": (D0 + timedelta(days=best_before)).isoformat(),
    }
    return event | over


def count(day: int, qty: float, product: str = "BREAD", unit: str = "piece") -> dict:
    return {
        "count_id": f"c{day}-{product}",
        "store_id": "S1",
        "product_id": product,
        "counted_at": local(day, 22.5).isoformat(),
        "quantity": qty,
        "unit": unit,
    }


def price(published: int, effective: int, value: float, reason: str = "markdown", product: str = "BREAD") -> dict:
    return {
        "change_id": f"pc{published}-{effective}-{value}",
        "store_id": "S1",
        "product_id": product,
        "published_at": local(published, 21).isoformat(),
        "effective_day": (D0 + timedelta(days=effective)).isoformat(),
        "price": value,
        "reason": reason,
    }


def close(day: int, **units: float) -> dict:
    return {"store_id": "S1", "business_day": (D0 + timedelta(days=day)).isoformat(), "units_sold": units}


def run(fs: StoreFeatureSet, events: list[tuple[str, dict]]) -> list[dict]:
    """Process events in the given order; every one must be valid. Returns the rows by product."""
    runner = LocalRunner(fs)
    rows = []
    for kind, event in events:
        outcome = runner.process(kind, event)
        assert outcome.dead_letter is None, outcome.dead_letter
        rows.extend(outcome.rows)
    return rows


def rejected(fs: StoreFeatureSet, kind: str, event: dict | bytes) -> str:
    outcome = LocalRunner(fs).process(kind, event)
    assert outcome.dead_letter is not None and not outcome.rows
    return outcome.dead_letter.reason


def by_day(rows: list[dict], product: str = "BREAD") -> dict[date, dict]:
    epoch = date(1970, 1, 1)
    return {epoch + timedelta(days=r["day"] // 86_400_000): r for r in rows if r["product_id"] == product}


def test_a_closed_day_gives_tomorrows_row_and_its_label(fs) -> None:
    runner = LocalRunner(fs)
    for kind, event in [
        ("delivery", delivery(0, 2, best_before=1, unit="case")),
        ("sale", sale(0, 3)),
        ("sale", sale(0, 2, hour=17)),
    ]:
        assert runner.process(kind, event).rows == []
    outcome = runner.process("day_close", close(0, BREAD=5.0))
    cutoff = ms(local(1, 4))  # the day closes at 04:00 the next morning
    assert outcome.labels == [{"row_id": "S1|BREAD|2026-03-02", "units_sold": 5.0, "known_at": cutoff}]
    [row] = outcome.rows
    assert row["row_id"] == "S1|BREAD|2026-03-03" and row["series_id"] == "S1|BREAD"
    assert row["event_time"] == cutoff and row["day"] == day_number(D0 + timedelta(days=1)) * 86_400_000
    assert row["dow_1"] == 1.0 and sum(row[f"dow_{d}"] for d in range(7)) == 1.0  # Tuesday
    assert row["history_days"] == 1.0
    assert all(row[f"lag_{k}"] == 5.0 for k in (1, 2, 7, 14, 21, 28))  # one day of history stands in for all
    assert (row["mean_7"], row["mean_28"], row["std_28"], row["trend_7_28"]) == (5.0, 5.0, 0.0, 1.0)
    assert row["on_hand"] == 15.0  # two cases of ten, five sold
    assert row["expiring_1d"] == row["expiring_3d"] == 15.0 and row["days_to_expiry"] == 1.0
    assert row["cover_days"] == 3.0 and row["waste_7"] == 0.0 and row["stockout_days_7"] == 0.0
    assert row["price_ratio"] == 1.0 and row["price"] == 4.0 and row["days_since_price_change"] == 60.0
    assert row["category_bakery"] == 1.0 and row["shelf_life_days"] == 2.0 and row["sold_by_weight"] == 0.0
    doy = (D0 + timedelta(days=1)).timetuple().tm_yday
    assert row["doy_sin"] == pytest.approx(math.sin(2 * math.pi * doy / 365.25))
    assert not {"cashier", "loyalty_card"} & set(row)


def test_lags_and_rolling_windows_over_four_weeks(fs) -> None:
    units = [float(d % 7) for d in range(30)]  # 0 on day 0, 7, 14, 21, 28
    events: list[tuple[str, dict]] = []
    for d, u in enumerate(units):
        if u:
            events.append(("sale", sale(d, u)))
        events.append(("day_close", close(d, BREAD=u)))
    row = by_day(run(fs, events))[D0 + timedelta(days=30)]
    last28 = units[2:30]
    assert row["history_days"] == 28.0
    assert row["lag_1"] == units[29] == 1.0 and row["lag_2"] == units[28] == 0.0
    assert (row["lag_7"], row["lag_14"], row["lag_21"], row["lag_28"]) == (units[23], units[16], units[9], units[2])
    assert row["mean_7"] == pytest.approx(sum(units[23:30]) / 7)
    assert row["mean_28"] == pytest.approx(sum(last28) / 28)
    mean = sum(last28) / 28
    assert row["std_28"] == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in last28) / 28))
    assert row["same_weekday_mean"] == pytest.approx((units[23] + units[16] + units[9] + units[2]) / 4)
    assert row["zero_share_28"] == pytest.approx(4 / 28)
    assert row["trend_7_28"] == pytest.approx(row["mean_7"] / row["mean_28"])


def test_stock_is_sold_first_in_first_out_expires_as_waste_and_counts_correct_it(fs) -> None:
    rows = by_day(
        run(
            fs,
            [
                ("delivery", delivery(0, 10, best_before=2, product="MILK")),
                ("day_close", close(0, MILK=0.0)),
                ("delivery", delivery(1, 10, best_before=3, product="MILK")),
                ("sale", sale(1, 12, product="MILK")),  # 10 from the older batch, 2 from the newer
                ("day_close", close(1, MILK=12.0)),
                ("day_close", close(2, MILK=0.0)),
                ("sale", sale(3, 3, product="MILK")),  # 5 of the 8 left expire tonight
                ("day_close", close(3, MILK=3.0)),
                ("delivery", delivery(4, 10, best_before=6, product="MILK")),
                ("stock_count", count(4, 7, product="MILK")),  # 3 went missing
                ("day_close", close(4, MILK=0.0)),
                ("stock_count", count(5, 12, product="MILK")),  # 5 more than the books say
                ("day_close", close(5, MILK=0.0)),
            ],
        ),
        "MILK",
    )
    day = {n: rows[D0 + timedelta(days=n)] for n in range(1, 7)}
    assert day[1]["on_hand"] == 10.0 and day[1]["expiring_3d"] == 10.0 and day[1]["days_to_expiry"] == 2.0
    assert day[2]["on_hand"] == 8.0 and day[2]["expiring_1d"] == 0.0 and day[2]["days_to_expiry"] == 2.0
    assert day[3]["expiring_1d"] == 8.0 and day[3]["waste_7"] == 0.0
    assert day[4]["on_hand"] == 0.0 and day[4]["waste_7"] == 5.0 and day[4]["stockout_days_7"] == 0.0
    assert day[5]["on_hand"] == 7.0 and day[5]["expiring_1d"] == 0.0
    assert day[6]["on_hand"] == 12.0  # the surplus counts as fresh: expires day 5 + 3 - 1 = 7
    assert day[6]["expiring_1d"] == 7.0 and day[6]["expiring_3d"] == 12.0 and day[6]["days_to_expiry"] == 1.0


def test_selling_more_than_the_books_hold_empties_the_shelf_and_counts_a_stockout(fs) -> None:
    rows = by_day(
        run(
            fs,
            [
                ("delivery", delivery(0, 5, best_before=1)),
                ("sale", sale(0, 7)),
                ("day_close", close(0, BREAD=7.0)),
            ],
        )
    )
    row = rows[D0 + timedelta(days=1)]
    assert row["lag_1"] == 7.0 and row["on_hand"] == 0.0 and row["stockout_days_7"] == 1.0
    assert row["cover_days"] == 0.0 and row["days_to_expiry"] == 0.0


def test_units_are_converted_when_unambiguous(fs) -> None:
    rows = run(
        fs,
        [
            ("sale", sale(0, 750, product="BANANA", unit="g")),
            ("sale", sale(0, 1.25, product="BANANA", unit="kg")),
            ("sale", sale(0, 1, unit="case")),  # ten loaves
            ("day_close", close(0, BANANA=2.0, BREAD=10.0)),
        ],
    )
    assert by_day(rows, "BANANA")[D0 + timedelta(days=1)]["lag_1"] == 2.0
    assert by_day(rows)[D0 + timedelta(days=1)]["lag_1"] == 10.0


@pytest.mark.parametrize(
    ("kind", "event", "reason"),
    [
        ("sale", sale(0, 2, unit="kg"), "wrong unit: 2 kg of BREAD (Sourdough loaf) cannot be converted to piece"),
        ("sale", sale(0, 1, product="BANANA", unit="piece"), "wrong unit: 1 piece of BANANA"),
        ("sale", sale(0, 750, product="BANANA", unit="kg"), "plausible 15 (grams sent as kilograms?)"),
        ("delivery", delivery(0, 4, 2, unit="g"), "wrong unit: 4 g of BREAD"),
        ("stock_count", count(0, -3), "negative stock: a count of -3 piece of BREAD"),
        ("stock_count", count(0, 3, unit="kg"), "wrong unit: 3 kg of BREAD"),
        ("sale", sale(0, 1, product="CAVIAR"), "unknown reference: product_id 'CAVIAR' is not in the product master"),
        ("sale", sale(0, 1, store_id="S9"), "unknown reference: store_id 'S9' is not in the store list"),
        ("day_close", close(0, BREAD=1.0, CAVIAR=2.0), "unknown reference: product_ids ['CAVIAR'] of the report"),
        ("sale", {k: v for k, v in sale(0, 1).items() if k != "quantity"}, "missing required field `quantity`"),
        ("sale", sale(0, 0), "Expected `float` > 0.0 - at `$.quantity`"),
        ("delivery", delivery(0, 4, 2) | {"best_before": "soon"}, "Invalid RFC3339 encoded date - at `$.best_before`"),
        ("price_change", price(0, 1, 2.0, reason="clearance"), "Invalid enum value 'clearance' - at `$.reason`"),
    ],
)
def test_faulty_records_are_rejected_with_their_reason(fs, kind: str, event: dict, reason: str) -> None:
    got = rejected(fs, kind, event)
    assert reason in got, got


def test_a_sale_uploaded_after_its_days_cutoff_is_late_and_one_after_midnight_is_not(fs) -> None:
    cutoff = ms(local(1, 4))
    reason = rejected(fs, "sale", sale(0, 1, hour=21, sent_at=cutoff + 3_600_000))
    assert (
        reason
        == "late: sale of business day 2026-03-02 uploaded 1.0 h after the day's cut-off, when the day was closed"
    )
    rows = run(
        fs,
        [
            ("sale", sale(0, 2, hour=21)),
            ("sale", sale(1, 5, hour=9)),  # tomorrow's sale arrives first
            ("sale", sale(0, 1, hour=21.5, sent_at=cutoff)),  # uploaded at the cut-off itself: in time
            ("day_close", close(0, BREAD=3.0)),
        ],
    )
    assert by_day(rows)[D0 + timedelta(days=1)]["lag_1"] == 3.0


def test_business_days_follow_the_store_time_zone(fs) -> None:
    # 23:30 local on Monday is 22:30 UTC Monday; 00:30 local on Tuesday is 23:30 UTC Monday
    late_evening = sale(0, 1, hour=23.5)
    after_midnight = sale(1, 4, hour=0.5)
    assert datetime.fromisoformat(after_midnight["ts"]).astimezone(UTC).date() == D0
    rows = run(fs, [("sale", late_evening), ("sale", after_midnight), ("day_close", close(0)), ("day_close", close(1))])
    days = by_day(rows)
    assert days[D0 + timedelta(days=1)]["lag_1"] == 1.0
    assert days[D0 + timedelta(days=2)]["lag_1"] == 4.0


def test_repeated_lines_are_dropped_and_counted_on_the_next_row(fs) -> None:
    first, again = sale(0, 2), None
    again = dict(first, sent_at=first["sent_at"] + 600_000)
    rows = run(
        fs,
        [
            ("delivery", delivery(0, 10, best_before=1)),
            ("delivery", delivery(0, 10, best_before=1)),
            ("sale", first),
            ("sale", again),
            ("day_close", close(0, BREAD=2.0)),
            ("day_close", close(1, BREAD=0.0)),
        ],
    )
    days = by_day(rows)
    row = days[D0 + timedelta(days=1)]
    assert (row["lag_1"], row["on_hand"], row["dq_duplicates"], row["dq_late"]) == (2.0, 8.0, 2, 0)
    assert days[D0 + timedelta(days=2)]["dq_duplicates"] == 0


def test_stock_events_of_a_closed_day_are_dropped_and_counted(fs) -> None:
    rows = run(
        fs,
        [
            ("sale", sale(0, 1)),
            ("day_close", close(0, BREAD=1.0)),
            ("delivery", delivery(0, 10, best_before=3)),  # reaches the stage after its day closed
            ("day_close", close(1, BREAD=0.0)),
        ],
    )
    row = by_day(rows)[D0 + timedelta(days=2)]
    assert (row["on_hand"], row["dq_late"]) == (0.0, 1)


def test_a_repeated_day_close_changes_nothing(fs) -> None:
    runner = LocalRunner(fs)
    runner.process("sale", sale(0, 1))
    first = runner.process("day_close", close(0, BREAD=1.0))
    again = runner.process("day_close", close(0, BREAD=1.0))
    assert len(first.rows) == 1 and again.rows == [] and again.labels == first.labels


def test_a_missing_day_close_is_caught_up_by_the_next_one(fs) -> None:
    rows = by_day(
        run(
            fs,
            [
                ("sale", sale(0, 1)),
                ("day_close", close(0, BREAD=1.0)),
                ("sale", sale(1, 2)),  # day 1's report never arrives
                ("sale", sale(2, 3)),
                ("day_close", close(2, BREAD=3.0)),
            ],
        )
    )
    assert set(rows) == {D0 + timedelta(days=1), D0 + timedelta(days=3)}
    row = rows[D0 + timedelta(days=3)]
    assert (row["lag_1"], row["lag_2"], row["history_days"]) == (3.0, 2.0, 3.0)


def test_arrival_order_within_the_cutoff_does_not_change_rows(fs) -> None:
    events = [
        ("price_change", price(0, 1, 3.0)),
        ("delivery", delivery(0, 20, best_before=2)),
        ("sale", sale(0, 3, hour=9)),
        ("sale", sale(0, 0.5, product="BANANA", unit="kg", hour=12)),
        ("sale", sale(0, 2, hour=21.9, sent_at=ms(local(1, 2)))),  # uploaded after midnight
        ("sale", sale(0, 0.25, product="BANANA", unit="kg", hour=20, sent_at=ms(local(1, 1)))),
        ("stock_count", count(0, 14)),
        ("delivery", delivery(1, 10, best_before=3)),
        ("sale", sale(1, 4, hour=8)),
        ("day_close", close(0, BREAD=5.0, BANANA=0.75)),
        ("day_close", close(1, BREAD=4.0, BANANA=0.0)),
    ]

    def arrival(item: tuple[str, dict]) -> tuple[int, int]:
        kind, event = item
        parsed = fs.parse(kind, event)
        at = event["sent_at"] if kind == "sale" else fs.event_time_ms(parsed)
        return at, fs.kind_order[kind]

    def event_time(item: tuple[str, dict]) -> tuple[int, int]:
        return fs.event_time_ms(fs.parse(*item)), fs.kind_order[item[0]]

    in_time_order = run(fs, sorted(events, key=event_time))
    as_arrived = run(fs, sorted(events, key=arrival))
    assert in_time_order == as_arrived
    row = by_day(in_time_order)[D0 + timedelta(days=1)]
    assert (row["lag_1"], row["on_hand"], row["price_ratio"], row["price_ratio_prev"]) == (5.0, 14.0, 0.75, 1.0)
    assert by_day(in_time_order, "BANANA")[D0 + timedelta(days=1)]["lag_1"] == 0.75


def test_price_schedule_promotions_and_the_latest_published_change(fs) -> None:
    rows = by_day(
        run(
            fs,
            [
                ("price_change", price(0, 2, 3.2, reason="promotion")),
                ("price_change", price(0, 4, 4.0, reason="regular")),
                ("price_change", price(1, 2, 3.0, reason="promotion")),  # published later: wins for day 2
                ("day_close", close(0, BREAD=0.0)),
                ("day_close", close(1, BREAD=0.0)),
                ("day_close", close(2, BREAD=0.0)),
                ("day_close", close(3, BREAD=0.0)),
                ("day_close", close(4, BREAD=0.0)),
            ],
        )
    )
    day = {n: rows[D0 + timedelta(days=n)] for n in range(1, 6)}
    assert (day[1]["price_ratio"], day[1]["promotion"], day[1]["days_since_price_change"]) == (1.0, 0.0, 60.0)
    assert (day[2]["price_ratio"], day[2]["promotion"], day[2]["days_since_price_change"]) == (0.75, 1.0, 0.0)
    assert (day[3]["price_ratio"], day[3]["price_ratio_prev"], day[3]["days_since_price_change"]) == (0.75, 0.75, 1.0)
    assert (day[4]["price_ratio"], day[4]["promotion"], day[4]["price"]) == (1.0, 0.0, 4.0)
    assert day[5]["days_since_price_change"] == 1.0


def test_personal_fields_never_reach_a_record_a_row_or_a_dead_letter(fs) -> None:
    record = fs.depersonalize(fs.parse("sale", sale(0, 1)))
    assert "Astrid" not in json.dumps(record) and "4000123412341234" not in json.dumps(record)
    assert fs.personal_fields == {"cashier", "loyalty_card"}
    raw = msgspec.json.encode(sale(0, 1, unit="litre"))
    outcome = LocalRunner(fs).process("sale", raw)
    assert outcome.dead_letter is not None
    assert "Astrid" not in outcome.dead_letter.payload and "4000123412341234" not in outcome.dead_letter.payload
    as_dict = LocalRunner(fs).process("sale", sale(0, 1, unit="litre"))
    assert as_dict.dead_letter is not None and "Astrid" not in as_dict.dead_letter.payload


def test_every_schema_field_has_a_declared_policy(fs) -> None:
    fields = {f for schema in fs.schemas.values() for f in schema.__struct_fields__}
    assert fields == set(fs.policies)


def test_product_master_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "products.csv"
    header = "product_id,name,category,unit,shelf_life_days,base_price,unit_cost,case_size,max_sale_qty\n"
    path.write_text(header + "P1,Milk,dairy,litre,5,1.0,0.5,12,20\n")
    with pytest.raises(ValueError, match=r"products.csv:2: bad product master row: unit 'litre'"):
        load_products(path)
    path.write_text("product_id,name\nP1,Milk\n")
    with pytest.raises(ValueError, match="lacks columns"):
        load_products(path)


# ----------------------------------------------------------------------------- the policy


def test_spread_quantiles_come_from_scaled_residuals() -> None:
    spread = Spread.fit([10.0, 14.0, 6.0, 10.0], [10.0, 10.0, 10.0, 10.0])
    assert len(spread.quantiles) == 50 and list(spread.quantiles) == sorted(spread.quantiles)
    assert spread.quantiles[0] == pytest.approx(-4 / math.sqrt(10)) and spread.quantiles[-1] == pytest.approx(
        4 / math.sqrt(10)
    )
    assert spread.quantile(10.0, 0.5) == pytest.approx(10.0)
    assert spread.widened(2.0).quantiles[-1] == pytest.approx(8 / math.sqrt(10))
    flat = Spread((0.0,) * 50)
    assert flat.shortage(6.0, 4.0) == 2.0 and flat.leftover(6.0, 9.0) == 3.0
    assert Spread((-1.0, 1.0)).outcomes(4.0) == [2.0, 6.0]
    assert Spread((-1.0, 1.0)).shortage(4.0, 3.0) == pytest.approx(1.5)  # (0 + 3) / 2


def test_service_level_and_order_quantity() -> None:
    # bread: margin 2.5 + goodwill 2.0 against a leftover costing 1.5 / 2 days
    assert service_level(4.0, 1.5, 2) == pytest.approx(4.5 / 5.25)
    flat = Spread((0.0,) * 50)
    assert order_quantity(12.3, flat, 4.0, 0.9, 1.0) == 8.0
    assert order_quantity(12.3, flat, 4.0, 0.9, 0.1) == pytest.approx(8.3)
    assert order_quantity(3.0, flat, 5.0, 0.9, 1.0) == 0.0
    wide = Spread((-2.0, 0.0, 2.0))
    assert order_quantity(4.0, wide, 0.0, 5 / 6, 1.0) == 8.0  # the top outcome: 4 + 2·√4


def test_a_markdown_is_chosen_when_stock_would_expire_and_demand_answers_the_price() -> None:
    flat = Spread((0.0,) * 50)
    common = {"spread": flat, "price": 4.0, "unit_cost": 1.5, "shelf_life_days": 2, "step": 1.0}
    none_expiring = decide({0.0: 4.0, 0.35: 9.0}, usable_on_hand=10.0, expiring=0.0, **common)
    assert (none_expiring.markdown, none_expiring.order_qty, none_expiring.expected_waste) == (0.0, 0.0, 0.0)
    # ten loaves expire tomorrow; at full price four sell, at -35 % nine
    cut = decide({0.0: 4.0, 0.2: 6.0, 0.35: 9.0, 0.5: 10.0}, usable_on_hand=10.0, expiring=10.0, **common)
    # margins: 0 % 16 - 1.5·6 = 7; 20 % 19.2 - 6 = 13.2; 35 % 23.4 - 1.5 = 21.9; 50 % 20 - 0 = 20
    assert cut.markdown == 0.35 and cut.order_qty == 0.0
    assert (cut.expected_sold, cut.expected_waste, cut.expected_margin) == pytest.approx((9.0, 1.0, 21.9))
    assert markdown_scenario(
        {"price_ratio": 0.8, "promotion": 1.0, "days_since_price_change": 9.0, "lag_1": 3.0}, 0.5
    ) == {
        "price_ratio": 0.4,
        "promotion": 0.0,
        "days_since_price_change": 0.0,
        "lag_1": 3.0,
    }
