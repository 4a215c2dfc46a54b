"""A real `ivr serve` killed with SIGKILL in the middle of a call, then started again.

The call's events up to the kill must be in the database, and the restarted server must mark
the call ended `abnormal`. PostgreSQL only: two server starts with the real models take minutes
on a small machine, and the SQLite path differs only in the backend, whose crash recovery
tests/unit/test_calllog.py kills a process to check on both databases.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

from ivr.calllog.events import ABNORMAL
from ivr.calllog.store import open_store
from ivr.tools.simulate import CallerSimulator, Step

from .conftest import AUTH_TOKEN, Server

pytestmark = pytest.mark.slow


def _wait(predicate, timeout: float, what: str, server: Server):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{server.log()}")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_sigkill_mid_call_keeps_events_and_marks_the_call_abnormal(store_url, tmp_path, caller_voice):
    env = {"IVR_DATABASE_URL": store_url}
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    reader = open_store(store_url, recover=False)
    server = Server(tmp_path / "first", env=env)
    try:
        server.wait_ready()
        sim = CallerSimulator(server.url, voice=caller_voice, stt=None, auth_token=AUTH_TOKEN)
        failures: list[BaseException] = []

        def call() -> None:
            try:
                asyncio.run(sim.run([Step("dtmf", "2"), Step("pause", 60)]))
            except BaseException as exc:  # the server dies under it: expected
                failures.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()

        def asked_for_the_order():
            calls = reader.active_calls()
            if not calls:
                return None
            events = reader.get_call(calls[0]["call_id"])["events"]
            nodes = [e["data"].get("node") for e in events if e["type"] == "node"]
            return calls[0]["call_id"] if "ask_order" in nodes else None

        call_id = _wait(asked_for_the_order, 120, "the call to reach ask_order", server)
        before = [(e["seq"], e["type"]) for e in reader.get_call(call_id)["events"]]
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        caller.join(30)
        assert reader.get_call(call_id)["outcome"] is None  # nobody has closed it yet
    finally:
        server.stop()

    restarted = Server(tmp_path / "second", env=env)
    try:
        restarted.wait_ready()
        call = reader.get_call(call_id)
        assert call["outcome"] == ABNORMAL, restarted.log()
        events = call["events"]
        assert [(e["seq"], e["type"]) for e in events[:len(before)]] == before  # nothing before the kill lost
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[0]["type"] == "call_start" and events[-1]["type"] == "call_end"
        assert events[-1]["data"]["outcome"] == ABNORMAL
        assert call["ended_at"] == max(e["ts"] for e in events[:-1])
        dtmf = [e["data"] for e in events if e["type"] == "dtmf"]
        assert dtmf and dtmf[0]["digit"] == "2"
        assert reader.active_calls() == []
    finally:
        restarted.stop()
        reader.close()
