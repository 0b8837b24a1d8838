"""A card history in a user's own shape, for the tests that bring one through the commands.

Written from the fraud simulator's payments and labels, the way such histories come: integer
transaction, customer and terminal ids, naive times on a Stockholm clock, amounts with some
0.00 authorizations, the fraud verdict as a 0/1 column, two columns nobody maps; and none of
the optional payment fields. `MAPPING` is the TOML a user writes for it.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from training.simulators.fraud import simulate_fraud

STOCKHOLM = ZoneInfo("Europe/Stockholm")
ZERO_EVERY = 97
"""Every 97th payment is a zero-amount authorization."""
MAPPING = """\
[payment]
file = "transactions.csv"
timezone = "Europe/Stockholm"
cast = { ts = "time", customer_id = "str", merchant_id = "str", amount = "float" }
drop = ["TX_TIME_SECONDS", "TX_TIME_DAYS"]

[payment.rename]
payment_id = "TRANSACTION_ID"
ts = "TX_DATETIME"
customer_id = "CUSTOMER_ID"
merchant_id = "TERMINAL_ID"
amount = "TX_AMOUNT"

[payment.label]
from = "TX_FRAUD"
delay = "7d"
fields = { payment_id = "payment_id", merchant_id = "merchant_id" }
"""


def write_card_history(folder: Path, n_payments: int = 6_000, days: int = 60, seed: int = 3) -> Path:
    """Write `transactions.csv` and `cards.toml` into `folder`; return the TOML's path."""
    sim = simulate_fraud(folder / "simulated", n_payments=n_payments, days=days, seed=seed, fmt="jsonl")
    fraud = {}
    for line in sim.labels.read_text().splitlines():
        label = json.loads(line)
        fraud[label["payment_id"]] = label["is_fraud"]
    customers: dict[str, int] = {}
    terminals: dict[str, int] = {}
    start = None
    with (folder / "transactions.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_TIME_SECONDS"]
            + ["TX_TIME_DAYS", "TX_FRAUD"]
        )
        for i, line in enumerate(sim.payments.read_text().splitlines()):
            payment = json.loads(line)
            moment = datetime.fromisoformat(payment["ts"])
            start = start or moment
            local = moment.astimezone(STOCKHOLM).replace(tzinfo=None)
            amount = 0.0 if i % ZERO_EVERY == 5 else payment["amount"]
            seconds = int((moment - start).total_seconds())
            out.writerow(
                [
                    i,
                    local.strftime("%Y-%m-%d %H:%M:%S"),
                    customers.setdefault(payment["customer_id"], len(customers)),
                    terminals.setdefault(payment["merchant_id"], len(terminals)),
                    f"{amount:.2f}",
                    seconds,
                    seconds // 86_400,
                    int(fraud.get(payment["payment_id"], False)),
                ]
            )
    toml = folder / "cards.toml"
    toml.write_text(MAPPING)
    return toml
