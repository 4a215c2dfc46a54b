"""Durable call log: one row per call plus its ordered event stream, in SQLite (WAL mode).

Writes come from the audio path and the asyncio event loop, so they must never wait on the
database. ``start_call``, ``add_event`` and ``end_call`` only serialise their arguments to JSON
and append to an in-memory queue; one background writer thread drains the queue and commits in
small transactions (as soon as ``BATCH_SIZE`` records are waiting, or ``batch_interval``
seconds after the oldest waiting record was queued, whichever comes first). A crash therefore
loses at most the last ``batch_interval`` seconds of records.

When the database cannot be written (locked, disk full, file unreachable) the writer logs the
failure on the ``ivr.calllog`` logger and retries with a growing back-off while the queue keeps
filling; nothing is raised into the caller. The queue is bounded (``max_buffer`` events): once
it is full new *events* are dropped (and that is logged as an error every few seconds), while
call start/end records are always kept so the calls table stays complete.

Reads (``list_calls``, ``get_call``, ``active_calls``) are synchronous, open their own short-lived
connection and see what has been committed; call ``flush()`` first to see your own latest writes.

Portability: the DML is plain SQL (``?`` placeholders, ``INSERT ... ON CONFLICT ... DO UPDATE``,
``LIMIT ... OFFSET ...``), which a later PostgreSQL backend can reuse by translating placeholders.
What is SQLite-specific is kept to connection set-up (WAL, busy timeout), ``BEGIN IMMEDIATE``
and the ``events.id`` column DDL (``INTEGER PRIMARY KEY AUTOINCREMENT``; PostgreSQL would use an
identity column). Schema changes go through ``MIGRATIONS``: append ``(version, statements)``,
never edit an applied one; ``schema_version`` records each applied version.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections import deque
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from .events import ABNORMAL, check_event_type

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

MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (
        1,
        (
            """CREATE TABLE calls (
                call_id      TEXT PRIMARY KEY,
                flow         TEXT NOT NULL,
                flow_version TEXT,
                caller       TEXT,
                called       TEXT,
                models       TEXT,
                meta         TEXT,
                started_at   DOUBLE PRECISION NOT NULL,
                ended_at     DOUBLE PRECISION,
                outcome      TEXT,
                summary      TEXT,
                last_node    TEXT,
                owner        TEXT
            )""",
            "CREATE INDEX idx_calls_started_at ON calls (started_at)",
            "CREATE INDEX idx_calls_ended_at ON calls (ended_at)",
            # SQLite: INTEGER PRIMARY KEY AUTOINCREMENT. PostgreSQL: BIGINT GENERATED ALWAYS AS IDENTITY.
            """CREATE TABLE events (
                id      INTEGER PRIMARY KEY AUTOINCREMENT,
                call_id TEXT NOT NULL,
                seq     INTEGER NOT NULL,
                ts      DOUBLE PRECISION NOT NULL,
                type    TEXT NOT NULL,
                data    TEXT
            )""",
            "CREATE INDEX idx_events_call_seq ON events (call_id, seq)",
        ),
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_CALL_COLUMNS = ("call_id", "flow", "flow_version", "caller", "called", "models", "meta",
                 "started_at", "ended_at", "outcome", "summary", "last_node")
_JSON_COLUMNS = ("models", "meta", "summary")
_CALL_SELECT = "SELECT " + ", ".join(_CALL_COLUMNS) + " FROM calls"

# Store instances open in this process, by instance id: a call whose owner is this process but
# no open instance was left unfinished by a store that has been closed.
_LIVE_INSTANCES: set[str] = set()
_LIVE_LOCK = threading.Lock()
_OPEN_STORES: "weakref.WeakSet[CallStore]" = weakref.WeakSet()


def _dumps(obj: Any) -> str | None:
    if obj is None:
        return None
    try:
        return json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # non-string keys, circular references
        return json.dumps({"unserializable": repr(obj)[:4000], "error": str(exc)})


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _epoch(t: float | datetime | None) -> float | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return t.timestamp()
    return float(t)


def _proc_start_token(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(owner: str | None) -> bool:
    """Whether the store instance that started a call may still be running."""
    try:
        o = json.loads(owner) if owner else None
    except ValueError:
        return False
    if not isinstance(o, dict) or o.get("host") != socket.gethostname():
        # SQLite is a local database: a different host name is an earlier container or machine.
        return False
    pid = o.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == os.getpid() and o.get("start") == _proc_start_token(pid):
        with _LIVE_LOCK:
            return o.get("instance") in _LIVE_INSTANCES
    if os.path.isdir("/proc"):
        token = _proc_start_token(pid)
        return token is not None and token == o.get("start")
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _is_transient(exc: BaseException) -> bool:
    """Errors worth retrying the whole batch for (the database, not the record, is the problem)."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                        sqlite3.DataError, sqlite3.NotSupportedError)):
        return False
    return isinstance(exc, (sqlite3.DatabaseError, OSError))


class _Op:
    __slots__ = ("kind", "call_id", "args", "ticket", "t")

    def __init__(self, kind: str, call_id: str, args: tuple) -> None:
        self.kind = kind  # "start" | "event" | "end"
        self.call_id = call_id
        self.args = args
        self.ticket = 0
        self.t = 0.0


class CallStore:
    """SQLite call log with a non-blocking, batching writer thread. See the module docstring.

    ``recover`` (default true): on open, close calls that were started but never ended by a
    store that is no longer running, with outcome ``"abnormal"``. Pass ``recover=False`` from
    read-only tools (CLI, dashboard) that open the database next to a running server; calls
    owned by a live server process on this host are left alone either way.

    ``busy_timeout``: how long one write attempt waits for a lock held by another connection
    before the batch is retried (the queue keeps filling meanwhile).
    """

    def __init__(self, path: str | Path, *, batch_interval: float = 0.05, max_buffer: int = 100_000,
                 busy_timeout: float = 1.0, recover: bool = True) -> None:
        if str(path) == ":memory:" or str(path).startswith("file::memory:"):
            raise ValueError("the call log needs a database file (each connection would get its own :memory: db)")
        self.path = Path(path).expanduser()
        self.batch_interval = max(0.0, float(batch_interval))
        self.max_buffer = max(1, int(max_buffer))
        self.busy_timeout = max(0.0, float(busy_timeout))

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the writer waits on this
        self._done_cond = threading.Condition(self._lock)  # flush() waits on this
        self._queue: deque[_Op] = deque()
        self._ticket = 0  # last ticket handed out
        self._done = 0  # every ticket up to this one is committed (or was given up on)
        self._flush_waiters = 0
        self._closed = False  # no more writes accepted
        self._stopping = False  # writer: exit once the queue is empty or a write fails

        self._written = 0
        self._dropped = 0
        self._failed = 0
        self._last_drop_log = float("-inf")
        self._warned_closed = False

        # Writer-thread state.
        self._conn: sqlite3.Connection | None = None
        self._next_seq: dict[str, int] = {}
        self._recover_pending = bool(recover)
        self._failing_since: float | None = None
        self._last_fail_log = float("-inf")

        self._instance = uuid.uuid4().hex
        pid = os.getpid()
        self._owner = json.dumps({"host": socket.gethostname(), "pid": pid,
                                  "start": _proc_start_token(pid), "instance": self._instance})
        with _LIVE_LOCK:
            _LIVE_INSTANCES.add(self._instance)

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("cannot create call log directory %s: %s", self.path.parent, exc)
        # Migrate and close stale calls now, so reads work at once and recovery happens before
        # this instance writes anything. If the database is not available yet, the writer thread
        # does it before its first write.
        try:
            conn = self._connect()
            try:
                self._prepare(conn)
            finally:
                conn.close()
        except Exception as exc:
            log.error("call log database %s is not available (%s); records will be buffered and retried",
                      self.path, exc)

        self._thread = threading.Thread(target=self._run, name=f"ivr-calllog-writer:{self.path.name}",
                                        daemon=True)
        self._thread.start()
        _OPEN_STORES.add(self)

    # ------------------------------------------------------------------ writes (never block)

    def start_call(self, call_id: str, *, flow: str, flow_version: str, caller: str | None = None,
                   called: str | None = None, models: dict | None = None, meta: dict | None = None,
                   started_at: float | None = None) -> None:
        """Record a new call (and its ``call_start`` event). Never blocks, never raises."""
        try:
            ts = time.time() if started_at is None else float(started_at)
            start_data = {"flow": flow, "flow_version": flow_version, "caller": caller, "called": called}
            args = (str(flow), None if flow_version is None else str(flow_version), caller, called,
                    _dumps(models), _dumps(meta), ts, _dumps(start_data))
            self._enqueue(_Op("start", str(call_id), args), critical=True)
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
                node = None if node is None else str(node)
            ts = time.time() if ts is None else float(ts)
            self._enqueue(_Op("event", str(call_id), (ts, type, _dumps(data), node)), critical=False)
        except Exception:
            log.exception("call log: could not queue %s event of call %s", type, call_id)

    def end_call(self, call_id: str, outcome: str, *, ended_at: float | None = None,
                 summary: dict | None = None) -> None:
        """Record the end of a call (and its ``call_end`` event). Never blocks, never raises."""
        try:
            ts = time.time() if ended_at is None else float(ended_at)
            args = (ts, str(outcome), _dumps(summary), _dumps({"outcome": str(outcome)}))
            self._enqueue(_Op("end", str(call_id), args), critical=True)
        except Exception:
            log.exception("call log: could not queue end of call %s", call_id)

    def _enqueue(self, op: _Op, *, critical: bool) -> None:
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
            log.warning("call log %s is closed; ignoring further records (call %s)", self.path, op.call_id)
        if dropped is not None:
            now = time.monotonic()
            if now - self._last_drop_log >= LOG_EVERY:
                self._last_drop_log = now
                log.error("CALL LOG BUFFER FULL (%d records waiting for %s): dropping events, %d dropped so far",
                          self.max_buffer, self.path, dropped)

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
        self._thread.join(timeout=self.busy_timeout + 2.0)
        with self._lock:
            left = len(self._queue)
        if left:
            log.error("call log %s closed with %d record(s) not written (database unavailable)", self.path, left)
        with _LIVE_LOCK:
            _LIVE_INSTANCES.discard(self._instance)
        _OPEN_STORES.discard(self)

    def __enter__(self) -> "CallStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict:
        """Counters for health checks: queued, written, dropped (buffer full), failed (bad records)."""
        with self._lock:
            return {"queued": len(self._queue), "written": self._written, "dropped": self._dropped,
                    "failed": self._failed,
                    "failing_for_s": (None if self._failing_since is None
                                      else round(time.monotonic() - self._failing_since, 3)),
                    "writer_alive": self._thread.is_alive(), "closed": self._closed}

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:
                    break
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
            try:
                consumed, error = self._write_batch(batch)
            except BaseException as exc:  # a bug; keep the writer alive
                log.exception("call log writer: unexpected error")
                consumed, error = 0, exc
            if error is None and self._failing_since is not None:
                log.warning("call log %s writable again after %.1f s", self.path,
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
                continue
            self._close_conn()
            self._note_failure(error)
            if stopping:
                break
            backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
        self._close_conn()
        with self._lock:
            self._done_cond.notify_all()

    def _note_failure(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            queued = len(self._queue)
        if self._failing_since is None:
            self._failing_since = now
            self._last_fail_log = now
            log.warning("call log write to %s failed (%s: %s); %d record(s) buffered, retrying",
                        self.path, type(exc).__name__, exc, queued)
        elif now - self._last_fail_log >= LOG_EVERY:
            self._last_fail_log = now
            level = logging.ERROR if now - self._failing_since >= FAILURE_ERROR_AFTER else logging.WARNING
            log.log(level, "call log writes to %s failing for %.1f s (%s: %s); %d record(s) buffered",
                    self.path, now - self._failing_since, type(exc).__name__, exc, queued)

    def _write_batch(self, batch: list[_Op]) -> tuple[int, BaseException | None]:
        """Write ``batch``; return how many leading records are done with and the transient error, if any."""
        try:
            conn = self._get_conn()
            self._apply(conn, batch)
            return len(batch), None
        except Exception as exc:
            if _is_transient(exc) or self._conn is None:
                return 0, exc
            log.warning("call log batch failed (%s: %s); writing its %d record(s) one by one",
                        type(exc).__name__, exc, len(batch))
        conn = self._conn
        for i, op in enumerate(batch):
            try:
                self._apply(conn, [op])
            except Exception as exc:
                if _is_transient(exc):
                    return i, exc
                with self._lock:
                    self._failed += 1
                log.error("call log: dropping %s record of call %s that cannot be written (%s: %s)",
                          op.kind, op.call_id, type(exc).__name__, exc)
        return len(batch), None

    def _apply(self, conn: sqlite3.Connection, ops: list[_Op]) -> None:
        seqs: dict[str, int] = {}

        def next_seq(call_id: str) -> int:
            n = seqs.get(call_id) or self._next_seq.get(call_id)
            if n is None:
                row = conn.execute("SELECT MAX(seq) FROM events WHERE call_id = ?", (call_id,)).fetchone()
                n = (row[0] or 0) + 1
            seqs[call_id] = n + 1
            return n

        def insert_event(call_id: str, ts: float, type_: str, data: str | None) -> None:
            conn.execute("INSERT INTO events (call_id, seq, ts, type, data) VALUES (?, ?, ?, ?, ?)",
                         (call_id, next_seq(call_id), ts, type_, data))

        ended: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                cid = op.call_id
                if op.kind == "event":
                    ts, type_, data, node = op.args
                    insert_event(cid, ts, type_, data)
                    if node is not None:
                        conn.execute("UPDATE calls SET last_node = ? WHERE call_id = ?", (node, cid))
                elif op.kind == "start":
                    flow, version, caller, called, models, meta, started_at, start_data = op.args
                    conn.execute(
                        "INSERT INTO calls (call_id, flow, flow_version, caller, called, models, meta,"
                        " started_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (call_id) DO UPDATE SET flow = excluded.flow,"
                        " flow_version = excluded.flow_version, caller = excluded.caller,"
                        " called = excluded.called, models = excluded.models, meta = excluded.meta,"
                        " started_at = excluded.started_at, owner = excluded.owner",
                        (cid, flow, version, caller, called, models, meta, started_at, self._owner))
                    insert_event(cid, started_at, "call_start", start_data)
                elif op.kind == "end":
                    ended_at, outcome, summary, end_data = op.args
                    insert_event(cid, ended_at, "call_end", end_data)
                    cur = conn.execute("UPDATE calls SET ended_at = ?, outcome = ?, summary = ? WHERE call_id = ?",
                                       (ended_at, outcome, summary, cid))
                    if cur.rowcount == 0:
                        log.warning("call log: end of call %s that was never started; adding a placeholder row", cid)
                        first = conn.execute("SELECT MIN(ts) FROM events WHERE call_id = ?", (cid,)).fetchone()[0]
                        conn.execute(
                            "INSERT INTO calls (call_id, flow, started_at, ended_at, outcome, summary, owner)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (cid, "", min(first, ended_at) if first is not None else ended_at, ended_at,
                             outcome, summary, self._owner))
                    ended.append(cid)
                else:  # pragma: no cover
                    raise ValueError(f"unknown record kind {op.kind!r}")
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        if len(self._next_seq) > 10_000:
            self._next_seq.clear()  # a cache; orphaned calls would otherwise pile up
        self._next_seq.update(seqs)
        for cid in ended:
            self._next_seq.pop(cid, None)
        with self._lock:
            self._written += len(ops)

    def _get_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = self._connect()
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    # ------------------------------------------------------------------ schema and recovery

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("call log %s: could not switch to WAL mode (journal_mode=%s)", self.path, mode)
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        self._migrate(conn)
        if self._recover_pending:
            self._recover(conn)
            self._recover_pending = False

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        except sqlite3.OperationalError:
            current = 0
        if current >= SCHEMA_VERSION:
            if current > SCHEMA_VERSION:
                log.warning("call log %s has schema version %d, newer than this server's %d",
                            self.path, current, SCHEMA_VERSION)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                         "version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                             (version, time.time()))
                log.info("call log %s: applied schema migration %d", self.path, version)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _recover(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT call_id, started_at, owner FROM calls WHERE ended_at IS NULL").fetchall()
        stale = [(cid, started) for cid, started, owner in rows if not _owner_alive(owner)]
        if not stale:
            return
        end_data = _dumps({"outcome": ABNORMAL, "reason": "call was not ended before the server stopped"})
        closed = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for cid, started_at in stale:
                last_seq, last_ts = conn.execute("SELECT MAX(seq), MAX(ts) FROM events WHERE call_id = ?",
                                                 (cid,)).fetchone()
                ended_at = max(started_at, last_ts) if last_ts is not None else started_at
                cur = conn.execute("UPDATE calls SET ended_at = ?, outcome = ? WHERE call_id = ? AND ended_at IS NULL",
                                   (ended_at, ABNORMAL, cid))
                if cur.rowcount:
                    conn.execute("INSERT INTO events (call_id, seq, ts, type, data) VALUES (?, ?, ?, ?, ?)",
                                 (cid, (last_seq or 0) + 1, ended_at, "call_end", end_data))
                    closed.append(cid)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        if closed:
            log.warning("call log %s: marked %d unfinished call(s) as %r: %s", self.path, len(closed), ABNORMAL,
                        ", ".join(closed[:20]) + (" ..." if len(closed) > 20 else ""))

    # ------------------------------------------------------------------ reads (synchronous)

    def _reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=max(self.busy_timeout, 5.0), isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        return conn

    @staticmethod
    def _call_dict(row: tuple) -> dict:
        d = dict(zip(_CALL_COLUMNS, row))
        for col in _JSON_COLUMNS:
            d[col] = _loads(d[col])
        d["duration"] = d["ended_at"] - d["started_at"] if d["ended_at"] is not None else None
        return d

    def list_calls(self, limit: int = 50, offset: int = 0, flow: str | None = None, outcome: str | None = None,
                   since: float | datetime | None = None, until: float | datetime | None = None) -> list[dict]:
        """Calls, newest first. ``since``/``until`` bound ``started_at`` (epoch seconds or datetime;
        ``since`` inclusive, ``until`` exclusive)."""
        where, params = [], []
        if flow is not None:
            where.append("flow = ?")
            params.append(flow)
        if outcome is not None:
            where.append("outcome = ?")
            params.append(outcome)
        if since is not None:
            where.append("started_at >= ?")
            params.append(_epoch(since))
        if until is not None:
            where.append("started_at < ?")
            params.append(_epoch(until))
        sql = _CALL_SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, call_id DESC LIMIT ? OFFSET ?"
        params += [int(limit), int(offset)]
        with closing(self._reader()) as conn:
            return [self._call_dict(r) for r in conn.execute(sql, params).fetchall()]

    def get_call(self, call_id: str) -> dict | None:
        """The call row plus ``events``: a list of ``{call_id, seq, ts, type, data}`` in order."""
        with closing(self._reader()) as conn:
            conn.execute("BEGIN")  # one snapshot for the row and its events
            try:
                row = conn.execute(_CALL_SELECT + " WHERE call_id = ?", (call_id,)).fetchone()
                if row is None:
                    return None
                events = conn.execute("SELECT call_id, seq, ts, type, data FROM events WHERE call_id = ?"
                                      " ORDER BY seq, id", (call_id,)).fetchall()
            finally:
                conn.execute("COMMIT")
        call = self._call_dict(row)
        call["events"] = [{"call_id": c, "seq": s, "ts": t, "type": ty, "data": _loads(d)}
                          for c, s, t, ty, d in events]
        return call

    def active_calls(self) -> list[dict]:
        """Committed calls with no end yet, oldest first."""
        with closing(self._reader()) as conn:
            rows = conn.execute(_CALL_SELECT + " WHERE ended_at IS NULL ORDER BY started_at, call_id").fetchall()
        return [self._call_dict(r) for r in rows]

    def __repr__(self) -> str:
        return f"CallStore({str(self.path)!r})"


def open_store(url_or_path: str | Path | None = None, **kwargs: Any) -> CallStore:
    """Open the call log named by a path or URL; ``None`` means ``./data/ivr.sqlite3``.

    ``sqlite:///relative/path.sqlite3`` and ``sqlite:////absolute/path.sqlite3`` follow the
    SQLAlchemy convention. Keyword arguments go to ``CallStore``.
    """
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
            raise NotImplementedError("the PostgreSQL call log backend is not implemented yet; use sqlite:///path")
        raise ValueError(f"unsupported call log URL scheme {scheme!r} in {s!r}")
    return CallStore(s, **kwargs)


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN_STORES):
        try:
            store.close(timeout=2.0)
        except Exception:  # pragma: no cover
            pass
