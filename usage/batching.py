"""Call records from the gateway leave in batches: every record finished during one
turn of the event loop goes to Redis in a single pipelined round trip.

Nothing waits on a timer, so a lone call is pushed at once; under load, hundreds of
calls share one round trip instead of paying one each.
"""

from __future__ import annotations

import asyncio
import logging

from usage import pipeline
from usage.records import CallRecord

log = logging.getLogger("keymeter.gateway")


class RecordBatcher:
    def __init__(self, max_batch: int = 500) -> None:
        self.max_batch = max_batch
        self._pending: list[CallRecord] = []
        self._flushing: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, record: CallRecord) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a batch belongs to one event loop
            self._loop, self._flushing = loop, None
        self._pending.append(record)
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the calls finishing in this turn join the batch
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    await pipeline.enqueue_many_async(batch)
                except Exception:
                    log.exception("could not push %d call records; spooling", len(batch))
                    for record in batch:
                        pipeline.spool(record.to_json())
        finally:
            self._flushing = None

    async def drain(self) -> None:
        """Wait until every record added so far has left (shutdown, tests)."""
        while self._flushing is not None:
            await self._flushing
