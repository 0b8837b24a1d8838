"""Per-key state: the four-method shape of quixstreams' `State`.

The stream driver passes quixstreams' RocksDB-backed `State` straight in; the batch driver uses
`DictState`. Feature code only ever sees this protocol, so both drivers run identical logic.
Values must be JSON-shaped (dicts, lists, str, int, float, bool, None): quixstreams serializes
them to JSON, and the batch path keeps the same shapes so nothing behaves differently.
"""

from __future__ import annotations

from typing import Any, Protocol


class State(Protocol):
    """The state of one key within one stage."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class DictState:
    """In-memory `State` for one key; `DictStore` hands these out."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def exists(self, key: str) -> bool:
        return key in self._data


class DictStore:
    """All keys' state of one stage, in memory: what a RocksDB partition store is to quixstreams."""

    def __init__(self) -> None:
        self._keys: dict[str, DictState] = {}

    def state(self, key: str) -> DictState:
        """Return the state of `key`, creating it empty on first use."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = DictState({})
        return state

    def __len__(self) -> int:
        return len(self._keys)
