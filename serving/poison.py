"""The poison-message rule: a message that crashed a live process is never processed twice.

Bad input is caught where it is read and becomes a dead letter; a message that still makes the
code raise (a bug meeting an input nobody foresaw) would crash the process at the same offset on
every restart, stopping the stream for everyone. So each live process notes the message it is
working on; when a run ends in an exception, that message's position and the error are written
down (in the state directory, so a restarted process knows too) before a new run starts, and the
new run turns the message into a dead letter with that reason instead of processing it again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("samestream.poison")

Position = tuple[str, int, int]
"""(topic, partition, offset) of a message."""


class PoisonList:
    """Positions of messages that crashed this process role, with the reason, kept on disk.

    Parameters
    ----------
    path:
        JSON file of the list (under the role's state directory); created on the first crash.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reasons: dict[Position, str] = {}
        if path.exists():
            try:
                entries = json.loads(path.read_text())
                self._reasons = {(e["topic"], int(e["partition"]), int(e["offset"])): str(e["reason"]) for e in entries}
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring an unreadable poison list %s: %s", path, exc)
        self.current: Position | None = None
        """The message being processed now; set by the process's first step for each message."""

    def reason(self, position: Position) -> str | None:
        """Why the message at `position` crashed the process, if it did."""
        return self._reasons.get(position) if self._reasons else None

    def crashed(self, exc: BaseException) -> bool:
        """Note that the current message crashed the process with `exc`; False if there was none
        (the crash is not a message's, and a new run would not avoid it)."""
        if self.current is None or self.current in self._reasons:
            return False
        reason = f"processing error: the message crashed the process ({type(exc).__name__}); it is not processed again"
        self._reasons[self.current] = reason
        log.error("%s at %s:%d:%d: %s", reason, *self.current, type(exc).__name__)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries = [{"topic": t, "partition": p, "offset": o, "reason": r} for (t, p, o), r in self._reasons.items()]
        self.path.write_text(json.dumps(entries))
        self.current = None
        return True
