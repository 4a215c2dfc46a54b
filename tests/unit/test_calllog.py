"""Durable call log store: round trips, ordering, concurrency, crash recovery, locked database.

Every test taking ``store_url`` runs against SQLite and a real PostgreSQL server (tests/pg.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # when the package is not installed into the venv
    sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402

from ivr.calllog import owner as owners  # noqa: E402
from ivr.calllog import sqlite as sqlite_mod  # noqa: E402
from ivr.calllog import store as store_mod  # noqa: E402
from ivr.calllog.events import ABNORMAL, EVENT_TYPES, LATENCY_KEY, CallEvent, with_latencies  # noqa: E402
from ivr.calllog.store import CallStore, open_store  # noqa: E402


@pytest.fixture
def db_path(store_url: str) -> Path | None:
    """The SQLite file behind ``store_url`` (None for PostgreSQL)."""
    return Path(store_url.removeprefix("sqlite:///")) if store_url.startswith("sqlite:") else None


@pytest.fixture
def make_store(store_url: str):
    stores: list[CallStore] = []

    def make(url: str | Path | None = None, **kwargs) -> CallStore:
        s = open_store(url or store_url, **kwargs)
        stores.append(s)
        return s

    yield make
    for s in stores:
        s.close()


def _types(call: dict) -> list[str]:
    return [e["type"] for e in call["events"]]


class Blocker:
    """Another client holding the locks the writer needs: SQLite's file lock, PostgreSQL's
    table locks (the writer's lock_timeout makes each attempt fail, like SQLite's busy timeout)."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:"):
            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("BEGIN EXCLUSIVE")
        else:
            self.conn = psycopg.connect(url, autocommit=True)
            self.conn.execute("BEGIN")
            self.conn.execute("LOCK TABLE calls, events IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def _transient_error(store: CallStore) -> Exception:
    if store.backend.name == "sqlite":
        return sqlite3.OperationalError("disk I/O error")
    return psycopg.OperationalError("disk I/O error")


def _integrity_error(store: CallStore) -> Exception:
    if store.backend.name == "sqlite":
        return sqlite3.IntegrityError("simulated constraint failure")
    return psycopg.IntegrityError("simulated constraint failure")


# --------------------------------------------------------------------------- round trip


def test_round_trip(make_store):
    s = make_store()
    s.start_call("c1", flow="booking", flow_version="3", caller="+15550001", called="+15550002",
                 models={"stt": {"name": "whisper", "version": "1"}}, meta={"twilio_sid": "CA1"},
                 started_at=1000.0)
    s.add_event("c1", "turn_start", {"turn": 1}, ts=1001.0)
    s.add_event("c1", "transcript", with_latencies({"text": "book a table", "final": True}, stt=181.5), ts=1002.0)
    s.add_event("c1", "nlu", {"intent": "book", "slots": {"size": 2}}, ts=1002.1)
    s.add_event("c1", "node", {"node": "ask_date", "from": "greet"}, ts=1002.2)
    s.add_event("c1", "slot", {"name": "size", "value": 2}, ts=1002.3)
    s.add_event("c1", "prompt", {"text": "Which day?"}, ts=1002.4)
    s.add_event("c1", "dtmf", {"digits": "1#"}, ts=1003.0)
    s.add_event("c1", "handoff", {"reason": "caller asked for a human"}, ts=1004.0)
    s.add_event("c1", "hangup", ts=1005.0)
    s.end_call("c1", "handoff", ended_at=1005.5, summary={"turns": 1})
    assert s.flush()

    call = s.get_call("c1")
    assert call is not None
    assert call["flow"] == "booking" and call["flow_version"] == "3"
    assert call["caller"] == "+15550001" and call["called"] == "+15550002"
    assert call["models"] == {"stt": {"name": "whisper", "version": "1"}}
    assert call["meta"] == {"twilio_sid": "CA1"}
    assert call["started_at"] == 1000.0 and call["ended_at"] == 1005.5
    assert call["duration"] == pytest.approx(5.5)
    assert call["outcome"] == "handoff" and call["summary"] == {"turns": 1}
    assert call["last_node"] == "ask_date"
    assert _types(call) == ["call_start", "turn_start", "transcript", "nlu", "node", "slot", "prompt",
                            "dtmf", "handoff", "hangup", "call_end"]
    assert [e["seq"] for e in call["events"]] == list(range(1, 12))
    transcript = CallEvent.from_dict(call["events"][2])
    assert transcript.latencies == {"stt": 181.5}
    assert transcript.data[LATENCY_KEY] == {"stt": 181.5}
    assert call["events"][0]["data"]["flow"] == "booking"
    assert call["events"][-1]["data"] == {"outcome": "handoff"}
    assert call["events"][-1]["ts"] == 1005.5
    assert s.get_call("nope") is None
    assert s.active_calls() == []


def test_unknown_event_type_raises(make_store):
    s = make_store()
    with pytest.raises(ValueError):
        s.add_event("c1", "transcrpt", {})
    assert {"call_end", "action", "no_input"} <= set(EVENT_TYPES)


def test_data_is_snapshotted_and_odd_values_survive(make_store):
    s = make_store()
    s.start_call("c1", flow="f", flow_version="1")
    data = {"text": "hello", "when": object(), "raw": b"\x00\x01"}
    s.add_event("c1", "transcript", data)
    data["text"] = "changed later"
    s.add_event("c1", "error", {(1, 2): "tuple key"})  # not JSON-serialisable keys
    s.add_event("c1", "prompt", "not a dict")  # type: ignore[arg-type]
    assert s.flush()
    events = s.get_call("c1")["events"]
    assert events[1]["data"]["text"] == "hello"
    assert isinstance(events[1]["data"]["when"], str)
    assert "unserializable" in events[2]["data"]
    assert events[3]["data"] == {"value": "not a dict"}


def test_values_postgresql_cannot_store_as_given_are_kept_readable(make_store):
    """NUL characters and NaN/infinity are not valid in PostgreSQL text or JSON: they are
    replaced the same way on every backend instead of costing the record."""
    s = make_store()
    s.start_call("c\x00nul", flow="f", flow_version="1", caller="+1\x00555")
    s.add_event("c\x00nul", "transcript", {"text": "a\x00b", "confidence": float("nan"), "k\x00": float("inf")})
    s.add_event("c\x00nul", "nlu", {"text": "literal \\u0000 stays"})
    s.end_call("c\x00nul", "completed")
    assert s.flush()
    assert s.stats()["failed"] == 0
    call = s.get_call("c\ufffdnul")
    assert call["caller"] == "+1\ufffd555" and call["outcome"] == "completed"
    data = call["events"][1]["data"]
    assert data == {"text": "a\ufffdb", "confidence": "nan", "k\ufffd": "inf"}
    assert call["events"][2]["data"] == {"text": "literal \\u0000 stays"}


def test_events_keep_enqueue_order_regardless_of_timestamps(make_store):
    s = make_store(batch_interval=0.001)
    s.start_call("c1", flow="f", flow_version="1", started_at=50.0)
    for i in range(500):
        s.add_event("c1", "transcript", {"i": i}, ts=100.0 - i * 0.1)  # timestamps going backwards
        if i % 97 == 0:
            time.sleep(0.005)  # spread over several batches
    s.end_call("c1", "completed", ended_at=200.0)
    assert s.flush()
    call = s.get_call("c1")
    got = [e["data"]["i"] for e in call["events"] if e["type"] == "transcript"]
    assert got == list(range(500))
    assert [e["seq"] for e in call["events"]] == list(range(1, 503))


def test_many_calls_interleaved_from_threads(make_store):
    s = make_store()
    n_threads, calls_per_thread, events_per_call = 8, 10, 60

    def worker(t: int) -> None:
        ids = [f"t{t}-c{c}" for c in range(calls_per_thread)]
        for cid in ids:
            s.start_call(cid, flow=f"flow{t % 3}", flow_version="1", caller=str(t))
        for i in range(events_per_call):
            for cid in ids:
                s.add_event(cid, "transcript", {"i": i, "thread": t})
        for c, cid in enumerate(ids):
            s.end_call(cid, "completed" if c % 2 else "hangup")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert s.flush(10)

    calls = s.list_calls(limit=1000)
    assert len(calls) == n_threads * calls_per_thread
    for call in calls:
        full = s.get_call(call["call_id"])
        assert _types(full)[0] == "call_start" and _types(full)[-1] == "call_end"
        got = [e["data"]["i"] for e in full["events"] if e["type"] == "transcript"]
        assert got == list(range(events_per_call))
        assert [e["seq"] for e in full["events"]] == list(range(1, events_per_call + 3))
    assert s.stats()["dropped"] == 0 and s.stats()["failed"] == 0


async def test_async_callers_do_not_block(make_store):
    s = make_store()
    s.start_call("a1", flow="f", flow_version="1")
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    t = asyncio.create_task(ticker())
    for i in range(200):
        s.add_event("a1", "transcript", {"i": i})
        await asyncio.sleep(0)
    s.end_call("a1", "completed")
    assert await s.aflush()
    t.cancel()
    assert ticks > 0
    assert len(s.get_call("a1")["events"]) == 202


# --------------------------------------------------------------------------- reads


def test_list_calls_filters_and_paging(make_store):
    s = make_store()
    for i in range(10):
        cid = f"c{i}"
        s.start_call(cid, flow="a" if i % 2 else "b", flow_version="1", started_at=1000.0 + i)
        if i < 8:
            s.end_call(cid, "completed" if i % 3 else "handoff", ended_at=1000.5 + i)
    assert s.flush()

    all_calls = s.list_calls()
    assert [c["call_id"] for c in all_calls] == [f"c{i}" for i in range(9, -1, -1)]  # newest first
    assert [c["call_id"] for c in s.list_calls(limit=3, offset=2)] == ["c7", "c6", "c5"]
    assert {c["call_id"] for c in s.list_calls(flow="a")} == {"c1", "c3", "c5", "c7", "c9"}
    assert {c["call_id"] for c in s.list_calls(outcome="handoff")} == {"c0", "c3", "c6"}
    assert {c["call_id"] for c in s.list_calls(since=1003.0, until=1006.0)} == {"c3", "c4", "c5"}
    assert {c["call_id"] for c in s.list_calls(flow="b", outcome="completed", since=1001.0)} == {"c2", "c4"}
    assert [c["call_id"] for c in s.active_calls()] == ["c8", "c9"]
    assert all(c["ended_at"] is None and c["outcome"] is None for c in s.active_calls())
    assert "events" not in all_calls[0] and "owner" not in all_calls[0]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_schema_wal_and_migration_table(make_store, db_path):
    s = make_store()
    s.start_call("c1", flow="f", flow_version="1")
    s.close()
    s2 = make_store()
    s2.close()
    conn = sqlite3.connect(str(db_path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
        assert versions == [v for v, _ in sqlite_mod.MIGRATIONS] and versions[-1] == sqlite_mod.SCHEMA_VERSION
        index_names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"uq_events_call_seq", "idx_calls_started_at"} <= index_names
        with pytest.raises(sqlite3.IntegrityError):  # the database, not only the writer, keeps seqs unique
            conn.execute("INSERT INTO events (call_id, seq, ts, type) SELECT call_id, seq, ts, type FROM events")
    finally:
        conn.close()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_version_1_database_upgrades_in_place(db_path, make_store):
    """A call log written by the previous server (schema 1, repeated seqs possible) keeps its rows."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
    for statement in sqlite_mod.MIGRATIONS[0][1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    conn.execute("INSERT INTO calls (call_id, flow, started_at, ended_at, outcome) VALUES ('old', 'f', 10, 20, 'completed')")
    conn.execute("INSERT INTO calls (call_id, flow, started_at) VALUES ('dup', 'f', 30)")
    rows = [("old", 1, 10.0, "call_start"), ("old", 2, 20.0, "call_end"),
            ("dup", 1, 30.0, "call_start"), ("dup", 2, 31.0, "transcript"), ("dup", 2, 32.0, "dtmf"),
            ("dup", 3, 33.0, "hangup")]
    conn.executemany("INSERT INTO events (call_id, seq, ts, type, data) VALUES (?, ?, ?, ?, '{}')", rows)
    conn.close()

    s = make_store()
    assert [(e["seq"], e["type"]) for e in s.get_call("old")["events"]] == [(1, "call_start"), (2, "call_end")]
    dup = s.get_call("dup")
    assert [(e["seq"], e["type"]) for e in dup["events"]] == [
        (1, "call_start"), (2, "transcript"), (3, "dtmf"), (4, "hangup"), (5, "call_end")]
    assert dup["outcome"] == ABNORMAL  # its owner is unknown: the old server is gone
    s.add_event("old", "error", {"message": "late"})
    assert s.flush()
    assert [e["seq"] for e in s.get_call("old")["events"]] == [1, 2, 3]


def test_open_store_paths_and_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opened = []
    try:
        opened.append(open_store(None))
        assert (tmp_path / "data" / "ivr.sqlite3").exists()
        opened.append(open_store("sqlite:///rel/calls.db"))
        assert (tmp_path / "rel" / "calls.db").exists()
        absolute = tmp_path / "abs" / "calls.db"
        opened.append(open_store(f"sqlite:///{absolute}"))  # sqlite:////abs/path
        assert absolute.exists()
        opened.append(open_store(str(tmp_path / "plain.sqlite3"), batch_interval=0.01))
        assert opened[-1].batch_interval == 0.01
        with pytest.raises(ValueError, match="unsupported"):
            open_store("mysql://h/db")
        with pytest.raises(ValueError, match="bad sqlite URL"):
            open_store("sqlite://relative")
    finally:
        for s in opened:
            s.close()


# --------------------------------------------------------------------------- flush / close


def _count_events(url: str, call_id: str) -> int:
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return conn.execute("SELECT COUNT(*) FROM events WHERE call_id = ?", (call_id,)).fetchone()[0]
        finally:
            conn.close()
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT COUNT(*) FROM events WHERE call_id = %s", (call_id,)).fetchone()[0]


def test_flush_and_close_semantics(make_store, store_url, caplog):
    s = make_store(batch_interval=10.0)  # only flush / batch size / close trigger a commit
    s.start_call("c1", flow="f", flow_version="1")
    s.add_event("c1", "turn_start", {})
    assert s.flush(5)
    assert _count_events(store_url, "c1") == 2  # committed: another connection sees it
    assert s.flush(0.01)  # nothing pending: immediate

    s.add_event("c1", "hangup", {})
    s.end_call("c1", "completed")
    s.close()  # flushes
    assert not s._thread.is_alive()
    assert s.stats()["queued"] == 0
    call = s.get_call("c1")  # reads still work after close
    assert _types(call) == ["call_start", "turn_start", "hangup", "call_end"]
    assert call["outcome"] == "completed"

    with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
        s.add_event("c1", "error", {"message": "late"})  # ignored, never raises
        s.end_call("c1", "other")
    assert any("closed" in r.getMessage() for r in caplog.records if r.name == "ivr.calllog")
    s.close()  # idempotent
    assert s.flush(0.1)
    assert s.get_call("c1")["outcome"] == "completed"


def test_batch_size_commits_without_waiting_for_interval(make_store):
    s = make_store(batch_interval=30.0)
    s.start_call("c1", flow="f", flow_version="1")
    for i in range(store_mod.BATCH_SIZE + 5):
        s.add_event("c1", "transcript", {"i": i})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and s.stats()["written"] < store_mod.BATCH_SIZE:
        time.sleep(0.01)
    assert s.stats()["written"] >= store_mod.BATCH_SIZE


# --------------------------------------------------------------------------- recovery


def test_reopen_marks_unfinished_calls_abnormal(make_store, caplog):
    s = make_store()
    s.start_call("done", flow="f", flow_version="1", started_at=100.0)
    s.end_call("done", "completed", ended_at=110.0)
    s.start_call("open", flow="f", flow_version="1", started_at=200.0)
    s.add_event("open", "transcript", {"text": "hi"}, ts=205.0)
    s.close()

    with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
        s2 = make_store()
    assert any("abnormal" in r.getMessage() for r in caplog.records)
    assert s2.active_calls() == []
    call = s2.get_call("open")
    assert call["outcome"] == ABNORMAL
    assert call["ended_at"] == 205.0  # last thing heard from the call
    assert _types(call) == ["call_start", "transcript", "call_end"]
    assert call["events"][-1]["data"]["outcome"] == ABNORMAL and call["events"][-1]["seq"] == 3
    assert s2.get_call("done")["outcome"] == "completed"
    assert {c["call_id"] for c in s2.list_calls(outcome=ABNORMAL)} == {"open"}

    # Late events for the recovered call continue its sequence.
    s2.add_event("open", "error", {"message": "late"})
    assert s2.flush()
    assert [e["seq"] for e in s2.get_call("open")["events"]] == [1, 2, 3, 4]


def test_calls_of_a_running_store_are_not_recovered(make_store):
    live = make_store()
    live.start_call("live", flow="f", flow_version="1")
    assert live.flush()
    reader = make_store()  # e.g. a dashboard opening the same database
    assert [c["call_id"] for c in reader.active_calls()] == ["live"]
    reader2 = make_store(recover=False)
    assert [c["call_id"] for c in reader2.active_calls()] == ["live"]
    live.end_call("live", "completed")
    assert live.flush()
    assert reader.get_call("live")["outcome"] == "completed"


CRASH_CHILD = r"""
import os, signal, sys
from ivr.calllog.store import open_store
url, mode = sys.argv[1], sys.argv[2]
s = open_store(url, batch_interval=0.02)
s.start_call("done", flow="f", flow_version="1")
s.add_event("done", "hangup", {})
s.end_call("done", "completed")
s.start_call("crash", flow="f", flow_version="1", caller="+1555")
for i in range(300):
    s.add_event("crash", "transcript", {"i": i})
print("FLUSHED", s.flush(20), flush=True)
for i in range(300, 2000):
    s.add_event("crash", "transcript", {"i": i})
if mode == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
os._exit(3)
"""


@pytest.mark.parametrize("mode", ["sigkill", "os_exit"])
def test_crash_keeps_flushed_events(make_store, store_url, mode):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", CRASH_CHILD, store_url, mode], env=env, cwd=str(REPO_ROOT),
                          capture_output=True, text=True, timeout=120)
    assert "FLUSHED True" in proc.stdout, proc.stderr
    assert proc.returncode == (-9 if mode == "sigkill" else 3), proc.stderr

    s = make_store()
    crash = s.get_call("crash")
    assert crash["outcome"] == ABNORMAL and crash["ended_at"] is not None
    assert crash["caller"] == "+1555"
    got = [e["data"]["i"] for e in crash["events"] if e["type"] == "transcript"]
    assert len(got) >= 300  # everything flushed before the kill
    assert got == list(range(len(got)))  # and what else made it is a gap-free prefix
    assert [e["seq"] for e in crash["events"]] == list(range(1, len(crash["events"]) + 1))
    assert _types(crash)[0] == "call_start" and _types(crash)[-1] == "call_end"
    assert s.get_call("done")["outcome"] == "completed"
    assert s.active_calls() == []


# --------------------------------------------------------------------------- unavailable database


def test_locked_database_loses_nothing(make_store, store_url, caplog):
    s = make_store(busy_timeout=0.05)  # fail fast so the retry path runs
    s.start_call("c1", flow="f", flow_version="1")
    assert s.flush()
    with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
        blocker = Blocker(store_url)
        try:
            worst = 0.0
            for i in range(1000):
                t0 = time.perf_counter()
                s.add_event("c1", "transcript", {"i": i})
                worst = max(worst, time.perf_counter() - t0)
                if i % 100 == 0:
                    time.sleep(0.05)  # ~0.5 s of locked database in total
            assert not s.flush(0.1)  # cannot commit while locked
            assert s.stats()["queued"] > 0
        finally:
            blocker.release()
        s.end_call("c1", "completed")
        assert s.flush(10)
    assert worst < 0.25
    assert any(r.name == "ivr.calllog" and "failed" in r.getMessage() for r in caplog.records)
    call = s.get_call("c1")
    assert [e["data"]["i"] for e in call["events"] if e["type"] == "transcript"] == list(range(1000))
    assert call["outcome"] == "completed"
    assert s.stats()["dropped"] == 0


def test_add_event_is_fast_while_writer_waits_on_lock(make_store, store_url):
    s = make_store(busy_timeout=2.0)  # writer sits inside sqlite's busy handler
    s.start_call("c1", flow="f", flow_version="1")
    assert s.flush()
    blocker = Blocker(store_url)
    try:
        time.sleep(0.1)
        t_start = time.perf_counter()
        worst = 0.0
        for i in range(5000):
            t0 = time.perf_counter()
            s.add_event("c1", "transcript", {"i": i, "text": "some words"})
            worst = max(worst, time.perf_counter() - t0)
        total = time.perf_counter() - t_start
        time.sleep(0.4)
    finally:
        blocker.release()
    # Blocking on the database would take the whole 2 s busy timeout; allow for a loaded CI box.
    assert worst < 0.25, worst
    assert total < 2.0, total
    assert s.flush(10)
    assert len(s.get_call("c1")["events"]) == 5001


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_database_unavailable_at_open(tmp_path, make_store, caplog):
    path = tmp_path / "fresh.sqlite3"
    blocker = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # rollback-journal db: nobody can even read
    try:
        with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
            s = make_store(path, busy_timeout=0.05)
        assert any("not available" in r.getMessage() for r in caplog.records)
        s.start_call("c1", flow="f", flow_version="1")
        s.add_event("c1", "dtmf", {"digits": "5"})
        s.end_call("c1", "completed")
        time.sleep(0.3)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert s.flush(10)
    assert _types(s.get_call("c1")) == ["call_start", "dtmf", "call_end"]


def test_buffer_is_bounded_and_drops_are_logged(make_store, store_url, caplog):
    s = make_store(max_buffer=50, busy_timeout=0.05)
    blocker = Blocker(store_url)
    try:
        with caplog.at_level(logging.ERROR, logger="ivr.calllog"):
            s.start_call("c1", flow="f", flow_version="1")
            for i in range(80):
                s.add_event("c1", "transcript", {"i": i})
            s.end_call("c1", "completed")  # call start/end records are never dropped
        assert s.stats()["dropped"] == 80 - 49
        assert any("BUFFER FULL" in r.getMessage() for r in caplog.records)
    finally:
        blocker.release()
    assert s.flush(10)
    call = s.get_call("c1")
    assert [e["data"]["i"] for e in call["events"] if e["type"] == "transcript"] == list(range(49))
    assert call["outcome"] == "completed"


def test_transient_errors_are_retried_without_duplicates(make_store, monkeypatch, caplog):
    s = make_store()
    real_apply = s._apply
    failures = {"left": 3}

    def flaky_apply(conn, ops):
        if failures["left"]:
            failures["left"] -= 1
            raise _transient_error(s)
        return real_apply(conn, ops)

    monkeypatch.setattr(s, "_apply", flaky_apply)
    with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
        s.start_call("c1", flow="f", flow_version="1")
        for i in range(20):
            s.add_event("c1", "transcript", {"i": i})
        s.end_call("c1", "completed")
        assert s.flush(10)
    assert failures["left"] == 0
    call = s.get_call("c1")
    assert [e["data"]["i"] for e in call["events"] if e["type"] == "transcript"] == list(range(20))
    assert [e["seq"] for e in call["events"]] == list(range(1, 23))
    assert any("disk I/O error" in r.getMessage() for r in caplog.records)
    assert any("writable again" in r.getMessage() for r in caplog.records)


def test_batch_resent_after_a_lost_commit_is_written_once(make_store, monkeypatch, caplog):
    """The commit reaches the database but the answer never comes back (connection reset):
    the writer must retry, and the retry must find the rows instead of writing them twice."""
    s = make_store()
    backend = s.backend
    real_apply = backend.apply
    lost = {"left": 3}

    def apply_then_lose_answer(conn, ops, owner, cache):
        seqs = real_apply(conn, ops, owner, cache)
        if lost["left"]:
            lost["left"] -= 1
            raise _transient_error(s)
        return seqs

    monkeypatch.setattr(backend, "apply", apply_then_lose_answer)
    with caplog.at_level(logging.WARNING, logger="ivr.calllog"):
        s.start_call("c1", flow="f", flow_version="1")
        for i in range(30):
            s.add_event("c1", "transcript", {"i": i})
            if i % 10 == 0:
                time.sleep(0.08)  # several batches, each lost once more than the last retry
        s.add_event("c1", "node", {"node": "n1"})
        s.end_call("c1", "completed")
        assert s.flush(10)
    assert lost["left"] == 0
    call = s.get_call("c1")
    assert [e["data"]["i"] for e in call["events"] if e["type"] == "transcript"] == list(range(30))
    assert [e["seq"] for e in call["events"]] == list(range(1, 34))
    assert call["outcome"] == "completed" and call["last_node"] == "n1"


def test_a_taken_seq_moves_the_event_to_the_end(make_store, store_url):
    """Another writer took the seq our unacknowledged batch had used (e.g. an instance closed the
    call as abnormal meanwhile): our event goes after it rather than being lost."""
    s = make_store()
    s.start_call("c1", flow="f", flow_version="1", started_at=100.0)
    s.add_event("c1", "transcript", {"i": 0}, ts=101.0)
    assert s.flush()
    other = make_store(recover=False)
    from ivr.calllog.backend import Op

    op = Op("event", "c1", (102.0, "error", '{"by":"other"}', None))
    conn = other.backend.connect(1.0)
    try:
        other.backend.apply(conn, [op], "{}", {})
    finally:
        conn.close()
    assert op.seq == 3
    s.add_event("c1", "dtmf", {"digits": "1"}, ts=103.0)  # this writer still believes 3 is next
    assert s.flush()
    events = s.get_call("c1")["events"]
    assert [(e["seq"], e["type"]) for e in events] == [(1, "call_start"), (2, "transcript"), (3, "error"),
                                                       (4, "dtmf")]


def test_a_bad_record_is_dropped_not_retried_forever(make_store, monkeypatch, caplog):
    s = make_store()
    real_apply = s._apply

    def picky_apply(conn, ops):
        if any(op.call_id == "poison" or (op.kind == "event" and "POISON" in op.args[2]) for op in ops):
            raise _integrity_error(s)
        return real_apply(conn, ops)

    monkeypatch.setattr(s, "_apply", picky_apply)
    with caplog.at_level(logging.ERROR, logger="ivr.calllog"):
        s.start_call("good", flow="f", flow_version="1")
        s.add_event("poison", "transcript", {})
        s.add_event("good", "transcript", {"text": "POISON"})  # dropped inside a call that goes on
        s.add_event("good", "hangup", {})
        s.end_call("good", "completed")
        assert s.flush(10)
    assert s.stats()["failed"] == 2
    good = s.get_call("good")
    assert _types(good) == ["call_start", "hangup", "call_end"]
    assert [e["seq"] for e in good["events"]] == [1, 2, 3]  # the dropped record left no gap
    assert any("poison" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_owner_json_shape(make_store, db_path):
    s = make_store()
    s.start_call("c1", flow="f", flow_version="1")
    assert s.flush()
    conn = sqlite3.connect(str(db_path))
    try:
        owner = json.loads(conn.execute("SELECT owner FROM calls").fetchone()[0])
    finally:
        conn.close()
    assert owner["pid"] == os.getpid() and owner["instance"]
    assert owners.owner_alive(json.dumps(owner))
    assert not owners.owner_alive(json.dumps(dict(owner, instance="gone")))
    assert not owners.owner_alive(json.dumps(dict(owner, host="elsewhere")))
    # Same host name, another kernel or pid namespace (containers with host networking): pids
    # there mean nothing here.
    assert not owners.is_local(dict(owner, pidns="pid:[1]"))
    assert not owners.is_local(dict(owner, boot="another-boot"))
    legacy = {k: v for k, v in owner.items() if k not in ("boot", "pidns")}  # rows from schema 1
    assert owners.is_local(legacy) and owners.owner_alive(json.dumps(legacy))
    assert not owners.owner_alive(None)
    assert not owners.owner_alive("not json")
