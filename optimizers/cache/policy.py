"""Eviction: least recently used by entry count and by bytes, and a time to live.

The policy only keeps order and sizes; the cache asks it what to drop and drops it. TTL counts
from insertion (an answer goes stale with age, however often it is served); LRU order is
refreshed by every hit.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable


class EvictionPolicy:
    """LRU by entries and by bytes, plus TTL; any limit left as None is off."""

    def __init__(self, max_entries: int | None = None, max_bytes: int | None = None, ttl_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes), ("ttl_s", ttl_s)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self._lru: OrderedDict[int, int] = OrderedDict()       # id -> bytes, least recent first
        self._born: OrderedDict[int, float] = OrderedDict()    # id -> insert time, oldest first
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._lru)

    def on_insert(self, entry_id: int, nbytes: int) -> list[int]:
        """Record a new entry; return the ids to evict (least recently used first) to respect the limits.

        An entry larger than `max_bytes` on its own is refused (its own id is returned) without
        evicting anything: emptying the cache could not make it fit.
        """
        if self.max_bytes is not None and nbytes > self.max_bytes:
            return [entry_id]
        self._lru[entry_id] = nbytes
        self._born[entry_id] = self.clock()
        self.bytes += nbytes
        victims: list[int] = []
        while self._lru and ((self.max_entries is not None and len(self._lru) > self.max_entries)
                             or (self.max_bytes is not None and self.bytes > self.max_bytes)):
            victim = next(iter(self._lru))
            self.forget(victim)
            victims.append(victim)
        return victims

    def on_hit(self, entry_id: int) -> None:
        """An entry was served: it becomes the most recently used."""
        if entry_id in self._lru:
            self._lru.move_to_end(entry_id)

    def expired(self) -> list[int]:
        """Ids whose time to live has passed (forgotten here; the cache removes them)."""
        if self.ttl_s is None:
            return []
        now = self.clock()
        out = []
        while self._born:
            entry_id, born = next(iter(self._born.items()))
            if now - born < self.ttl_s:
                break
            self.forget(entry_id)
            out.append(entry_id)
        return out

    def forget(self, entry_id: int) -> None:
        """Stop tracking an entry (evicted, expired or removed by the caller)."""
        nbytes = self._lru.pop(entry_id, None)
        if nbytes is not None:
            self.bytes -= nbytes
        self._born.pop(entry_id, None)
