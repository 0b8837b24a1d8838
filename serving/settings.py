"""Settings every live process shares, and the one place a quixstreams Application is built.

The broker address, delivery guarantee and commit interval are read once (flag, then
`SAMESTREAM_*` environment variable, then these defaults) and applied the same way to the
feature process, the scorer and the shadow harness, so pointing all of them at another cluster
or guarantee is one setting.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from serving.topics import Topics

if TYPE_CHECKING:
    from quixstreams import Application

Guarantee = Literal["exactly-once", "at-least-once"]
GUARANTEES: tuple[Guarantee, ...] = ("exactly-once", "at-least-once")
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_COMMIT_INTERVAL_S: dict[Guarantee, float] = {"exactly-once": 0.05, "at-least-once": 1.0}
"""Exactly-once makes an output visible only when its transaction commits, and a decision waits
for two (feature process, then scorer): at 1,000 payments/s on two cores, 0.05 s gave a median
p99 to a committed decision of 132 ms over five runs (p50 92 ms), 0.1 s 224 ms (p50 165 ms) and
0.25 s 553 ms, while 0.02 s spent more time committing than it saved (bench/bench_live.py,
BENCHMARKS.md).
At-least-once outputs are visible at once; the interval only bounds what a crash replays."""

OffsetReset = Literal["earliest", "latest"]
BACKGROUND_BATCH_MS = 200
"""How long the shadow harness's processes let records gather before they fetch or send them."""
SESSION_TIMEOUT_MS = 15_000
"""How long a replica that vanished without restarting keeps its partitions (librdkafka: 45 s)."""


@dataclass(frozen=True)
class LiveSettings:
    """Where the broker is and how processes on it behave.

    Parameters
    ----------
    use_case:
        Names the topics and consumer groups (`fraud-events`, `fraud-scorer`, ...).
    bootstrap:
        Kafka bootstrap servers, `host:port[,host:port...]`.
    prefix:
        Prepended to every topic and consumer group, to keep environments apart.
    guarantee:
        `exactly-once` (transactions: no decision lost or doubled) or `at-least-once` (lowest
        latency; a crash may repeat the outputs of the last commit interval).
    commit_interval:
        Seconds between commits; None takes the guarantee's default.
    state_dir:
        Where RocksDB state lives (rebuilt from changelog topics if lost).
    instance:
        Stable, unique name of this replica: the client id its consumer shows in the group and,
        with exactly-once, the transactional id of its producer, so a restarted replica fences
        its predecessor and aborts its open transaction at once. Two replicas of one role need
        two names. Group membership is dynamic: a static member (`group.instance.id`) is fenced
        for good when the broker restarts under it, which stalled or ended the process.
    """

    use_case: str
    bootstrap: str = DEFAULT_BOOTSTRAP
    prefix: str = ""
    guarantee: Guarantee = "exactly-once"
    commit_interval: float | None = None
    state_dir: Path = Path("state")
    instance: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        if not self.bootstrap.strip():
            raise ValueError("the Kafka bootstrap address is empty: set --bootstrap or SAMESTREAM_KAFKA_BOOTSTRAP")
        if self.guarantee not in GUARANTEES:
            raise ValueError(f"guarantee must be one of {', '.join(GUARANTEES)}, got {self.guarantee!r}")
        if self.commit_interval is not None and self.commit_interval <= 0:
            raise ValueError(f"commit interval must be positive seconds, got {self.commit_interval}")

    @property
    def topics(self) -> Topics:
        return Topics(self.use_case, self.prefix)

    @property
    def effective_commit_interval(self) -> float:
        if self.commit_interval is not None:
            return self.commit_interval
        return DEFAULT_COMMIT_INTERVAL_S[self.guarantee]

    def application(
        self,
        role: str,
        *,
        offset_reset: OffsetReset = "earliest",
        on_message_processed: Callable[[str, int, int], None] | None = None,
        loglevel: str = "WARNING",
    ) -> Application:
        """A quixstreams Application for one process role, in consumer group `<prefix><use case>-<role>`.

        quixstreams is imported here, not with this module, so the batch commands that share the
        command line start without it."""
        from quixstreams import Application

        interval = self.effective_commit_interval
        group = self.topics.group(role)
        member = f"{group}-{self.instance}"
        producer_config: dict[str, str | int] = {"linger.ms": 1 if self.guarantee == "at-least-once" else 5}
        if self.guarantee == "exactly-once":
            producer_config["transactional.id"] = member
        consumer_config: dict[str, str | int] = {"client.id": member, "session.timeout.ms": SESSION_TIMEOUT_MS}
        return Application(
            broker_address=self.bootstrap,
            consumer_group=group,
            auto_offset_reset=offset_reset,
            processing_guarantee=self.guarantee,
            commit_interval=interval,
            # The loop checks for an expired commit only between polls: an idle input must not
            # hold a finished transaction (and the decisions in it) back for a whole poll.
            consumer_poll_timeout=min(1.0, interval / 2),
            state_dir=self.state_dir,
            producer_extra_config=producer_config,
            consumer_extra_config=consumer_config,
            on_message_processed=on_message_processed,
            loglevel=loglevel,  # type: ignore[arg-type]
        )
