"""What a :class:`~nbcall.Phone` keeps for its browser half while no browser has shown it (it gets them on hello):
a bounded queue, so that a phone never displayed does not grow with every call it is offered."""

from __future__ import annotations

import collections
import json
from typing import Any

__all__ = ["MAX_BACKLOG", "MAX_BACKLOG_BYTES", "Backlog"]

#: At most this many messages wait for the browser half...
MAX_BACKLOG = 1000
#: ...and at most this many bytes of them (their JSON and buffers); beyond either, the oldest are dropped.
MAX_BACKLOG_BYTES = 16 * 2**20

Item = tuple[dict[str, Any], list[bytes | memoryview]]


class Backlog:
    """Messages for a browser half that has not said hello yet, oldest first, bounded by count and bytes."""

    def __init__(self, max_count: int = MAX_BACKLOG, max_bytes: int = MAX_BACKLOG_BYTES) -> None:
        self.max_count, self.max_bytes = max_count, max_bytes
        self._items: collections.deque[tuple[Item, int]] = collections.deque()
        self._bytes = 0
        #: How many messages were dropped to keep within the bounds.
        self.dropped = 0

    def add(self, content: dict[str, Any], buffers: list[bytes | memoryview]) -> int:
        """Keep a message; returns how many older ones were dropped to make room for it."""
        size = len(json.dumps(content, default=str)) + sum(len(b) for b in buffers)
        self._items.append(((content, buffers), size))
        self._bytes += size
        dropped = 0
        while len(self._items) > self.max_count or (self._bytes > self.max_bytes and len(self._items) > 1):
            _, gone = self._items.popleft()
            self._bytes -= gone
            dropped += 1
        self.dropped += dropped
        return dropped

    def take(self) -> list[Item]:
        """Everything kept, oldest first, and forget it."""
        items = [item for item, _ in self._items]
        self._items.clear()
        self._bytes = 0
        return items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Item:
        return self._items[index][0]
