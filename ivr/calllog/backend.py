"""What the call store needs from a database, and the batch write shared by every backend.

A backend is one database (a SQLite file, a PostgreSQL URL): it opens connections, migrates
the schema, recovers calls left open by dead servers, and names the few SQL fragments that
differ between dialects. Queries are written once with ``?`` placeholders; ``sql()`` turns them
into the driver's style.

Exactly once: an event's ``seq`` is chosen the first time its record is written and kept on the
record, and ``(call_id, seq)`` is unique, so re-sending a batch whose commit was lost with the
connection inserts nothing twice (``ON CONFLICT DO NOTHING``, then the stored row is compared
with ours). A seq taken by a different event (another instance closed the call meanwhile)
moves ours to the end of the call's stream instead of losing it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from .encoding import dumps
from .events import ABNORMAL

log = logging.getLogger("ivr.calllog")

_INSERT_EVENT = ("INSERT INTO events (call_id, seq, ts, type, data) VALUES (?, ?, ?, ?, ?)"
                 " ON CONFLICT (call_id, seq) DO NOTHING")
_ABNORMAL_REASON = "call was not ended before the server stopped"


class Op:
    """One queued record: a call start, an event or a call end."""

    __slots__ = ("kind", "call_id", "args", "ticket", "t", "seq", "maybe_written")

    def __init__(self, kind: str, call_id: str, args: tuple) -> None:
        self.kind = kind  # "start" | "event" | "end"
        self.call_id = call_id
        self.args = args
        self.ticket = 0
        self.t = 0.0
        self.seq: int | None = None  # fixed once tried, so a retry writes the same row
        self.maybe_written = False  # an attempt ended without knowing whether it committed


class Backend:
    name = "?"
    #: Seconds between the writer's liveness updates (None: the backend needs none).
    heartbeat_interval: float | None = None
    #: Seconds between sweeps for calls of dead instances while running (None: only at open).
    recover_interval: float | None = None

    def __init__(self, label: str) -> None:
        self.label = label  # for log lines; never holds a password

    # -- to implement ---------------------------------------------------------------------

    def connect(self, busy_timeout: float) -> Any:
        """A writer connection in autocommit mode (transactions are explicit)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def reader(self) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def begin_write(self, conn) -> None:
        raise NotImplementedError

    def begin_read(self, conn) -> None:
        """Start a read-only transaction so several queries see one snapshot."""
        raise NotImplementedError

    def migrate(self, conn) -> None:
        raise NotImplementedError

    def is_transient(self, exc: BaseException) -> bool:
        """Whether the database (not the record) is the problem, so the batch is retried."""
        raise NotImplementedError

    def stale_calls(self, conn, owner: str) -> list[tuple[str, float]]:
        """Open calls (call_id, started_at) whose owner has stopped."""
        raise NotImplementedError

    def heartbeat(self, conn, owner: str, instance: str) -> None:
        """Tell other instances that this one is alive (backends with ``heartbeat_interval``)."""

    def retire(self, conn, instance: str) -> None:
        """This instance is closing cleanly."""

    # -- SQL fragments ----------------------------------------------------------------------

    def sql(self, text: str) -> str:
        return text

    def json_text(self, column: str, key: str) -> str:
        """The text of a top-level key of a JSON text column (NULL when absent or not JSON)."""
        raise NotImplementedError

    def contains(self, expr: str) -> str:
        """Case-sensitive substring test against one parameter."""
        raise NotImplementedError

    def contains_ci(self, expr: str) -> str:
        """Case-insensitive substring test against one parameter."""
        raise NotImplementedError

    def bucket_expr(self, column: str) -> str:
        """floor(column / ?) as an integer; the bucket width is the parameter."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------

    def prepare(self, conn, *, recover: bool, owner: str) -> None:
        self.migrate(conn)
        if recover:
            self.recover(conn, owner)

    def recover(self, conn, owner: str) -> list[str]:
        """Mark the open calls of stopped owners ended ``abnormal`` at their last event."""
        stale = self.stale_calls(conn, owner)
        if not stale:
            return []
        end_data = dumps({"outcome": ABNORMAL, "reason": _ABNORMAL_REASON})
        closed = []
        self.begin_write(conn)
        try:
            for cid, started_at in stale:
                last_seq, last_ts = conn.execute(self.sql("SELECT MAX(seq), MAX(ts) FROM events WHERE call_id = ?"),
                                                 (cid,)).fetchone()
                ended_at = max(started_at, last_ts) if last_ts is not None else started_at
                # The row lock taken here makes a second instance sweeping at once skip the call.
                cur = conn.execute(self.sql("UPDATE calls SET ended_at = ?, outcome = ?"
                                            " WHERE call_id = ? AND ended_at IS NULL"), (ended_at, ABNORMAL, cid))
                if cur.rowcount:
                    last_seq = conn.execute(self.sql("SELECT MAX(seq) FROM events WHERE call_id = ?"),
                                            (cid,)).fetchone()[0]
                    conn.execute(self.sql(_INSERT_EVENT), (cid, (last_seq or 0) + 1, ended_at, "call_end", end_data))
                    closed.append(cid)
            conn.execute("COMMIT")
        except BaseException:
            self.rollback(conn)
            raise
        if closed:
            log.warning("call log %s: marked %d unfinished call(s) as %r: %s", self.label, len(closed), ABNORMAL,
                        ", ".join(closed[:20]) + (" ..." if len(closed) > 20 else ""))
        return closed

    def rollback(self, conn) -> None:
        try:
            conn.execute("ROLLBACK")
        except Exception:  # the connection is gone; the transaction went with it
            pass

    def apply(self, conn, ops: list[Op], owner: str, next_seq_cache: dict[str, int]) -> dict[str, int]:
        """Write ``ops`` in one transaction; return the next seq per call touched (for the cache)."""
        q = self.sql
        seqs: dict[str, int] = {}

        def max_seq(cid: str) -> int:
            return conn.execute(q("SELECT MAX(seq) FROM events WHERE call_id = ?"), (cid,)).fetchone()[0] or 0

        def insert_event(op: Op, ts: float, type_: str, data: str | None) -> None:
            cid = op.call_id
            expected = seqs.get(cid) or next_seq_cache.get(cid)
            if op.seq is None or (expected is not None and op.seq < expected):
                op.seq = expected if expected is not None else max_seq(cid) + 1
            while True:
                if conn.execute(q(_INSERT_EVENT), (cid, op.seq, ts, type_, data)).rowcount:
                    break
                stored = conn.execute(q("SELECT ts, type, data FROM events WHERE call_id = ? AND seq = ?"),
                                      (cid, op.seq)).fetchone()
                if stored is not None and tuple(stored) == (ts, type_, data):
                    break  # written by an earlier attempt whose commit we never heard back from
                op.seq = max_seq(cid) + 1
            seqs[cid] = op.seq + 1

        self.begin_write(conn)
        try:
            for op in ops:
                cid = op.call_id
                if op.kind == "event":
                    ts, type_, data, node = op.args
                    insert_event(op, ts, type_, data)
                    if node is not None:
                        conn.execute(q("UPDATE calls SET last_node = ? WHERE call_id = ?"), (node, cid))
                elif op.kind == "start":
                    flow, version, caller, called, models, meta, started_at, start_data = op.args
                    conn.execute(q(
                        "INSERT INTO calls (call_id, flow, flow_version, caller, called, models, meta,"
                        " started_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (call_id) DO UPDATE SET flow = excluded.flow,"
                        " flow_version = excluded.flow_version, caller = excluded.caller,"
                        " called = excluded.called, models = excluded.models, meta = excluded.meta,"
                        " started_at = excluded.started_at, owner = excluded.owner"),
                        (cid, flow, version, caller, called, models, meta, started_at, owner))
                    insert_event(op, started_at, "call_start", start_data)
                elif op.kind == "end":
                    ended_at, outcome, summary, end_data = op.args
                    insert_event(op, ended_at, "call_end", end_data)
                    cur = conn.execute(q("UPDATE calls SET ended_at = ?, outcome = ?, summary = ? WHERE call_id = ?"),
                                       (ended_at, outcome, summary, cid))
                    if cur.rowcount == 0:
                        log.warning("call log: end of call %s that was never started; adding a placeholder row", cid)
                        first = conn.execute(q("SELECT MIN(ts) FROM events WHERE call_id = ?"), (cid,)).fetchone()[0]
                        conn.execute(q(
                            "INSERT INTO calls (call_id, flow, started_at, ended_at, outcome, summary, owner)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING"),
                            (cid, "", min(first, ended_at) if first is not None else ended_at, ended_at,
                             outcome, summary, owner))
                else:  # pragma: no cover
                    raise ValueError(f"unknown record kind {op.kind!r}")
            conn.execute("COMMIT")
        except BaseException:
            self.rollback(conn)
            raise
        return seqs

