"""Topic names of a use case: one place, so every process and every user agrees on them.

All event kinds of a use case share ONE input topic (`<use case>-events`, a `type` field tells a
payment from a label), so the events that update one key's state reach it through one partition,
in the order they were published. Everything downstream is derived and depersonalized.

Messages are plain JSON (UTF-8), readable with any Kafka client (kcat, kafka-console-consumer):

- `<use case>-events`: key = what upstream systems key the events by (`FeatureSet.partition_key`;
  fraud and loan: the raw `customer_id`, store: `store_id`); value = one event of the FeatureSet's
  schemas, its kind in its `type` field or in a `type` header.
- the tables' feed (fraud: `fraud-label-events`, one partition): the events that build the
  FeatureSet's tables (fraud: labels) and watermarks, in the order they became known.
- `<use case>-features`: key = row id (fraud: `payment_id`); value = one feature row (the
  FeatureSet's columns) plus `featureset_version`.
- `<use case>-labels`: key = row id; value = one label row (fraud: payment_id, is_fraud, known_at).
- `<use case>-decisions`: key = row id; value = a decision record (see `serving.records`): a fraud
  verdict, a loan offer (the rate), a store order (quantity and markdown).
- `<use case>-shadow-scores`: key = model and version; value = a JSON array of a challenger's
  score records.
- `<use case>-deadletters`: key = `<topic>:<partition>:<offset>` of the rejected message; value =
  reason, masked payload and where the original is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic and consumer-group names of one use case, under an optional prefix.

    The prefix keeps environments (or test runs) on one cluster apart; it is empty by default.
    """

    use_case: str
    prefix: str = ""

    def _name(self, suffix: str) -> str:
        return f"{self.prefix}{self.use_case}-{suffix}"

    @property
    def events(self) -> str:
        return self._name("events")

    @property
    def features(self) -> str:
        return self._name("features")

    @property
    def labels(self) -> str:
        return self._name("labels")

    @property
    def decisions(self) -> str:
        return self._name("decisions")

    @property
    def deadletters(self) -> str:
        return self._name("deadletters")

    @property
    def shadow_scores(self) -> str:
        return self._name("shadow-scores")

    def named(self, suffix: str) -> str:
        """A topic of the use case by its suffix, e.g. the tables' feed (`fraud-label-events`)."""
        return self._name(suffix)

    def stage(self, stage: str) -> str:
        """Repartition topic feeding the third and later keyed stages of a FeatureSet."""
        return self._name(f"stage-{stage}")

    def group(self, role: str) -> str:
        """Consumer group of one process role (`features`, `scorer`, `shadow-...`)."""
        return self._name(role)
