"""PostgreSQL-only behaviour of the call log: server outages, several instances, heartbeats."""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg
import pytest

from ivr.calllog import postgres as pg_mod
from ivr.calllog.events import ABNORMAL
from ivr.calllog.postgres import PostgresBackend, redact_url
from ivr.calllog.store import CallStore, open_store
from tests.pg import wait_until


@pytest.fixture
def stores():
    opened: list[CallStore] = []
    yield opened
    for s in opened:
        s.close(timeout=2)


def _open(stores, url, **kwargs) -> CallStore:
    s = open_store(url, **kwargs)
    stores.append(s)
    return s


def test_server_outage_mid_call_loses_and_duplicates_nothing(pg_server, pg_database, stores, caplog):
    s = _open(stores, pg_database, batch_interval=0.01)
    s.start_call("c1", flow="f", flow_version="1", caller="+1555")
    for i in range(200):
        s.add_event("c1", "transcript", {"i": i})
    assert s.flush()

    with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
        pg_server.stop("immediate")  # the database server dies; the call goes on
        try:
            worst = 0.0
            for i in range(200, 700):
                t0 = time.perf_counter()
                s.add_event("c1", "transcript", {"i": i})
                worst = max(worst, time.perf_counter() - t0)
                if i % 50 == 0:
                    time.sleep(0.05)
            assert not s.flush(0.3)
            assert s.stats()["queued"] > 0 and s.stats()["failing_for_s"] is not None
        finally:
            pg_server.start()
        for i in range(700, 800):
            s.add_event("c1", "transcript", {"i": i})
        s.end_call("c1", "completed")
        assert s.flush(30)
    assert worst < 0.25, worst
    assert any("failed" in r.getMessage() for r in caplog.records)
    assert any("writable again" in r.getMessage() for r in caplog.records)
    call = s.get_call("c1")
    assert [e["data"]["i"] for e in call["events"] if e["type"] == "transcript"] == list(range(800))
    assert [e["seq"] for e in call["events"]] == list(range(1, 803))
    assert call["outcome"] == "completed"
    assert s.stats()["dropped"] == 0 and s.stats()["failed"] == 0


def test_server_down_at_open(pg_server, pg_database, stores, caplog):
    pg_server.stop("fast")
    try:
        with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
            s = _open(stores, pg_database)
        assert any("not available" in r.getMessage() for r in caplog.records)
        s.start_call("c1", flow="f", flow_version="1")
        s.add_event("c1", "dtmf", {"digits": "5"})
        s.end_call("c1", "completed")
        time.sleep(0.3)
        with pytest.raises(psycopg.OperationalError):  # reads say so; they do not hang
            s.get_call("c1")
    finally:
        pg_server.start()
    assert s.flush(30)
    assert [e["type"] for e in s.get_call("c1")["events"]] == ["call_start", "dtmf", "call_end"]
    assert "password" not in repr(s) and "127.0.0.1" in repr(s)


def test_two_instances_write_one_database(pg_database, stores):
    a = _open(stores, pg_database)
    b = _open(stores, pg_database)
    n_calls, n_events = 10, 80

    def run(store: CallStore, name: str) -> None:
        for c in range(n_calls):
            store.start_call(f"{name}{c}", flow="f", flow_version="1")
        for i in range(n_events):
            for c in range(n_calls):
                store.add_event(f"{name}{c}", "transcript", {"i": i})
        for c in range(n_calls):
            store.end_call(f"{name}{c}", "completed")

    threads = [threading.Thread(target=run, args=(a, "a")), threading.Thread(target=run, args=(b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.flush(20) and b.flush(20)
    assert a.count_calls() == 2 * n_calls
    for call in a.list_calls(limit=100):
        events = a.get_call(call["call_id"])["events"]
        assert [e["seq"] for e in events] == list(range(1, n_events + 3))
        assert [e["data"]["i"] for e in events if e["type"] == "transcript"] == list(range(n_events))
    with psycopg.connect(pg_database) as conn:
        owners = {r[0] for r in conn.execute("SELECT DISTINCT ivr_json(owner) ->> 'instance' FROM calls")}
        assert len(owners) == 2
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 2


def _remote_call(conn, call_id: str, instance: str, *, started_ago: float, heartbeat_ago: float | None,
                 stopped: bool = False) -> None:
    """A call owned by an instance on another host, which this one can only judge by heartbeat."""
    owner = json.dumps({"host": "other-host", "pid": 1, "start": "1", "instance": instance})
    conn.execute("INSERT INTO calls (call_id, flow, started_at, owner) VALUES (%s, 'f', %s, %s)",
                 (call_id, time.time() - started_ago, owner))
    conn.execute("INSERT INTO events (call_id, seq, ts, type, data) VALUES (%s, 1, %s, 'call_start', '{}')",
                 (call_id, time.time() - started_ago))
    if heartbeat_ago is not None:
        conn.execute("INSERT INTO instances (instance, owner, started_at, heartbeat_at, stopped_at)"
                     " VALUES (%s, %s, 0, %s, %s) ON CONFLICT (instance) DO NOTHING",
                     (instance, owner, time.time() - heartbeat_ago, time.time() if stopped else None))


def test_recovery_judges_other_hosts_by_heartbeat(pg_database, stores, caplog):
    first = _open(stores, pg_database, recover=False)  # creates the schema
    with psycopg.connect(pg_database, autocommit=True) as conn:
        _remote_call(conn, "stale", "i-stale", started_ago=600, heartbeat_ago=120)
        _remote_call(conn, "alive", "i-alive", started_ago=600, heartbeat_ago=-3600)  # keeps beating
        _remote_call(conn, "stopped", "i-stopped", started_ago=600, heartbeat_ago=1, stopped=True)
        _remote_call(conn, "unknown-old", "i-never", started_ago=600, heartbeat_ago=None)
        _remote_call(conn, "unknown-new", "i-never2", started_ago=-3600, heartbeat_ago=None)

    backend = PostgresBackend(pg_database, stale_after=0.5)
    backend.recover_interval = 0.1
    with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
        sweeper = CallStore(backend)
        stores.append(sweeper)
        # A closed store only: at open the other hosts are not judged yet (they may be
        # reconnecting after an outage this instance has just come back from).
        assert first.get_call("stopped")["outcome"] == ABNORMAL
        assert first.get_call("stale")["outcome"] is None
        assert wait_until(lambda: first.get_call("stale")["outcome"] == ABNORMAL, timeout=10)
    assert first.get_call("unknown-old")["outcome"] == ABNORMAL
    assert first.get_call("alive")["outcome"] is None
    assert first.get_call("unknown-new")["outcome"] is None
    stale = first.get_call("stale")
    assert [e["type"] for e in stale["events"]] == ["call_start", "call_end"]
    assert stale["events"][-1]["data"]["outcome"] == ABNORMAL
    assert any("abnormal" in r.getMessage() for r in caplog.records)


def test_heartbeat_and_clean_stop(pg_database, stores, monkeypatch):
    monkeypatch.setattr(pg_mod.PostgresBackend, "heartbeat_interval", 0.1)
    s = _open(stores, pg_database)
    s.start_call("c1", flow="f", flow_version="1")
    assert s.flush()

    def beat() -> tuple:
        with psycopg.connect(pg_database) as conn:
            return conn.execute("SELECT heartbeat_at, stopped_at FROM instances").fetchone()

    first, stopped = beat()
    assert stopped is None
    assert wait_until(lambda: beat()[0] > first, timeout=5)  # idle, yet still beating
    s.close()
    assert beat()[1] is not None
    # A store that only reads never claims to be a server instance.
    reader = _open(stores, pg_database, recover=False)
    reader.list_calls()
    reader.close()
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1


def test_schema_and_migrations(pg_database, stores):
    _open(stores, pg_database).close()
    _open(stores, pg_database).close()  # a second open applies nothing twice
    with psycopg.connect(pg_database) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [v for v, _ in pg_mod.MIGRATIONS]
        conn.execute("INSERT INTO events (call_id, seq, ts, type, data) VALUES ('x', 1, 0, 'dtmf', 'not json')")
        conn.execute("INSERT INTO calls (call_id, flow, started_at) VALUES ('x', 'f', 0)")
        conn.commit()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO events (call_id, seq, ts, type) VALUES ('x', 1, 0, 'dtmf')")
    s = _open(stores, pg_database, recover=False)
    assert s.get_call("x")["events"][0]["data"] == "not json"  # read back as text, queries still work
    assert s.list_calls(q="nothing") == [] and s.summary()["calls"] == 1


def test_urls():
    assert redact_url("postgresql://ivr:s3cret@db:5432/ivr") == "postgresql://ivr:***@db:5432/ivr"
    assert redact_url("postgresql://db/ivr?password=s3cret") == "postgresql://db/ivr?password=***"
    b = PostgresBackend("postgresql+psycopg://u@h/db")
    assert b.url == "postgresql://u@h/db"
    assert PostgresBackend("postgres://u@h/db").url == "postgresql://u@h/db"


def test_idle_writer_does_not_spin_while_the_server_is_down(pg_server, pg_database, stores, monkeypatch):
    monkeypatch.setattr(pg_mod.PostgresBackend, "heartbeat_interval", 0.1)
    s = _open(stores, pg_database)
    s.start_call("c1", flow="f", flow_version="1")
    assert s.flush()
    attempts = []
    real_connect = s.backend.connect
    monkeypatch.setattr(s.backend, "connect", lambda *a: attempts.append(1) or real_connect(*a))
    pg_server.stop("fast")
    try:
        time.sleep(1.0)
    finally:
        pg_server.start()
    # One try per heartbeat interval, not a busy loop of refused connections.
    assert 1 <= len(attempts) <= 15, len(attempts)
    s.end_call("c1", "completed")
    assert s.flush(30)
    assert s.get_call("c1")["outcome"] == "completed"
