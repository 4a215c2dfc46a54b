"""PostgreSQL call-log backend (psycopg 3), for one or many server instances on any hosts.

Several instances share the database, so a call is judged abandoned by its owner's heartbeat,
not by a pid: each writer keeps a row in ``instances`` fresh (database clock, so the hosts'
clocks do not matter), and a call whose owner has not been heard from for ``stale_after``
seconds is ended ``abnormal``. Owners on this very machine (same boot, same pid namespace) are
judged by pid as well, so a server restarted after a crash closes its own dead calls at once.

The writer of a server (``recover=True``) sweeps at open and every ``recover_interval``
seconds. Calls of an instance whose store was closed are ended at once; heartbeats are judged
only once the database and the sweeping connection have been up for ``stale_after`` seconds,
because after an outage every heartbeat is old and the others need that long to send a new one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg

from . import owner as owners
from .backend import Backend

log = logging.getLogger("ivr.calllog")

# Any fixed number; serialises migrations of instances starting at the same moment.
_MIGRATION_LOCK = 0x1C4_11_06

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
            "CREATE INDEX idx_calls_open ON calls (started_at) WHERE ended_at IS NULL",
            """CREATE TABLE events (
                id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                call_id TEXT NOT NULL,
                seq     INTEGER NOT NULL,
                ts      DOUBLE PRECISION NOT NULL,
                type    TEXT NOT NULL,
                data    TEXT,
                CONSTRAINT uq_events_call_seq UNIQUE (call_id, seq)
            )""",
            "CREATE INDEX idx_events_type ON events (type)",
            """CREATE TABLE instances (
                instance     TEXT PRIMARY KEY,
                owner        TEXT,
                started_at   DOUBLE PRECISION NOT NULL,
                heartbeat_at DOUBLE PRECISION NOT NULL,
                stopped_at   DOUBLE PRECISION
            )""",
            # Event data is JSON text written by this server; a row that is not JSON (hand-edited,
            # another tool) reads as NULL instead of failing the query that touches it.
            """CREATE FUNCTION ivr_json(t TEXT) RETURNS JSONB LANGUAGE plpgsql IMMUTABLE AS $$
               BEGIN RETURN t::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$""",
        ),
    ),
    (
        2,
        (
            # The review queue reads one type's events newest first: no sort of the whole table per page.
            # IF NOT EXISTS: on a big call log, build it first without blocking writes (deploy/README.md).
            "CREATE INDEX IF NOT EXISTS idx_events_type_ts ON events (type, ts, id)",
        ),
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

# SQLSTATE classes where retrying later can succeed: connection exceptions, transaction
# rollbacks (serialization, deadlock), insufficient resources, operator intervention (server
# shutting down), system errors; and lock_not_available.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
#: Rows of instances not heard from for this long are deleted by the sweeps.
INSTANCE_RETENTION_S = 7 * 86400
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"


def redact_url(url: str) -> str:
    """The URL without its password, for log lines."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return re.sub(r"password=\S+", "password=***", url)


class PostgresBackend(Backend):
    name = "postgresql"
    heartbeat_interval = 5.0
    recover_interval = 30.0

    def __init__(self, url: str, *, stale_after: float = 30.0, connect_timeout: float = 3.0) -> None:
        super().__init__(redact_url(url))
        # SQLAlchemy-style driver suffixes (postgresql+psycopg://) mean nothing to libpq.
        scheme, rest = url.split("://", 1)
        self.url = "postgresql://" + rest if "+" in scheme or scheme == "postgres" else url
        self.stale_after = float(stale_after)
        self.connect_timeout = max(1, int(round(connect_timeout)))

    def _connect(self, **options) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout,
                               application_name="ivr-calllog", keepalives=1, keepalives_idle=5,
                               keepalives_interval=2, keepalives_count=3, **options)

    def connect(self, busy_timeout: float) -> psycopg.Connection:
        conn = self._connect()
        try:
            # A lock held elsewhere fails this attempt quickly; the batch is retried meanwhile.
            conn.execute(f"SET lock_timeout = {max(1, int(busy_timeout * 1000))}")
            conn.execute("SET statement_timeout = '30s'")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def reader(self) -> Iterator[psycopg.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def begin_write(self, conn) -> None:
        conn.execute("BEGIN")

    def begin_read(self, conn) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, OSError)):
            return True
        state = getattr(exc, "sqlstate", None) or ""
        return state.startswith(_TRANSIENT_CLASSES) or state == "55P03"

    def migrate(self, conn) -> None:
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                         "version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            if current > SCHEMA_VERSION:
                log.warning("call log %s has schema version %d, newer than this server's %d",
                            self.label, current, SCHEMA_VERSION)
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                             (version, time.time()))
                log.info("call log %s: applied schema migration %d", self.label, version)
            conn.execute("COMMIT")
        except BaseException:
            self.rollback(conn)
            raise

    def heartbeat(self, conn, owner: str, instance: str) -> None:
        conn.execute(
            f"INSERT INTO instances (instance, owner, started_at, heartbeat_at) VALUES (%s, %s, {_NOW}, {_NOW})"
            f" ON CONFLICT (instance) DO UPDATE SET heartbeat_at = {_NOW}, stopped_at = NULL",
            (instance, owner))

    def retire(self, conn, instance: str) -> None:
        conn.execute(f"UPDATE instances SET stopped_at = {_NOW} WHERE instance = %s", (instance,))

    def recover(self, conn, owner: str) -> list[str]:
        closed = super().recover(conn, owner)
        # Rows of instances gone for a week: their calls are closed by now, and one row per
        # server start would otherwise pile up.
        conn.execute(f"DELETE FROM instances WHERE heartbeat_at < {_NOW} - %s", (INSTANCE_RETENTION_S,))
        return closed

    def stale_calls(self, conn, owner: str) -> list[tuple[str, float]]:
        # Heartbeats are only comparable once the database and this connection have been up
        # for stale_after: until then the others may not have had the chance to send one.
        now, watching_since = conn.execute(
            f"SELECT {_NOW}, GREATEST(EXTRACT(EPOCH FROM pg_postmaster_start_time()),"
            " (SELECT EXTRACT(EPOCH FROM backend_start) FROM pg_stat_activity WHERE pid = pg_backend_pid()))"
            "::double precision").fetchone()
        judge_remote = watching_since is not None and now - watching_since > self.stale_after
        rows = conn.execute(
            "SELECT c.call_id, c.started_at, c.owner, i.heartbeat_at, i.stopped_at"
            " FROM calls c LEFT JOIN instances i ON i.instance = ivr_json(c.owner) ->> 'instance'"
            " WHERE c.ended_at IS NULL").fetchall()
        stale = []
        for cid, started_at, owner_text, heartbeat_at, stopped_at in rows:
            o = owners.parse(owner_text)
            if o is not None and owners.is_local(o):
                dead = not owners.local_alive(o)
            elif stopped_at is not None:
                dead = True  # its store was closed without ending the call
            elif not judge_remote:
                dead = False
            else:
                # Never heard from (a call started before its first heartbeat committed): the
                # call's own age stands in.
                last = heartbeat_at if heartbeat_at is not None else started_at
                dead = now - last > self.stale_after
            if dead:
                stale.append((cid, started_at))
        return stale

    def json_text(self, column: str, key: str) -> str:
        return f"(ivr_json({column}) ->> '{key}')"

    def contains(self, expr: str) -> str:
        return f"strpos({expr}, CAST(? AS TEXT)) > 0"

    def contains_ci(self, expr: str) -> str:
        return f"strpos(lower({expr}), lower(CAST(? AS TEXT))) > 0"

    def bucket_expr(self, column: str) -> str:
        return f"floor({column} / CAST(? AS DOUBLE PRECISION))::bigint"

    def __repr__(self) -> str:
        return f"PostgresBackend({self.label!r})"
