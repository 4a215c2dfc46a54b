"""Live dashboard updates shared by every instance on one PostgreSQL database (LISTEN/NOTIFY).

Each instance hands its own messages to its own browsers at once (`LocalPublisher`, as with
SQLite) and also NOTIFYs them on one channel; each instance LISTENs on that channel, folds the
other instances' messages into its `LiveCalls` and hands them to its browsers. A browser behind
any instance of the proxy therefore sees every call.

Own messages are delivered locally and skipped when they come back from the channel (every
payload names its instance), rather than delivered only through the NOTIFY round trip: the
calls on this instance must stay live on its dashboard while PostgreSQL is down or slow (which
is when an operator is looking), and they need no database hop on the way.

Sending never waits: `publish` appends to a bounded queue and one sender thread NOTIFYs in
batches, one transaction each, on its own connection. While PostgreSQL cannot be reached the
queue keeps the newest ``MAX_QUEUE`` messages and counts those it lets go (``dropped``).
NOTIFY payloads must be shorter than 8000 bytes: long strings are cut, and if the message still
does not fit its event data is left out (the live page shows the state sent alongside; the call
page reads whole events from the call log).

Receiving: one LISTEN connection on its own thread, reconnected with a back-off when PostgreSQL
restarts. Every message carries its instance's sequence number; on a gap (messages sent while
this listener was away, or dropped by their sender) this instance's browsers are told to start
over from a fresh snapshot. Every ``BEAT_S`` seconds each instance sends a beat listing its calls in
progress: a call missing from its instance's beat (its end was lost) is ended here, and the
calls of an instance not heard from for ``EXPIRE_S`` seconds (killed, cut off) are ended as
``abnormal``, as the call log's sweep will record them. A clean stop sends a last ``bye``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque

import psycopg
from psycopg import sql

from .live import LiveCalls, LocalPublisher, Subscription

log = logging.getLogger("ivr.dashboard")

CHANNEL = "ivr_live"
#: PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
PAYLOAD_LIMIT = 7999
#: Strings in a message longer than this are cut when the message would not fit.
MAX_STRING = 500
#: Messages waiting to be sent; past this the oldest are dropped (PostgreSQL down).
MAX_QUEUE = 2000
MAX_BATCH = 200
#: Seconds between beats; an instance silent for EXPIRE_S is taken for dead.
BEAT_S = 5.0
EXPIRE_S = 15.0
#: Longest a beat lists call ids (more than any instance carries; beyond it, no list).
MAX_BEAT_IDS = 150
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
#: How often the listener wakes up without notifications, to expire silent instances and stop.
POLL_S = 0.25
LOG_EVERY = 5.0


def _dumps(obj) -> str:
    return json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":"))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _cut(obj, limit: int):
    if isinstance(obj, str):
        return obj if len(obj) <= limit else obj[:limit] + "…"
    if isinstance(obj, dict):
        return {k: _cut(v, limit) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_cut(v, limit) for v in obj[:20]]
    return obj


def encode(envelope: dict) -> str | None:
    """The NOTIFY payload for one envelope, cut down until it fits; None if it never does (or is
    not JSON at all: a retry would fail the same way and hold up every later message)."""
    try:
        return _encode(envelope)
    except (TypeError, ValueError, RecursionError):
        return None


def _encode(envelope: dict) -> str | None:
    text = _dumps(envelope)
    if len(text.encode()) <= PAYLOAD_LIMIT:
        return text
    message = envelope.get("m")
    if not isinstance(message, dict):
        return None
    smaller = {**envelope, "m": {**_cut(message, MAX_STRING), "truncated": True}}
    text = _dumps(smaller)
    if len(text.encode()) <= PAYLOAD_LIMIT:
        return text
    smaller["m"]["data"] = {}
    text = _dumps(smaller)
    return text if len(text.encode()) <= PAYLOAD_LIMIT else None


class PgLivePublisher:
    """`publish`/`subscribe` like `LocalPublisher`, across every instance on one database."""

    def __init__(self, url: str, live: LiveCalls, local: LocalPublisher | None = None, *, channel: str = CHANNEL,
                 max_queue: int = MAX_QUEUE, beat_s: float | None = None, expire_s: float | None = None,
                 connect_timeout: float = 3.0) -> None:
        self.url = url
        self.live = live
        self.local = local or LocalPublisher()
        self.channel = channel
        self.instance = uuid.uuid4().hex[:16]
        self.max_queue = max(1, int(max_queue))
        self.beat_s = BEAT_S if beat_s is None else float(beat_s)
        self.expire_s = EXPIRE_S if expire_s is None else float(expire_s)
        self.connect_timeout = max(1, int(round(connect_timeout)))

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[dict] = deque()
        self._seq = 0
        self._closing = False
        self._stop = threading.Event()
        self._stop_by = float("inf")  # sender: give up on what is still queued after this
        self._started = False

        self._counts = {"sent": 0, "dropped": 0, "too_big": 0, "received": 0, "resyncs": 0, "reconnects": 0,
                        "expired": 0, "failed": 0}
        self._echo_ms: deque[float] = deque(maxlen=200)
        self._last_drop_log = float("-inf")
        self._last_send_log = float("-inf")
        self._last_listen_log = float("-inf")
        self.listening = threading.Event()  # the LISTEN connection is up

        # Listener thread only.
        self._last_seq: dict[str, int] = {}
        self._heard: dict[str, float] = {}
        self._listening_since: float | None = None

        self._sender = threading.Thread(target=self._send_loop, name="ivr-live-notify", daemon=True)
        self._listener = threading.Thread(target=self._listen_loop, name="ivr-live-listen", daemon=True)

    # ------------------------------------------------------------------ Publisher

    @property
    def subscribers(self) -> int:
        return self.local.subscribers

    def subscribe(self) -> Subscription:
        return self.local.subscribe()

    def publish(self, message: dict) -> None:
        """Never blocks: called from the call path."""
        self.local.publish(message)
        wire = dict(message)
        if isinstance(wire.get("data"), dict):
            wire["data"] = dict(wire["data"])  # the caller's dict: it may change before it is sent
        self._enqueue({"m": wire})

    def start(self) -> "PgLivePublisher":
        if not self._started:
            self._started = True
            self._sender.start()
            self._listener.start()
        return self

    def close(self, timeout: float = 1.0) -> None:
        """Send what is queued and a `bye` (up to ``timeout`` seconds), then stop both threads."""
        with self._lock:
            if self._closing:
                return
            self._enqueue_locked({"bye": True})
            self._closing = True
            self._stop_by = time.monotonic() + timeout
            self._stop.set()
            self._wake.notify()
        if self._started:
            self._sender.join(timeout + self.connect_timeout + 1)
            self._listener.join(POLL_S + self.connect_timeout + 1)

    def stats(self) -> dict:
        with self._lock:
            counts = dict(self._counts, queued=len(self._queue))
        echo = sorted(self._echo_ms)
        counts["listening"] = self.listening.is_set()
        counts["echo_ms_p50"] = round(echo[len(echo) // 2], 2) if echo else None
        counts["instances_heard"] = len(self._heard)
        return counts

    # ------------------------------------------------------------------ sending

    def _enqueue(self, envelope: dict) -> None:
        dropped = None
        with self._lock:
            if self._closing:
                return
            dropped = self._enqueue_locked(envelope)
        if dropped:
            self._log_drop(dropped)

    def _enqueue_locked(self, envelope: dict) -> int | None:
        self._seq += 1
        envelope["i"], envelope["n"], envelope["t"] = self.instance, self._seq, time.time()
        dropped = None
        if len(self._queue) >= self.max_queue:
            # The newest are worth more to a live view than the oldest; the gap in the sequence
            # tells the receivers to resync.
            self._queue.popleft()
            self._counts["dropped"] += 1
            dropped = self._counts["dropped"]
        self._queue.append(envelope)
        if len(self._queue) == 1:
            self._wake.notify()
        return dropped

    def _log_drop(self, dropped: int) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= LOG_EVERY:
            self._last_drop_log = now
            log.warning("dashboard: live updates for other instances are not getting through (PostgreSQL"
                        " unavailable); %d dropped so far", dropped)

    def _beat(self) -> None:
        # Under the LiveCalls lock: the list matches the messages queued so far, never one ahead.
        with self.live.lock:
            ids = self.live.local_ids()
            with self._lock:
                if self._closing or (self._queue and "beat" in self._queue[-1]):
                    return  # not piling up beats while PostgreSQL is away
                self._enqueue_locked({"beat": ids if len(ids) <= MAX_BEAT_IDS else None})

    def _send_loop(self) -> None:
        conn = None
        backoff = 0.0
        next_beat = time.monotonic()
        while True:
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.beat_s
                self._beat()
            with self._lock:
                while not self._queue and not self._stop.is_set():
                    remaining = next_beat - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                stopping = self._stop.is_set()
            if not batch:
                if stopping:
                    break
                continue
            try:
                if conn is None:
                    conn = self._connect()
                try:
                    self._notify(conn, batch)
                except psycopg.DatabaseError as exc:
                    if isinstance(exc, psycopg.OperationalError) or conn.closed:
                        raise
                    # The database refused something in the batch (an encoding it cannot store,
                    # say): retrying the same batch would stall every later message behind it.
                    self._notify_each(conn, batch, exc)
                backoff = 0.0
            except Exception as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                self._requeue(batch)
                now = time.monotonic()
                if now - self._last_send_log >= LOG_EVERY:
                    self._last_send_log = now
                    log.warning("dashboard: cannot NOTIFY live updates (%s: %s); %d queued, retrying",
                                type(exc).__name__, _one_line(exc), len(self._queue))
                if stopping and now >= self._stop_by:
                    break
                backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
                time.sleep(min(backoff, max(0.0, self._stop_by - now)))
        if conn is not None:
            conn.close()

    def _requeue(self, batch: list[dict]) -> None:
        with self._lock:
            room = self.max_queue - len(self._queue)
            keep = batch[-room:] if room > 0 else []
            self._counts["dropped"] += len(batch) - len(keep)
            self._queue.extendleft(reversed(keep))

    def _notify_each(self, conn, batch: list[dict], first: Exception) -> None:
        log.warning("dashboard: a batch of %d live update(s) was refused (%s: %s); sending them one by one",
                    len(batch), type(first).__name__, _one_line(first))
        for envelope in batch:
            try:
                self._notify(conn, [envelope])
            except psycopg.DatabaseError as exc:
                if isinstance(exc, psycopg.OperationalError) or conn.closed:
                    raise
                with self._lock:
                    self._counts["failed"] += 1
                log.error("dashboard: live update refused by the database, skipped (%s: %s)", type(exc).__name__,
                          _one_line(exc))

    def _notify(self, conn, batch: list[dict]) -> None:
        payloads = []
        for envelope in batch:
            payload = encode(envelope)
            if payload is None:
                with self._lock:
                    self._counts["too_big"] += 1
                log.warning("dashboard: a live %s message of call %s is too big to NOTIFY; skipped",
                            (envelope.get("m") or {}).get("kind"), (envelope.get("m") or {}).get("call_id"))
                # Its sequence number still goes out: a gap would make every receiver resync.
                payload = _dumps({k: envelope[k] for k in ("i", "n", "t")})
            payloads.append((self.channel, payload))
        if not payloads:
            return
        # One transaction: one commit per batch, and a batch either all goes or is all retried.
        with conn.transaction():
            conn.cursor().executemany("SELECT pg_notify(%s, %s)", payloads)
        with self._lock:
            self._counts["sent"] += len(payloads)

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout,
                               application_name="ivr-live", keepalives=1, keepalives_idle=5,
                               keepalives_interval=2, keepalives_count=3)

    # ------------------------------------------------------------------ receiving

    def _listen_loop(self) -> None:
        backoff = 0.0
        connected_before = False
        down_since: float | None = None
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                self._listening_since = time.monotonic()
                self.listening.set()
                backoff = 0.0
                if connected_before:
                    # No resync here: whatever was missed meanwhile shows as a gap in its sender's
                    # sequence with the next message or beat, and only then do browsers start over.
                    with self._lock:
                        self._counts["reconnects"] += 1
                    log.warning("dashboard: live updates from other instances flowing again after %.1f s",
                                time.monotonic() - (down_since or time.monotonic()))
                connected_before = True
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=POLL_S):
                        self._receive(note.payload)
                    self._expire_silent()
            except Exception as exc:
                if self._stop.is_set():
                    break
                if self.listening.is_set() or down_since is None:
                    down_since = time.monotonic()
                self.listening.clear()
                self._listening_since = None
                now = time.monotonic()
                if now - self._last_listen_log >= LOG_EVERY:
                    self._last_listen_log = now
                    log.warning("dashboard: not receiving other instances' live updates (%s: %s); reconnecting",
                                type(exc).__name__, _one_line(exc))
            finally:
                if conn is not None:
                    conn.close()
            backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
            self._stop.wait(backoff)
        self.listening.clear()

    def _resync(self, why: str) -> None:
        with self._lock:
            self._counts["resyncs"] += 1
        log.info("dashboard: live views start over (%s)", why)
        self.local.resync()

    def _receive(self, payload: str) -> None:
        try:
            envelope = json.loads(payload)
        except ValueError:
            log.warning("dashboard: ignoring a live message that is not JSON: %r", payload[:80])
            return
        if not isinstance(envelope, dict):
            return
        instance, seq = envelope.get("i"), envelope.get("n")
        if not isinstance(instance, str) or not isinstance(seq, int):
            return
        if instance == self.instance:
            sent = envelope.get("t")
            if isinstance(sent, (int, float)):
                self._echo_ms.append((time.time() - sent) * 1000)
            return
        with self._lock:
            self._counts["received"] += 1
        self._heard[instance] = time.monotonic()
        last = self._last_seq.get(instance)
        if last is not None and seq <= last:
            return  # re-sent after a commit whose answer was lost
        self._last_seq[instance] = seq
        if last is not None and seq != last + 1:
            self._resync(f"{seq - last - 1} message(s) from instance {instance} never arrived")
        if envelope.get("bye"):
            self._forget(instance, "unknown", "its instance stopped")
            return
        if "beat" in envelope:
            ids = envelope["beat"]
            if isinstance(ids, list):
                gone = set(self.live.remote_ids(instance)) - set(ids)
                self._send_ends(self.live.end_remote(gone, "unknown", "its end never arrived"))
            return
        message = envelope.get("m")
        if isinstance(message, dict):
            out = self.live.apply_remote(message, instance)
            if out is not None:
                self.local.publish(out)

    def _expire_silent(self) -> None:
        since = self._listening_since
        now = time.monotonic()
        # Everyone looks silent to a listener that has just come back: judge only after a while.
        if since is None or now - since < self.expire_s:
            return
        for instance, heard in list(self._heard.items()):
            if now - heard > self.expire_s:
                self._forget(instance, "abnormal", f"instance silent for {now - heard:.0f} s")

    def _forget(self, instance: str, outcome: str, reason: str) -> None:
        self._heard.pop(instance, None)
        self._last_seq.pop(instance, None)
        ended = self.live.end_remote(self.live.remote_ids(instance), outcome, reason)
        if ended:
            log.warning("dashboard: %d live call(s) of instance %s ended here (%s)", len(ended), instance, reason)
        self._send_ends(ended)

    def _send_ends(self, messages: list[dict]) -> None:
        if messages:
            with self._lock:
                self._counts["expired"] += len(messages)
        for message in messages:
            self.local.publish(message)
