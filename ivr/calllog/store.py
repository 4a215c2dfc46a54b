"""Durable call log: one row per call plus its ordered event stream, in SQLite or PostgreSQL.

Writes come from the audio path and the asyncio event loop, so they must never wait on the
database. ``start_call``, ``add_event`` and ``end_call`` only serialise their arguments to JSON
and append to an in-memory queue; one background writer thread drains the queue and commits in
small transactions (as soon as ``BATCH_SIZE`` records are waiting, or ``batch_interval``
seconds after the oldest waiting record was queued, whichever comes first). A crash therefore
loses at most the last ``batch_interval`` seconds of records.

When the database cannot be written (locked, disk full, server down or unreachable) the writer
logs the failure on the ``ivr.calllog`` logger, reconnects and retries with a growing back-off
while the queue keeps filling; nothing is raised into the caller, and a batch re-sent after a
lost commit is not written twice (see ``backend``). The queue is bounded (``max_buffer``
events): once it is full new *events* are dropped (and that is logged as an error every few
seconds), while call start/end records are always kept so the calls table stays complete.

Reads (``list_calls``, ``count_calls``, ``summary``, ``get_call``, ``events_after``,
``active_calls``) are synchronous, open their own short-lived connection and see what has been
committed; call ``flush()`` first to see your own latest writes. From a coroutine run them in a
worker thread (``asyncio.to_thread``).

The database-specific parts live in ``sqlite.py`` and ``postgres.py`` (connections, schema
migrations, how dead owners are recognised); the SQL for writes (``backend.py``) and reads
(``reads.py``) is shared.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from . import owner as owners
from . import reads, review_queue
from .backend import Backend, Op
from .encoding import dumps
from .events import check_event_type
from .sqlite import SCHEMA_VERSION, SQLiteBackend  # noqa: F401  (SCHEMA_VERSION: SQLite's, for tools)

log = logging.getLogger("ivr.calllog")

DEFAULT_PATH = Path("data") / "ivr.sqlite3"

#: Commit as soon as this many records are waiting, without waiting for ``batch_interval``.
BATCH_SIZE = 100
#: Most records written in one transaction (a backlog after an outage drains in chunks).
MAX_BATCH = 1000
#: Retry back-off bounds (seconds) while the database cannot be written.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
#: Failures are logged as warnings at first, as errors once they have lasted this long.
FAILURE_ERROR_AFTER = 10.0
#: Repeated failure / drop messages are logged at most this often (seconds).
LOG_EVERY = 5.0

_OPEN_STORES: "weakref.WeakSet[CallStore]" = weakref.WeakSet()


def _text(value: Any) -> str | None:
    """A column value as text PostgreSQL accepts (no NUL), the same on every backend; caller
    numbers come from the webhook, so a NUL must not cost the call its row."""
    return None if value is None else str(value).replace("\x00", "\ufffd")


class CallStore:
    """The call log: a non-blocking, batching writer thread over a backend. See the module docstring.

    ``target``: a SQLite file path, or a ``Backend`` (``open_store`` builds one from a URL).

    ``recover`` (default true): on open, close calls that were started but never ended by a
    store that is no longer running, with outcome ``"abnormal"`` (PostgreSQL: also while
    running, for instances that stopped heartbeating). Pass ``recover=False`` from read-only
    tools (CLI, dashboard) that open the database next to a running server; calls owned by a
    live server process are left alone either way.

    ``busy_timeout``: how long one write attempt waits for a lock held by another connection
    before the batch is retried (the queue keeps filling meanwhile).
    """

    def __init__(self, target: str | Path | Backend, *, batch_interval: float = 0.05, max_buffer: int = 100_000,
                 busy_timeout: float = 1.0, recover: bool = True) -> None:
        self.backend = target if isinstance(target, Backend) else SQLiteBackend(target)
        self.label = self.backend.label
        self.batch_interval = max(0.0, float(batch_interval))
        self.max_buffer = max(1, int(max_buffer))
        self.busy_timeout = max(0.0, float(busy_timeout))
        self.recover = bool(recover)

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer waits on this
        self._done_cond = threading.Condition(self._lock)  # flush() waits on this
        self._queue: deque[Op] = deque()
        self._ticket = 0  # last ticket handed out
        self._done = 0  # every ticket up to this one is committed (or was given up on)
        self._flush_waiters = 0
        self._closed = False  # no more writes accepted
        self._stopping = False  # writer: exit once the queue is empty or a write fails
        self._owns_calls = False  # a call was started here: keep the heartbeat going

        self._written = 0
        self._dropped = 0
        self._failed = 0
        self._last_drop_log = float("-inf")
        self._warned_closed = False

        # Writer-thread state.
        self._conn: Any = None
        self._next_seq: dict[str, int] = {}
        self._recover_pending = self.recover
        self._failing_since: float | None = None
        self._last_fail_log = float("-inf")
        self._last_heartbeat = float("-inf")
        self._last_sweep = time.monotonic()

        self._instance = uuid.uuid4().hex
        self._owner = owners.make_owner(self._instance)
        owners.register(self._instance)

        # Migrate and close stale calls now, so reads work at once and recovery happens before
        # this instance writes anything. If the database is not available yet, the writer thread
        # does it before its first write.
        try:
            conn = self.backend.connect(self.busy_timeout)
            try:
                self._prepare(conn)
            finally:
                conn.close()
        except Exception as exc:
            log.error("call log database %s is not available (%s); records will be buffered and retried",
                      self.label, exc)

        self._thread = threading.Thread(target=self._run, name=f"ivr-calllog-writer:{self.backend.name}",
                                        daemon=True)
        self._thread.start()
        _OPEN_STORES.add(self)

    @property
    def path(self) -> Path | None:
        """The SQLite file (None for other backends)."""
        return getattr(self.backend, "path", None)

    # ------------------------------------------------------------------ writes (never block)

    def start_call(self, call_id: str, *, flow: str, flow_version: str, caller: str | None = None,
                   called: str | None = None, models: dict | None = None, meta: dict | None = None,
                   started_at: float | None = None) -> None:
        """Record a new call (and its ``call_start`` event). Never blocks, never raises."""
        try:
            ts = time.time() if started_at is None else float(started_at)
            start_data = {"flow": flow, "flow_version": flow_version, "caller": caller, "called": called}
            args = (_text(str(flow)), _text(flow_version), _text(caller), _text(called),
                    dumps(models), dumps(meta), ts, dumps(start_data))
            self._owns_calls = True
            self._enqueue(Op("start", _text(call_id), args), critical=True)
        except Exception:
            log.exception("call log: could not queue start of call %s", call_id)

    def add_event(self, call_id: str, type: str, data: dict | None = None, ts: float | None = None) -> None:
        """Queue one event. Raises ``ValueError`` for an unknown type; otherwise never raises or blocks."""
        check_event_type(type)
        try:
            if data is None:
                data = {}
            elif not isinstance(data, Mapping):
                data = {"value": data}
            node = None
            if type == "node":
                node = data.get("node", data.get("to"))
                node = _text(node)
            ts = time.time() if ts is None else float(ts)
            self._enqueue(Op("event", _text(call_id), (ts, type, dumps(data), node)), critical=False)
        except Exception:
            log.exception("call log: could not queue %s event of call %s", type, call_id)

    def end_call(self, call_id: str, outcome: str, *, ended_at: float | None = None,
                 summary: dict | None = None) -> None:
        """Record the end of a call (and its ``call_end`` event). Never blocks, never raises."""
        try:
            ts = time.time() if ended_at is None else float(ended_at)
            args = (ts, _text(outcome), dumps(summary), dumps({"outcome": str(outcome)}))
            self._enqueue(Op("end", _text(call_id), args), critical=True)
        except Exception:
            log.exception("call log: could not queue end of call %s", call_id)

    def _enqueue(self, op: Op, *, critical: bool) -> None:
        with self._lock:
            if self._closed:
                warn, self._warned_closed = not self._warned_closed, True
                dropped = None
            elif not critical and len(self._queue) >= self.max_buffer:
                self._dropped += 1
                dropped = self._dropped
                warn = False
            else:
                self._ticket += 1
                op.ticket = self._ticket
                op.t = time.monotonic()
                self._queue.append(op)
                n = len(self._queue)
                if n == 1 or n == BATCH_SIZE:
                    self._wake.notify()
                return
        if warn:
            log.warning("call log %s is closed; ignoring further records (call %s)", self.label, op.call_id)
        if dropped is not None:
            now = time.monotonic()
            if now - self._last_drop_log >= LOG_EVERY:
                self._last_drop_log = now
                log.error("CALL LOG BUFFER FULL (%d records waiting for %s): dropping events, %d dropped so far",
                          self.max_buffer, self.label, dropped)

    # ------------------------------------------------------------------ flush / close

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is committed. False on timeout.

        Blocks the calling thread; from a coroutine use ``await store.aflush()``.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            target = self._ticket
            if self._done >= target:
                return True
            if not self._thread.is_alive():
                return False
            self._flush_waiters += 1
            self._wake.notify()
            try:
                while self._done < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._done_cond.wait(min(remaining, 0.5))
                return True
            finally:
                self._flush_waiters -= 1

    async def aflush(self, timeout: float = 5.0) -> bool:
        """``flush`` for coroutines: waits in a worker thread, not on the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Flush (up to ``timeout`` seconds), then stop the writer. Later writes are ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=self.busy_timeout + 5.0)
        with self._lock:
            left = len(self._queue)
        if left:
            log.error("call log %s closed with %d record(s) not written (database unavailable)", self.label, left)
        owners.unregister(self._instance)
        _OPEN_STORES.discard(self)

    def __enter__(self) -> "CallStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict:
        """Counters for health checks: queued, written, dropped (buffer full), failed (bad records)."""
        with self._lock:
            return {"backend": self.backend.name, "queued": len(self._queue), "written": self._written, "dropped": self._dropped,
                    "failed": self._failed,
                    "failing_for_s": (None if self._failing_since is None
                                      else round(time.monotonic() - self._failing_since, 3)),
                    "writer_alive": self._thread.is_alive(), "closed": self._closed}

    # ------------------------------------------------------------------ writer thread

    def _idle_timeout(self) -> float | None:
        """How long the idle writer may sleep before a heartbeat or a sweep is due."""
        waits = []
        hb = self.backend.heartbeat_interval
        if hb and self._owns_calls:
            waits.append(self._last_heartbeat + hb - time.monotonic())
        sweep = self.backend.recover_interval
        if sweep and self.recover:
            waits.append(self._last_sweep + sweep - time.monotonic())
        return max(0.0, min(waits)) if waits else None

    def _housekeeping(self) -> None:
        """Heartbeat and sweep for dead instances' calls, when due (writer thread)."""
        now = time.monotonic()
        hb = self.backend.heartbeat_interval
        sweep = self.backend.recover_interval
        heartbeat_due = hb and self._owns_calls and now - self._last_heartbeat >= hb
        sweep_due = sweep and self.recover and now - self._last_sweep >= sweep
        if not heartbeat_due and not sweep_due:
            return
        # Due times move on even if this fails: a database that is down is retried at the next
        # interval (or by the next write), not in a tight loop.
        if heartbeat_due:
            self._last_heartbeat = now
        if sweep_due:
            self._last_sweep = now
        try:
            conn = self._get_conn()
            if heartbeat_due:
                self.backend.heartbeat(conn, self._owner, self._instance)
            if sweep_due:
                self.backend.recover(conn, self._owner)
        except Exception as exc:
            # The next write notices a dead connection too; here it is only logged.
            log.warning("call log %s: heartbeat/recovery failed (%s: %s)", self.label, type(exc).__name__, exc)
            self._close_conn()

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    timeout = self._idle_timeout()
                    if timeout == 0.0:
                        break
                    self._wake.wait(timeout)
                if not self._queue:
                    if self._stopping:
                        break
                    batch = None
                else:
                    if backoff:
                        deadline = time.monotonic() + backoff
                        while not self._stopping and (remaining := deadline - time.monotonic()) > 0:
                            self._wake.wait(remaining)
                    else:
                        deadline = self._queue[0].t + self.batch_interval
                        while (len(self._queue) < BATCH_SIZE and not self._flush_waiters and not self._stopping
                               and (remaining := deadline - time.monotonic()) > 0):
                            self._wake.wait(remaining)
                    batch = list(itertools.islice(self._queue, MAX_BATCH))
                stopping = self._stopping
            if batch is None:
                self._housekeeping()
                continue
            try:
                consumed, error = self._write_batch(batch)
            except BaseException as exc:  # a bug; keep the writer alive
                log.exception("call log writer: unexpected error")
                consumed, error = 0, exc
            if error is None and self._failing_since is not None:
                log.warning("call log %s writable again after %.1f s", self.label,
                            time.monotonic() - self._failing_since)
                self._failing_since = None
            if consumed:
                with self._lock:
                    for _ in range(consumed):
                        self._queue.popleft()
                    self._done = batch[consumed - 1].ticket
                    self._done_cond.notify_all()
            if error is None:
                backoff = 0.0
                self._housekeeping()
                continue
            self._close_conn()
            self._note_failure(error)
            if stopping:
                break
            backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
        self._retire()
        self._close_conn()
        with self._lock:
            self._done_cond.notify_all()

    def _retire(self) -> None:
        if not self._owns_calls or self.backend.heartbeat_interval is None:
            return
        try:
            self.backend.retire(self._get_conn(), self._instance)
        except Exception as exc:
            log.warning("call log %s: could not record this instance's stop (%s)", self.label, exc)

    def _note_failure(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            queued = len(self._queue)
        if self._failing_since is None:
            self._failing_since = now
            self._last_fail_log = now
            log.warning("call log write to %s failed (%s: %s); %d record(s) buffered, retrying",
                        self.label, type(exc).__name__, exc, queued)
        elif now - self._last_fail_log >= LOG_EVERY:
            self._last_fail_log = now
            level = logging.ERROR if now - self._failing_since >= FAILURE_ERROR_AFTER else logging.WARNING
            log.log(level, "call log writes to %s failing for %.1f s (%s: %s); %d record(s) buffered",
                    self.label, now - self._failing_since, type(exc).__name__, exc, queued)

    def _write_batch(self, batch: list[Op]) -> tuple[int, BaseException | None]:
        """Write ``batch``; return how many leading records are done with and the transient error, if any."""
        try:
            conn = self._get_conn()
            self._apply(conn, batch)
            return len(batch), None
        except Exception as exc:
            if self.backend.is_transient(exc) or self._conn is None:
                # The commit may have happened before the connection broke: keep the seqs, so
                # the retry finds those rows instead of writing them again.
                for op in batch:
                    if op.seq is not None:
                        op.maybe_written = True
                return 0, exc
            log.warning("call log batch failed (%s: %s); writing its %d record(s) one by one",
                        type(exc).__name__, exc, len(batch))
        self._forget_unwritten_seqs(batch)
        conn = self._conn
        for i, op in enumerate(batch):
            try:
                self._apply(conn, [op])
            except Exception as exc:
                if self.backend.is_transient(exc):
                    return i, exc
                self._forget_unwritten_seqs([op])
                with self._lock:
                    self._failed += 1
                log.error("call log: dropping %s record of call %s that cannot be written (%s: %s)",
                          op.kind, op.call_id, type(exc).__name__, exc)
        return len(batch), None

    @staticmethod
    def _forget_unwritten_seqs(ops: list[Op]) -> None:
        # That transaction was rolled back: its seqs are free again (no gap for a dropped record).
        for op in ops:
            if not op.maybe_written:
                op.seq = None

    def _apply(self, conn, ops: list[Op]) -> None:
        seqs = self.backend.apply(conn, ops, self._owner, self._next_seq)
        if len(self._next_seq) > 10_000:
            self._next_seq.clear()  # a cache; orphaned calls would otherwise pile up
        self._next_seq.update(seqs)
        for op in ops:
            if op.kind == "end":
                self._next_seq.pop(op.call_id, None)
        with self._lock:
            self._written += len(ops)

    def _get_conn(self):
        if self._conn is None:
            conn = self.backend.connect(self.busy_timeout)
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            # Calls seen by this writer may have been written (or closed) by others meanwhile.
            self._next_seq.clear()
        return self._conn

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _prepare(self, conn) -> None:
        self.backend.migrate(conn)
        if self._owns_calls and self.backend.heartbeat_interval is not None:
            self.backend.heartbeat(conn, self._owner, self._instance)
            self._last_heartbeat = time.monotonic()
        if self._recover_pending:
            self.backend.recover(conn, self._owner)
            self._recover_pending = False
            self._last_sweep = time.monotonic()

    # ------------------------------------------------------------------ reads (synchronous)

    def list_calls(self, limit: int = 50, offset: int = 0, flow: str | None = None, outcome: str | None = None,
                   since: float | datetime | None = None, until: float | datetime | None = None, *,
                   caller: str | None = None, handoff_reason: str | None = None, q: str | None = None,
                   channel: str | None = None) -> list[dict]:
        """Calls, newest first, without their events.

        ``since``/``until`` bound ``started_at`` (epoch seconds or datetime; ``since`` inclusive,
        ``until`` exclusive). ``caller``: substring of the caller number. ``handoff_reason``:
        calls with a ``handoff`` event whose ``trigger`` or ``reason`` contains it. ``q``: text
        in the call id or in what the caller said (transcripts). Text matches ignore case.
        ``channel``: ``phone`` or ``browser`` (test calls from the dashboard).
        """
        return reads.list_calls(self.backend, limit, offset, flow=flow, outcome=outcome, since=since, until=until,
                                caller=caller, handoff_reason=handoff_reason, q=q, channel=channel)

    def count_calls(self, *, flow: str | None = None, outcome: str | None = None,
                    since: float | datetime | None = None, until: float | datetime | None = None,
                    caller: str | None = None, handoff_reason: str | None = None, q: str | None = None,
                    channel: str | None = None) -> int:
        """How many calls ``list_calls`` with the same filters would return without a limit."""
        return reads.count_calls(self.backend, flow=flow, outcome=outcome, since=since, until=until,
                                 caller=caller, handoff_reason=handoff_reason, q=q, channel=channel)

    def summary(self, since: float | datetime | None = None, until: float | datetime | None = None,
                flow: str | None = None, bucket_s: float = 3600, channel: str | None = "phone") -> dict:
        """Dashboard totals over calls started in [since, until), the phone line's only by default;
        see ``reads.summary``."""
        return reads.summary(self.backend, since=since, until=until, flow=flow, bucket_s=bucket_s, channel=channel)

    def review_queue(self, *, since=None, until=None, flow: str | None = None, channel: str | None = "phone",
                     limit: int = 10_000, skip=None) -> list[dict]:
        """The turns worth a human look, newest first; see ``review_queue.turns_to_review``."""
        return review_queue.turns_to_review(self.backend, since=since, until=until, flow=flow, channel=channel,
                                            limit=limit, skip=skip)

    def review_actions(self, *, flow: str | None = None, limit: int | None = 10_000) -> list[dict]:
        """The reviewers' decisions, newest first; see ``review_queue.review_actions``."""
        return review_queue.review_actions(self.backend, flow=flow, limit=limit)

    def get_call(self, call_id: str) -> dict | None:
        """The call row plus ``events``: a list of ``{call_id, seq, ts, type, data}`` in order."""
        return reads.get_call(self.backend, call_id)

    def events_after(self, call_id: str, seq: int = 0, limit: int | None = None) -> list[dict]:
        """The call's committed events with ``seq`` above the given one, in order."""
        return reads.events_after(self.backend, call_id, seq, limit)

    def active_calls(self) -> list[dict]:
        """Committed calls with no end yet, oldest first."""
        return reads.active_calls(self.backend)

    def __repr__(self) -> str:
        return f"CallStore({self.label!r})"


def open_store(url_or_path: str | Path | None = None, **kwargs: Any) -> CallStore:
    """Open the call log named by a path or URL; ``None`` means ``./data/ivr.sqlite3``.

    ``sqlite:///relative/path.sqlite3`` and ``sqlite:////absolute/path.sqlite3`` follow the
    SQLAlchemy convention; ``postgresql://user:password@host:5432/db`` (or ``postgres://``,
    ``postgresql+psycopg://``, or any libpq URI parameters) opens PostgreSQL. ``stale_after``
    (PostgreSQL only) and the other keyword arguments go to the backend and ``CallStore``.
    """
    stale_after = kwargs.pop("stale_after", None)
    if url_or_path is None or not str(url_or_path).strip():
        return CallStore(DEFAULT_PATH, **kwargs)
    s = str(url_or_path).strip()
    if "://" in s:
        scheme, rest = s.split("://", 1)
        scheme = scheme.lower()
        if scheme == "sqlite":
            rest = rest.split("?", 1)[0]
            if not rest.startswith("/") or len(rest) < 2:
                raise ValueError(f"bad sqlite URL {s!r}; expected sqlite:///path/to/file.sqlite3")
            return CallStore(rest[1:], **kwargs)
        if scheme.split("+", 1)[0] in ("postgres", "postgresql"):
            from .postgres import PostgresBackend

            options = {} if stale_after is None else {"stale_after": stale_after}
            return CallStore(PostgresBackend(s, **options), **kwargs)
        raise ValueError(f"unsupported call log URL scheme {scheme!r} in {s!r}; use sqlite:///path or postgresql://")
    return CallStore(s, **kwargs)


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN_STORES):
        try:
            store.close(timeout=2.0)
        except Exception:  # pragma: no cover
            pass
