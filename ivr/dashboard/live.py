"""Live call updates: what the call store is told, fanned out to the browsers watching.

`PublishingStore` wraps the call store (like metrics' ObservedStore) and hands every
start_call/add_event/end_call to a `Publisher` after the store has it. `LocalPublisher` keeps one
bounded queue per subscriber (a browser's SSE stream): publishing never waits, and a subscriber
whose queue is full is cut off with a `resync` message rather than slowing the call down; its
browser reconnects and starts again from a fresh snapshot. A cross-instance publisher (e.g.
PostgreSQL LISTEN/NOTIFY) only has to offer the same `publish`/`subscribe`.

`LiveCalls` folds the same messages into the state the live page shows per call (flow, node,
last transcript, ...), so a new subscriber gets a snapshot without reading the database.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from typing import Protocol

log = logging.getLogger("ivr.dashboard")

RESYNC = {"kind": "resync"}


class Subscription:
    def __init__(self, publisher: "LocalPublisher", max_queue: int):
        self._publisher = publisher
        self.queue: asyncio.Queue = asyncio.Queue(max_queue)
        self.closed = False
        self.dropped = False

    def offer(self, message: dict) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Too slow to keep up: forget its backlog, tell it to start over, stop feeding it.
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)
            self.close()

    async def get(self, timeout: float | None = None) -> dict | None:
        """The next message, or None after `timeout` seconds without one (time for a keep-alive)."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        self.closed = True
        self._publisher.unsubscribe(self)


class Publisher(Protocol):
    def publish(self, message: dict) -> None: ...

    def subscribe(self) -> Subscription: ...


class LocalPublisher:
    """Fan-out inside this process. `publish` may be called from any thread and never blocks."""

    def __init__(self, max_queue: int = 1000):
        self.max_queue = max_queue
        self._subs: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self) -> Subscription:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._loop_thread = loop, threading.get_ident()
        sub = Subscription(self, self.max_queue)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, message: dict) -> None:
        if not self._subs or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._deliver(message)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, message)

    def _deliver(self, message: dict) -> None:
        for sub in list(self._subs):
            sub.offer(message)


class LiveCalls:
    """The live page's view of each call in progress in this process."""

    def __init__(self, remember_ended: int = 500):
        self.calls: dict[str, dict] = {}
        # Ended here but maybe not yet committed: the database would still call them active.
        self.recently_ended: OrderedDict[str, None] = OrderedDict()
        self._remember = remember_ended

    def snapshot(self) -> list[dict]:
        return sorted((dict(c) for c in self.calls.values()), key=lambda c: c["started_at"])

    def apply(self, message: dict) -> dict | None:
        """Update from one message; the call's new state (None once it has ended)."""
        kind, call_id = message.get("kind"), message.get("call_id")
        if kind == "call_start":
            info = message.get("call") or {}
            self.calls[call_id] = {
                "call_id": call_id, "flow": info.get("flow"), "flow_version": info.get("flow_version"),
                "caller": info.get("caller"), "called": info.get("called"), "started_at": message["ts"],
                "node": None, "last_transcript": None, "last_prompt": None, "intent": None, "confidence": None,
                "turns": 0, "events": 0, "updated_at": message["ts"],
            }
            return dict(self.calls[call_id])
        if kind == "call_end":
            self.calls.pop(call_id, None)
            self.recently_ended[call_id] = None
            while len(self.recently_ended) > self._remember:
                self.recently_ended.popitem(last=False)
            return None
        call = self.calls.get(call_id)
        if kind != "event" or call is None:
            return None
        data = message.get("data") or {}
        type_ = message.get("type")
        call["events"] += 1
        call["updated_at"] = message["ts"]
        if type_ == "node":
            call["node"] = data.get("node") or data.get("to")
        elif type_ == "transcript" and data.get("text"):
            call["last_transcript"] = data.get("text")
        elif type_ == "dtmf":
            call["last_transcript"] = f"[key {data.get('digit') or data.get('digits')}]"
        elif type_ == "prompt":
            call["last_prompt"] = data.get("text")
        elif type_ == "nlu":
            call["intent"], call["confidence"] = data.get("intent"), data.get("confidence")
        elif type_ == "turn_end":
            call["turns"] += 1
        return dict(call)


class PublishingStore:
    """The call store, plus a live message for everything written through it."""

    def __init__(self, store, publisher: Publisher, live: LiveCalls | None = None):
        self._store = store
        self.publisher = publisher
        self.live = live or LiveCalls()

    def _publish(self, message: dict) -> None:
        try:
            message["state"] = self.live.apply(message)
            self.publisher.publish(message)
        except Exception:  # the dashboard must never break a call
            log.exception("dashboard: cannot publish %s", message.get("kind"))

    def start_call(self, call_id, **kwargs):
        result = self._store.start_call(call_id, **kwargs)
        call = {k: kwargs.get(k) for k in ("flow", "flow_version", "caller", "called")}
        self._publish({"kind": "call_start", "call_id": call_id, "ts": time.time(), "call": call})
        return result

    def add_event(self, call_id, type, data=None, ts=None):
        result = self._store.add_event(call_id, type, data, ts)
        self._publish({"kind": "event", "call_id": call_id, "type": type, "data": data or {},
                       "ts": ts if ts is not None else time.time()})
        return result

    def end_call(self, call_id, outcome, **kwargs):
        result = self._store.end_call(call_id, outcome, **kwargs)
        self._publish({"kind": "call_end", "call_id": call_id, "ts": time.time(), "outcome": outcome})
        return result

    def __getattr__(self, name):
        return getattr(self._store, name)
