"""The events of a stream waiting for its client, bounded.

A partial is superseded by the next partial, a status by the next status: of
those only the newest waits. Finals, signals and decisions are never
replaced; if `capacity` of them pile up the client is not reading, and
`overflowed` tells the stream to end (its analysis is still indexed).
"""

from __future__ import annotations

import asyncio
import collections

from understanding.domain import LiveEvent, LivePartial, LiveStatus

__all__ = ["EventChannel"]


class EventChannel:
    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._queue: collections.deque[LiveEvent] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.overflowed = False
        self.superseded = 0

    def put(self, event: LiveEvent) -> None:
        if self._closed:
            return
        if isinstance(event, (LivePartial, LiveStatus)):
            for i in range(len(self._queue) - 1, -1, -1):
                if type(self._queue[i]) is type(event):
                    del self._queue[i]
                    self.superseded += 1
                    break
        elif len(self._queue) >= self._capacity:
            self.overflowed = True
            return
        self._queue.append(event)
        self._ready.set()

    def close(self) -> None:
        """No more events: `get` returns None once the queue is empty."""
        self._closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._queue)

    async def get(self) -> LiveEvent | None:
        while not self._queue:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()
