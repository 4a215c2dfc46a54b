"""Bounded worker pools for blocking model calls, one pool per model.

Models are loaded once per process and shared by every call. Each model gets a small thread
pool sized to the cores, so the event loop never blocks and one call's transcription cannot
starve another call's audio pacing (docs/architecture.md, "Models are shared"; pipecat issues 764, 3378).
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class StageTimeout(TimeoutError):
    """A model call took longer than its stage's limit."""


class ModelWorker:
    def __init__(self, name: str, concurrency: int = 1, timeout: float | None = None):
        self.name = name
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=f"ivr-{name}")
        self.queued = 0
        self.busy_seconds = 0.0

    async def run(self, fn: Callable[..., T], *args, timeout: float | None = None, **kwargs) -> T:
        loop = asyncio.get_running_loop()
        self.queued += 1
        started = time.perf_counter()
        try:
            future = loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
            limit = timeout if timeout is not None else self.timeout
            if limit is None:
                return await future
            try:
                return await asyncio.wait_for(future, limit)
            except asyncio.TimeoutError:
                raise StageTimeout(f"{self.name} took longer than {limit:.1f}s") from None
        finally:
            self.queued -= 1
            self.busy_seconds += time.perf_counter() - started

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
