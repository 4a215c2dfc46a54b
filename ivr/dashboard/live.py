"""Live call updates: what the call store is told, fanned out to the browsers watching.

`PublishingStore` wraps the call store (like metrics' ObservedStore) and hands every
start_call/add_event/end_call to a `Publisher` after the store has it. `LocalPublisher` keeps one
bounded queue per subscriber (a browser's SSE stream): publishing never waits, and a subscriber
whose queue is full is cut off with a `resync` message rather than slowing the call down; its
browser reconnects and starts again from a fresh snapshot. With PostgreSQL, `pg_live.PgLivePublisher`
wraps this one and also carries every message to the other instances (LISTEN/NOTIFY).

`LiveCalls` folds the same messages into the state the live page shows per call (flow, node,
last transcript, ...), so a new subscriber gets a snapshot without reading the database; other
instances' calls are folded in from their messages (`apply_remote`).
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
            self.dropped = True  # too slow to keep up
            self.restart()

    def restart(self) -> None:
        """Forget the backlog, tell the subscriber to start over from a snapshot, stop feeding it."""
        if self.closed:
            return
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
        self._on_loop(self._deliver, message)

    def resync(self) -> None:
        """Every subscriber starts over from a fresh snapshot: messages may have been missed."""
        self._on_loop(self._restart_all)

    def _on_loop(self, fn, *args) -> None:
        if not self._subs or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed in between (shutdown)
                pass

    def _deliver(self, message: dict) -> None:
        for sub in list(self._subs):
            sub.offer(message)

    def _restart_all(self) -> None:
        for sub in list(self._subs):
            sub.restart()


class LiveCalls:
    """The live page's view of each call in progress: this process's own, and those other
    instances have told it about (``owners`` names their instance)."""

    def __init__(self, remember_ended: int = 500):
        self.calls: dict[str, dict] = {}
        # Ended here but maybe not yet committed: the database would still call them active.
        self.recently_ended: OrderedDict[str, None] = OrderedDict()
        self._remember = remember_ended
        self.owners: dict[str, str] = {}  # call_id -> instance, for other instances' calls only
        # Calls are changed from the threads that write to the store and from the listener of
        # other instances' messages, and read from the event loop. Re-entrant: PublishingStore
        # holds it across apply + publish, and a publisher may read the local calls meanwhile.
        self.lock = threading.RLock()

    def snapshot(self) -> list[dict]:
        with self.lock:
            calls = [dict(c) for c in self.calls.values()]
        return sorted(calls, key=lambda c: c["started_at"] or 0)

    def local_ids(self) -> list[str]:
        with self.lock:
            return [cid for cid in self.calls if cid not in self.owners]

    def remote_ids(self, instance: str) -> list[str]:
        with self.lock:
            return [cid for cid, owner in self.owners.items() if owner == instance]

    def is_ended(self, call_id: str) -> bool:
        with self.lock:
            return call_id in self.recently_ended

    def _ended(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
        self.owners.pop(call_id, None)
        self.recently_ended[call_id] = None
        while len(self.recently_ended) > self._remember:
            self.recently_ended.popitem(last=False)

    def apply(self, message: dict) -> dict | None:
        """Update from one message; the call's new state (None once it has ended)."""
        with self.lock:
            return self._apply(message)

    def _apply(self, message: dict) -> dict | None:
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
            self._ended(call_id)
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

    def apply_remote(self, message: dict, instance: str) -> dict | None:
        """Fold in a message from another instance; what to hand this instance's subscribers.

        The sender's own state for the call travels with each message, so a call first heard
        of mid-way (this instance started later, or missed messages) is complete at once.
        """
        kind, call_id = message.get("kind"), message.get("call_id")
        if not isinstance(call_id, str):
            return None
        with self.lock:
            if call_id in self.calls and call_id not in self.owners:
                return None  # a call of this process: its own messages are the truth
            if kind == "call_end":
                self._ended(call_id)
                return {**message, "state": None}
            state = message.get("state")
            if kind not in ("call_start", "event") or not isinstance(state, dict) or "started_at" not in state:
                return None
            state = {**state, "call_id": call_id, "remote": True}
            # Back after being given up on (its instance was silent a while): live again.
            self.recently_ended.pop(call_id, None)
            self.calls[call_id] = state
            self.owners[call_id] = instance
            return {**message, "state": dict(state)}

    def end_remote(self, call_ids, outcome: str, reason: str) -> list[dict]:
        """End other instances' calls whose end will never arrive; the call_end messages to send."""
        ended = []
        with self.lock:
            for call_id in call_ids:
                if call_id in self.owners:
                    self._ended(call_id)
                    ended.append({"kind": "call_end", "call_id": call_id, "ts": time.time(), "outcome": outcome,
                                  "reason": reason, "state": None})
        return ended


class PublishingStore:
    """The call store, plus a live message for everything written through it."""

    def __init__(self, store, publisher: Publisher, live: LiveCalls | None = None):
        self._store = store
        self.publisher = publisher
        self.live = live or LiveCalls()

    def _publish(self, message: dict) -> None:
        try:
            # One step under the lock: a publisher listing this process's calls (pg_live's beat)
            # then never sees a call's state change without its message being queued too.
            with self.live.lock:
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

    def close(self, *args, **kwargs):
        try:
            closer = getattr(self.publisher, "close", None)
            if closer is not None:
                closer()  # first: the other instances hear at once that this one is going
        except Exception:
            log.exception("dashboard: cannot close the live publisher")
        return self._store.close(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)
