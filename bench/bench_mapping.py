"""Throughput of an input mapping: a card-history CSV read as is, mapped, and validated.

Writes a CSV in the shape of a typical card history (`TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID,
TERMINAL_ID, TX_AMOUNT, TX_TIME_SECONDS, TX_TIME_DAYS, TX_FRAUD`) into a temporary folder, then
times, best of `--runs`: reading the rows (`features.sources.read_payloads`), reading and mapping
them (`features.mapping.mapped_payloads`: six fields, casts, a naive time in Europe/Stockholm,
a derived label per row), and mapping plus validating every event with msgspec as
`FeatureSet.parse` does. Prints rows per second of CPU time for each.

    python bench/bench_mapping.py --rows 200000
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import msgspec

from features.fraud.schemas import FraudLabel, Id, Timestamp
from features.mapping import Mapping, mapped_payloads
from features.sources import read_payloads

MAPPING = [
    *("--rename", "payment_id=TRANSACTION_ID", "--rename", "ts=TX_DATETIME", "--rename", "customer_id=CUSTOMER_ID"),
    *("--rename", "merchant_id=TERMINAL_ID", "--rename", "amount=TX_AMOUNT", "--const", "currency=EUR"),
    *("--cast", "ts=time", "--cast", "customer_id=str", "--cast", "merchant_id=str", "--cast", "amount=float"),
    *("--timezone", "Europe/Stockholm", "--drop", "TX_TIME_SECONDS", "--drop", "TX_TIME_DAYS"),
    *("--label-from", "TX_FRAUD", "--label-delay", "7d"),
    *("--label-field", "payment_id=payment_id", "--label-field", "merchant_id=merchant_id"),
]


class Payment(msgspec.Struct, tag="payment", tag_field="type"):
    payment_id: Id
    ts: Timestamp
    customer_id: Id
    merchant_id: Id
    amount: Annotated[float, msgspec.Meta(ge=0.0)]
    currency: str


def write_csv(path: Path, rows: int) -> None:
    """Rows like the card history's: naive local times, integer ids, a 0/1 fraud flag, two time columns."""
    rng = random.Random(7)
    start = datetime(2018, 4, 1)
    header = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"]
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow([*header, "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD"])
        for i in range(rows):
            seconds = i * 37 + rng.randrange(37)
            moment = start + timedelta(seconds=seconds)
            amount = f"{rng.expovariate(0.02):.2f}"
            fraud = int(rng.random() < 0.01)
            out.writerow(
                [i, moment, rng.randrange(5000), rng.randrange(10000), amount, seconds, seconds // 86400, fraud]
            )


def best(runs: int, work: Callable[[], int]) -> tuple[int, float]:
    """Events made and the least CPU time of `runs` runs: on a shared machine CPU time varies less than wall time."""
    times = []
    count = 0
    for _ in range(runs):
        started = time.process_time()
        count = work()
        times.append(time.process_time() - started)
    return count, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    mapping = Mapping.from_options("payment", MAPPING)
    schemas = {"payment": Payment, "label": FraudLabel}
    mapping.check(schemas)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "transactions.csv"
        write_csv(path, args.rows)

        def read() -> int:
            return sum(1 for _ in read_payloads(path))

        def mapped() -> int:
            return sum(1 for _ in mapped_payloads(path, "payment", mapping))

        def validated() -> int:
            n = 0
            for kind, _, payload in mapped_payloads(path, "payment", mapping):
                msgspec.convert(payload, schemas[kind], strict=False)
                n += 1
            return n

        for name, work in (("read", read), ("read + map", mapped), ("read + map + validate", validated)):
            events, seconds = best(args.runs, work)
            print(f"{name:24} {args.rows / seconds:>10,.0f} rows/s  ({events:,} events, {seconds:.2f} s CPU)")


if __name__ == "__main__":
    main()
