"""Graceful shutdown: on SIGTERM `ivr serve` drains before it exits.

1. `runtime.draining` is set: /healthz answers 503 "draining" (a load balancer moves on) and new
   voice webhooks get the busy TwiML; calls already in progress carry on.
2. Up to `drain_seconds` (IVR_DRAIN_SECONDS) for those calls to end by themselves.
3. Each call still going hears a short goodbye and is hung up (outcome "drained", a `drain`
   event with the reason in the call log); a few seconds for the goodbyes to play.
4. uvicorn stops as usual (lifespan shutdown closes the call log) and the process exits 0.

A second SIGTERM or a Ctrl+C skips what is left of the wait.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import uvicorn

log = logging.getLogger("ivr.serving.drain")

DRAIN_REASON = "server shutting down"
GOODBYE_SECONDS = 15.0  # for the goodbyes to be spoken and the streams to close
POLL = 0.1


async def drain(runtime, seconds: float, *, goodbye_seconds: float = GOODBYE_SECONDS,
                skip: asyncio.Event | None = None) -> dict:
    """Stop taking calls, let those in progress finish for up to `seconds`, then end the rest
    politely. Returns what happened, for the log."""
    skip = skip or asyncio.Event()
    runtime.draining = True
    started = time.monotonic()
    at_start = len(runtime.active_calls)
    log.warning("draining: %d call(s) in progress, new calls refused; waiting up to %.0fs", at_start, seconds)
    await _wait_empty(runtime, started + seconds, skip)
    asked: set[str] = set()
    goodbye_deadline = time.monotonic() + goodbye_seconds
    while runtime.active_calls and time.monotonic() < goodbye_deadline and not skip.is_set():
        # Again each round: a stream whose webhook was answered just before the drain may start now.
        for call_id, info in list(runtime.active_calls.items()):
            session = info.get("session")
            if call_id in asked or session is None:
                continue
            asked.add(call_id)
            log.warning("draining: ending call %s politely", call_id)
            try:
                await session.end_politely(DRAIN_REASON)
            except Exception:
                log.exception("draining: call %s could not be ended politely", call_id)
        await asyncio.sleep(POLL)
    left = len(runtime.active_calls)
    result = {"calls_at_start": at_start, "ended_by_drain": len(asked), "still_open": left,
              "seconds": round(time.monotonic() - started, 1)}
    log.warning("drained in %.1fs: %d call(s) at start, %d ended by the drain, %d still open",
                result["seconds"], at_start, len(asked), left)
    return result


async def _wait_empty(runtime, deadline: float, skip: asyncio.Event) -> None:
    while runtime.active_calls and time.monotonic() < deadline and not skip.is_set():
        await asyncio.sleep(POLL)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but SIGTERM drains the calls first (see the module docstring) and the
    process then exits 0 instead of re-raising the signal."""

    def __init__(self, config: uvicorn.Config, runtime, drain_seconds: float):
        super().__init__(config)
        self.runtime = runtime
        self.drain_seconds = drain_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task | None = None
        self._skip: asyncio.Event | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        self._skip = asyncio.Event()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame) -> None:
        if sig != signal.SIGTERM or self._loop is None or self.should_exit:
            if self._drain_task is not None and self._skip is not None:
                self._loop.call_soon_threadsafe(self._skip.set)  # type: ignore[union-attr]
            super().handle_exit(sig, frame)
            return
        if self._drain_task is not None:  # a second SIGTERM: stop waiting
            self._loop.call_soon_threadsafe(self._skip.set)  # type: ignore[union-attr]
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await drain(self.runtime, self.drain_seconds, skip=self._skip)
        except Exception:
            log.exception("draining failed; shutting down")
        finally:
            self.should_exit = True
