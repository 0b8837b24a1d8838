"""Account-login risk, a fourth use case in one module: what "add your own use case" takes.

Logins (user, time, country, device, success) and takeover labels known later; one row per
login with logins in the last hour, a new country, a new device and failures in a row. It is
registered on import (`SAMESTREAM_USE_CASES=tests.usecase_login`) and trains with the generic
binary task and decides with the generic binary decider: no other file knows it.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar

import msgspec

from features.depersonalize import Policy, Pseudonymizer
from features.featureset import FeatureSet, Record, Stage, to_ms
from features.state import State
from features.usecases import UseCase, register_use_case

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Login(msgspec.Struct, tag="login", tag_field="type", forbid_unknown_fields=False):
    login_id: Id
    ts: datetime
    user_id: Id
    country: Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")]
    device_id: Id
    success: bool


class Takeover(msgspec.Struct, tag="takeover", tag_field="type", forbid_unknown_fields=False):
    """The verdict on one login, known later: was it the account's owner?"""

    login_id: Id
    user_id: Id
    takeover: bool
    known_at: datetime


HOUR_MS, KEEP_MS = 3_600_000, 86_400_000


class LoginFeatureSet(FeatureSet):
    name = "login"
    schemas: ClassVar = {"login": Login, "takeover": Takeover}
    kind_order: ClassVar = {"takeover": 0, "login": 1}
    policies: ClassVar = {
        **dict.fromkeys(("login_id", "ts", "country", "success", "takeover", "known_at"), Policy.KEEP),
        "user_id": Policy.PSEUDONYMIZE,
        "device_id": Policy.PSEUDONYMIZE,
    }
    columns: ClassVar = {
        "login_id": "str",
        "user": "str",
        "event_time": "ts_ms",
        "logins_1h": "int",
        "new_country": "int",
        "new_device": "int",
        "failures_in_row": "int",
        "success": "int",
    }
    feature_names = ("logins_1h", "new_country", "new_device", "failures_in_row", "success")
    label_columns: ClassVar = {"login_id": "str", "takeover": "bool", "known_at": "ts_ms"}
    entity_column, row_id, partition_key = "user", "login_id", "user_id"

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.pseudonym = Pseudonymizer(secret)

    def event_time_ms(self, event: msgspec.Struct) -> int:
        return to_ms(event.known_at if isinstance(event, Takeover) else event.ts)  # type: ignore[attr-defined]

    def depersonalize(self, event: msgspec.Struct) -> Record:
        user = self.pseudonym("user", event.user_id)  # type: ignore[attr-defined]
        if isinstance(event, Takeover):
            return {
                "kind": "takeover",
                "t": to_ms(event.known_at),
                "id": event.login_id,
                "user": user,
                "y": event.takeover,
            }
        assert isinstance(event, Login)
        device = self.pseudonym("device", event.device_id)
        return {
            "kind": "login",
            "t": to_ms(event.ts),
            "id": event.login_id,
            "user": user,
            "country": event.country,
            "device": device,
            "success": event.success,
        }

    def label_rows(self, record: Record) -> list[Record]:
        if record["kind"] != "takeover":
            return []
        return [{"login_id": record["id"], "takeover": record["y"], "known_at": record["t"]}]

    @property
    def stages(self) -> tuple[Stage, ...]:
        return (Stage("user", lambda r: r["user"], self._user, event_id=lambda r: f"{r['kind']}:{r['id']}"),)

    def _user(self, r: Record, state: State) -> list[Record]:
        """Features from the user's logins strictly before this one, so ties in time cannot
        change them; a failure sorts before a success at the same time."""
        if r["kind"] != "login":
            return []
        t = r["t"]
        recent = [e for e in state.get("recent") or [] if e[0] > t - KEEP_MS]
        seen = dict(state.get("seen") or {})
        before = sorted(e for e in recent if e[0] < t)
        failures = 0
        for _, success in reversed(before):
            if success:
                break
            failures += 1
        row = {
            "login_id": r["id"],
            "user": r["user"],
            "event_time": t,
            "logins_1h": sum(1 for e in before if e[0] >= t - HOUR_MS),
            "new_country": int(seen.get("c:" + r["country"], t) >= t),
            "new_device": int(seen.get("d:" + r["device"], t) >= t),
            "failures_in_row": failures,
            "success": int(r["success"]),
        }
        for key in ("c:" + r["country"], "d:" + r["device"]):
            seen[key] = min(seen.get(key, t), t)
        state.set("recent", [*recent, [t, r["success"]]])
        state.set("seen", seen)
        return [row]


def simulate(out_dir: Path, *, users: int = 60, days: int = 30, seed: int = 7) -> tuple[int, int]:
    """Logins of `users` over `days`, a tenth of the accounts taken over once (failures from a
    new country and device, then a success); every login's verdict known 1 to 3 days later.
    Returns (logins, takeovers)."""
    rng, start = random.Random(seed), datetime(2026, 3, 1, tzinfo=UTC)
    logins: list[dict[str, Any]] = []
    for u in range(users):
        home, device = rng.choice(["SE", "FI", "DE", "FR"]), f"dev-{u}-0"
        for _ in range(days * 3):
            at = start + timedelta(seconds=rng.randrange(days * 86_400))
            logins.append(_login(len(logins), at, u, home, device, rng.random() > 0.05, False))
        if u % 10 == 3:
            at = start + timedelta(days=rng.uniform(days * 0.2, days * 0.95))
            for i in range(rng.randint(2, 6) + 1):
                logins.append(
                    _login(
                        len(logins),
                        at + timedelta(seconds=20 * i),
                        u,
                        "RU",
                        f"evil-{u}",
                        i > 0 and rng.random() > 0.5,
                        True,
                    )
                )
    verdicts = [
        {
            "type": "takeover",
            "login_id": e["login_id"],
            "user_id": e["user_id"],
            "takeover": e.pop("_bad"),
            "known_at": (datetime.fromisoformat(e["ts"]) + timedelta(days=rng.uniform(1, 3))).isoformat(),
        }
        for e in logins
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, items in (("logins", logins), ("takeovers", verdicts)):
        items.sort(key=lambda e: e.get("ts") or e["known_at"])
        (out_dir / f"{name}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in items))
    return len(logins), sum(v["takeover"] for v in verdicts)


def _login(n: int, at: datetime, user: int, country: str, device: str, success: bool, bad: bool) -> dict[str, Any]:
    return {
        "type": "login",
        "login_id": f"L{n:07d}",
        "ts": at.isoformat(),
        "user_id": f"user{user:04d}@mail.example",
        "country": country,
        "device_id": device,
        "success": success,
        "_bad": bad,
    }


class LoginJob:
    unit, default_size, default_days = "users", 60, 30

    def simulate(self, out_dir: Path, *, size: int, days: int, seed: int, fmt: str, advance: Any) -> str:
        logins, takeovers = simulate(out_dir, users=size, days=days, seed=seed)
        return f"{logins:,} logins ({takeovers:,} by an intruder) to {out_dir}"

    def task(self, fs: FeatureSet, db: Path, options: Any) -> Any:
        from training.harness import WindowDays
        from training.jobs.binary import BinaryTask

        return BinaryTask(fs, WindowDays(warmup=2, validation=6, delay=3, test=8), "failures_in_row", "logins")


def decider() -> Any:
    from serving.deciders import BinaryDecider

    return BinaryDecider("login")


JOB = LoginJob()
USE_CASE = register_use_case(
    UseCase(
        "login",
        {"login": "logins", "takeover": "takeovers"},
        lambda folder, secret: LoginFeatureSet(secret),
        "login-risk",
        job="tests.usecase_login:JOB",
        decider="tests.usecase_login:decider",
    )
)
