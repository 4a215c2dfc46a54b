"""A real `ivr serve` on PostgreSQL whose database goes down in the middle of a call.

The caller must keep getting answers while PostgreSQL is away, and once it is back every event
of the call must be in the call log exactly once, in order, with the call's end. The server
loads one flow and no SLM (keypad turns only need neither), which keeps its start to seconds.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import httpx
import pytest

from ivr.calllog.store import open_store
from ivr.tools.simulate import CallerSimulator, Step

from .conftest import AUTH_TOKEN, DASHBOARD_TOKEN, REPO, Server

pytestmark = pytest.mark.slow


def test_database_down_mid_call_the_call_goes_on_and_every_event_is_written_once(pg_server, pg_database, tmp_path):
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(REPO / "flows" / "customer_service.yaml", flows)
    server = Server(tmp_path, flows_dir=flows, env={"IVR_DATABASE_URL": pg_database, "IVR_SLM_ENABLED": "0"})
    reader = open_store(pg_database, recover=False)
    down = False
    try:
        server.wait_ready(180)
        sim = CallerSimulator(server.url, stt=None, auth_token=AUTH_TOKEN, flow="customer_service")
        # ask_order, then two keypad turns while the database is down, then one after it is back.
        steps = [Step("dtmf", "2"), Step("dtmf", "123456"), Step("dtmf", "2"), Step("dtmf", "654321")]
        result: dict = {}

        def call() -> None:
            try:
                result["report"] = asyncio.run(sim.run(steps))
            except BaseException as exc:
                result["error"] = exc

        caller = threading.Thread(target=call, daemon=True)
        caller.start()

        # The server's own live view says where the call is; it needs no database.
        nodes: list[str] = []

        def wait_node(node: str, count: int, timeout: float = 40) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and caller.is_alive():
                calls = httpx.get(server.url + "/dashboard/api/live", timeout=5,
                                  headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"}).json()["calls"]
                now = calls[0]["node"] if calls else None
                if now and (not nodes or nodes[-1] != now):
                    nodes.append(now)
                if nodes.count(node) >= count:
                    return
                time.sleep(0.05)
            raise AssertionError(f"the call never reached {node} (#{count}); nodes {nodes}: {result}\n{server.log()}")

        wait_node("ask_order", 1)
        pg_server.stop("immediate")
        down, stopped_at = True, time.time()
        wait_node("ask_order", 2)  # confirm_order and back, all without a database
        pg_server.start()
        down, started_at = False, time.time()
        caller.join(90)
        assert not caller.is_alive() and "error" not in result, result
        report = result["report"]
        for turn in report.turns:
            assert turn.first_reply_at is not None, (turn.step, report.to_dict())
            assert turn.latency_ms < 5000, (turn.step, turn.latency_ms)  # never waiting on the database
        assert report.closed_by == "caller" and report.greeting

        def ended():
            call = reader.get_call(report.call_sid)
            return call if call and call["outcome"] else None

        deadline = time.monotonic() + 30
        while (call := ended()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert call is not None, server.log()
        assert call["outcome"] == "caller_hangup" and call["ended_at"] is not None
        events = call["events"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gaps
        assert len({(e["ts"], e["type"], repr(e["data"])) for e in events}) == len(events)  # none twice
        assert events[0]["type"] == "call_start" and events[-1]["type"] == "call_end"
        assert [e["data"]["node"] for e in events if e["type"] == "node"] == [
            "main_menu", "ask_order", "confirm_order", "ask_order", "confirm_order"]
        keys = "".join(e["data"].get("digit") or e["data"].get("digits") or "" for e in events if e["type"] == "dtmf")
        assert keys == "21234562654321"
        during = [e for e in events if stopped_at <= e["ts"] <= started_at]
        assert len(during) >= 10, during  # the outage really was mid-call
        print(f"{len(during)} of {len(events)} events happened while PostgreSQL was down "
              f"({started_at - stopped_at:.1f} s); voice-to-voice "
              + ", ".join(f"{t.latency_ms:.0f}" for t in report.turns) + " ms")
        log = server.log(200_000)
        assert "call log write to" in log and "writable again" in log
    finally:
        if down:
            pg_server.start()
        server.stop()
        reader.close()
