"""The JSON records the live processes write, and how a pipeline routes them to their topics.

Inside a quixstreams pipeline every value is an `Item`, a `(kind, body)` pair: `record` (a
depersonalized event between stages), `row` (a feature row), `label`, `decision`, `score`,
`dead` (a dead letter) or `skip`. Keeping the kind next to the body lets one linear pipeline carry labels
and dead letters past the stages to their own topics without branching (quixstreams copies a
value for every extra branch), and the pair survives a repartition topic as a JSON array.
Only the body is written to the output topic.

Decision record (`<use case>-decisions`), one per scored row: the row id (named after the
FeatureSet's row id), the decision fields of the use case's decider (`serving.deciders`), then
the model and timings. Fraud, a verdict on the payment and its reasons: the three model inputs
that pushed the score up most, each with its contribution to the log-odds of fraud (rounded to
3 decimals; negative when it pulled the score down), largest first, for every decision; null
when the model offers none (`training.pyfunc.ProbabilityModel.reasons`). Feature names only,
never a value::

    {"payment_id": "p17", "score": 0.962, "decision": "block",
     "reasons": [{"feature": "log_km_from_usual", "contribution": 2.814},
                 {"feature": "log_amount_ratio", "contribution": 1.102},
                 {"feature": "new_device", "contribution": 0.377}],
     "model": "fraud-detector", "version": "3", "alias": "champion", "latency_ms": 4.2,
     "model_ms": 0.31, "decided_at": 1767225600123}

Loan, the offer that answers the application: the rate (a fraction per year, on the grid of the
version's pricing policy, never below its floor), the model's P(accept) at that rate and the
expected value of offering it (EUR)::

    {"application_id": "A0000042", "rate": 0.0875, "p_accept": 0.412,
     "expected_value": 318.4, "model": "loan-acceptance", "version": "2", "alias": "champion",
     "latency_ms": 6.1, "model_ms": 3.4, "decided_at": 1767225600123}

Store, tomorrow's order for one store × product (units of the product; a tenth of a kg for goods
sold by weight) and the markdown suggested for stock expiring tomorrow (a share of tomorrow's
price, 0.0 for none), with the forecast at the scheduled price and what the decision expects::

    {"row_id": "S001|P012|2025-11-04", "order_qty": 14.0, "markdown": 0.2, "forecast": 11.3,
     "expected_sold": 12.6, "expected_waste": 0.4, "expected_margin": 9.85,
     "model": "store-demand", "version": "1", "alias": "champion", "latency_ms": 30.2,
     "model_ms": 3.8, "decided_at": 1767225600123}

`latency_ms` runs from the moment the event was published (its Kafka timestamp, which the
feature row and the decision inherit) to the decision; `model_ms` is the model call and the
decision alone. A challenger's score record (`<use case>-shadow-scores`) has the same fields
plus `error` (null, or why the model failed, with the decision fields null); a challenger scores
in batches, so its `latency_ms` includes the wait for the batch and only a sample of its records,
each timed alone, carries a `model_ms` (`serving.challenger`). That topic carries them as JSON
arrays, up to 500 records of one model version per message.

Dead letter (`<use case>-deadletters`)::

    {"source": "fraud-events", "position": "0:1234", "topic": "fraud-events", "partition": 0,
     "offset": 1234, "process": "features", "kind": "payment",
     "reason": "schema violation: Expected `float`, got `str` - at `$.amount`",
     "payload": "{... \\"card_number\\":\\"<redacted>\\" ...}", "at": 1767225600123}
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import msgspec

from features.featureset import FeatureSet

Item = tuple[str, dict[str, Any]]

_encode = msgspec.json.Encoder().encode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode_body(item: Item) -> bytes:
    """Serializer of output topics: the body of an item, as compact JSON."""
    return _encode(item[1])


def dead_letter(
    fs: FeatureSet,
    process: str,
    topic: str,
    partition: int,
    offset: int,
    kind: str | None,
    reason: str,
    payload: Any,
) -> Item:
    """A dead-letter item: the reason, the payload with personal data masked, and where it was."""
    letter = fs.dead_letter(topic, f"{partition}:{offset}", kind, reason, payload)
    return (
        "dead",
        {
            **asdict(letter),
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "process": process,
            "at": now_ms(),
        },
    )


def dead_letter_key(body: dict[str, Any]) -> str:
    """Where the rejected message is: enough to fetch the original, nothing personal."""
    return f"{body['topic']}:{body['partition']}:{body['offset']}"
