"""SQLite call-log backend: one local file in WAL mode.

Abnormal-end recovery judges owners by pid (``owner.owner_alive``): a SQLite file is only ever
shared by processes on one machine.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Iterator

from . import owner as owners
from .backend import Backend

log = logging.getLogger("ivr.calllog")

# Append (version, statements); never edit an applied one.
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
    (
        2,
        (
            # Version 1 did not enforce unique seqs; two writers on one file could repeat one.
            # Renumber only the calls that have a repeat, keeping their order (seq, then id).
            """UPDATE events SET seq = (
                SELECT r.n FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY call_id ORDER BY seq, id) AS n
                                 FROM events) r WHERE r.id = events.id)
               WHERE call_id IN (SELECT call_id FROM events GROUP BY call_id, seq HAVING COUNT(*) > 1)""",
            "DROP INDEX idx_events_call_seq",
            "CREATE UNIQUE INDEX uq_events_call_seq ON events (call_id, seq)",
            "CREATE INDEX idx_events_type ON events (type)",
        ),
    ),
    (
        3,
        (
            # The review queue reads one type's events newest first (the rowid, its tie-break, is
            # in every SQLite index): no sort of the whole table per page.
            "CREATE INDEX idx_events_type_ts ON events (type, ts)",
        ),
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_PERMANENT = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.DataError,
              sqlite3.NotSupportedError)


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        if str(path) == ":memory:" or str(path).startswith("file::memory:"):
            raise ValueError("the call log needs a database file (each connection would get its own :memory: db)")
        self.path = Path(path).expanduser()
        super().__init__(str(self.path))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("cannot create call log directory %s: %s", self.path.parent, exc)

    def connect(self, busy_timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("call log %s: could not switch to WAL mode (journal_mode=%s)", self.path, mode)
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only = 1")
            yield conn
        finally:
            conn.close()

    def begin_write(self, conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def begin_read(self, conn) -> None:
        conn.execute("BEGIN")

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, _PERMANENT):
            return False
        return isinstance(exc, (sqlite3.DatabaseError, OSError))

    def migrate(self, conn) -> None:
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
            self.rollback(conn)
            raise

    def stale_calls(self, conn, owner: str) -> list[tuple[str, float]]:
        rows = conn.execute("SELECT call_id, started_at, owner FROM calls WHERE ended_at IS NULL").fetchall()
        return [(cid, started) for cid, started, o in rows if not owners.owner_alive(o)]

    # SQLite's JSON functions raise on malformed text; json_valid keeps one odd row from
    # failing a whole query.
    def json_text(self, column: str, key: str) -> str:
        return f"(CASE WHEN json_valid({column}) THEN json_extract({column}, '$.{key}') END)"

    def contains(self, expr: str) -> str:
        return f"instr({expr}, CAST(? AS TEXT)) > 0"

    def contains_ci(self, expr: str) -> str:
        return f"instr(lower({expr}), lower(CAST(? AS TEXT))) > 0"

    def bucket_expr(self, column: str) -> str:
        # Epoch times are positive, so truncation is floor.
        return f"CAST({column} / ? AS INTEGER)"

    def __repr__(self) -> str:
        return f"SQLiteBackend({str(self.path)!r})"
