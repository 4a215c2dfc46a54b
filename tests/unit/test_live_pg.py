"""Live dashboard updates across instances on one PostgreSQL database (ivr/dashboard/pg_live.py).

Two real apps in this process, each with its own call store on the same real PostgreSQL (tests/pg.py)
and fake models; a call runs on A through the Twilio media websocket and is watched on B
through the dashboard's own websocket, logged in like a browser.
"""

from __future__ import annotations

import json
import socket
import time

import anyio
import psycopg
import pytest
from starlette.websockets import WebSocketDisconnect

from ivr.calllog.store import open_store
from ivr.dashboard import pg_live
from ivr.dashboard.live import LiveCalls
from ivr.dashboard.pg_live import PAYLOAD_LIMIT, PgLivePublisher, encode
from tests.pg import wait_until
from tests.unit.test_dashboard import TOKEN, login
from tests.unit.test_media_protocol import dtmf, hang_up, make_client, receive_until, start_msg


def recv(ws, timeout: float = 5.0) -> dict:
    """The next message on a TestClient websocket, or a failure after `timeout` seconds."""
    async def get():
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(get)
    ws._raise_on_close(message)
    return json.loads(message["text"])


def until(ws, predicate, timeout: float = 5.0, seen: list | None = None) -> dict:
    """Read messages until one matches; what came before goes to `seen`."""
    deadline = time.monotonic() + timeout
    while True:
        message = recv(ws, max(0.01, deadline - time.monotonic()))
        if predicate(message):
            return message
        if seen is not None:
            seen.append(message)


def instance(url: str, stores: list):
    store = open_store(url, batch_interval=0.01)
    stores.append(store)
    return make_client(store, dashboard_token=TOKEN, database_url=url)


@pytest.fixture
def stores():
    opened = []
    yield opened
    for s in opened:
        s.close(timeout=2)


@pytest.fixture
def fast_beats(monkeypatch):
    monkeypatch.setattr(pg_live, "BEAT_S", 0.2)
    monkeypatch.setattr(pg_live, "EXPIRE_S", 1.5)


def test_a_call_on_one_instance_is_live_on_the_other_across_a_database_restart(pg_server, pg_database, stores):
    a, a_rt = instance(pg_database, stores)
    b, b_rt = instance(pg_database, stores)
    with a, b:
        pub_a, pub_b = a_rt.store.publisher, b_rt.store.publisher
        assert isinstance(pub_a, PgLivePublisher) and pub_a.instance != pub_b.instance
        assert pub_a.listening.wait(10) and pub_b.listening.wait(10)
        login(b)
        login(a)
        call = "CA-pg-live"
        is_call = lambda kind: lambda m: m.get("call_id") == call and m["kind"] == kind  # noqa: E731
        with a.websocket_connect("/twilio/media") as media:
            with b.websocket_connect("/dashboard/api/live") as watch, \
                    a.websocket_connect("/dashboard/api/live") as own:
                assert recv(watch)["kind"] == "snapshot" and recv(own)["kind"] == "snapshot"
                media.send_text(start_msg(call_sid=call))
                receive_until(media, "media")  # the greeting is playing on A
                start = until(watch, is_call("call_start"))
                assert start["state"]["flow"] == "customer_service" and start["state"]["remote"] is True
                assert until(watch, lambda m: (m.get("state") or {}).get("node") == "main_menu")

                media.send_text(dtmf("2"))
                assert until(watch, lambda m: (m.get("state") or {}).get("node") == "ask_order")["call_id"] == call

                t0 = time.perf_counter()
                a_rt.store.add_event(call, "transcript", {"text": "order one two three"})
                heard = until(watch, lambda m: m.get("type") == "transcript")
                latency_ms = (time.perf_counter() - t0) * 1000
                assert heard["state"]["last_transcript"] == "order one two three" and latency_ms < 1000, latency_ms
                print(f"A add_event -> B websocket: {latency_ms:.1f} ms")

                a_rt.store.add_event(call, "transcript", {"text": "blah " * 5000})  # 25 kB; NOTIFY takes < 8000 B
                long = until(watch, lambda m: m.get("type") == "transcript")
                assert long["truncated"] and len(long["state"]["last_transcript"]) <= pg_live.MAX_STRING + 1

                live = b.get("/dashboard/api/live").json()["calls"]
                assert [(c["call_id"], c["node"], c["remote"]) for c in live] == [(call, "ask_order", True)]

                # A sees its own call once per change: its NOTIFYs coming back are not delivered again.
                own_seen: list = []
                until(own, lambda m: m.get("type") == "transcript" and len(m["data"]["text"]) > 1000, seen=own_seen)
                assert [m["kind"] for m in own_seen].count("call_start") == 1
                assert sum(m.get("type") == "transcript" for m in own_seen) == 1

                pg_server.stop("fast")  # the database restarts mid-call
                try:
                    for d in "123456":
                        media.send_text(dtmf(d))
                    assert wait_until(lambda: any("I heard order 1 2 3 4 5 6" in t for t in a_rt.tts.spoken), 10)
                    own_confirm = until(own, lambda m: (m.get("state") or {}).get("node") == "confirm_order")
                    assert own_confirm["call_id"] == call  # A's own dashboard stays live without the database
                    assert wait_until(lambda: not pub_b.listening.is_set(), 10)
                finally:
                    pg_server.start()
                assert wait_until(pub_b.listening.is_set, 15)
                a_rt.store.add_event(call, "transcript", {"text": "after the restart"})
                # Whether B missed A's messages depends on which reconnected first: if it did, the gap
                # in A's sequence makes B's browsers start over, and they reconnect.
                seen: list = []
                after = until(watch, lambda m: m.get("type") == "transcript" or m["kind"] == "resync", 10, seen)
                resynced = after["kind"] == "resync" or any(m["kind"] == "resync" for m in seen)
            if resynced:
                print("B missed messages during the restart: resync")
                with b.websocket_connect("/dashboard/api/live") as watch:  # as the browser does
                    assert [c["call_id"] for c in recv(watch)["calls"]] == [call]
                    a_rt.store.add_event(call, "transcript", {"text": "after the resync"})
                    # A's "after the restart" may still be on its way (A queues what it could not
                    # NOTIFY and sends it late): it arrives, then the newer one does.
                    after = until(watch, lambda m: m.get("type") == "transcript"
                                  and m["data"].get("text") == "after the resync", timeout=10)
                assert after["state"]["last_transcript"] == "after the resync"
            else:
                assert after["state"]["last_transcript"] == "after the restart"
            assert after["state"]["node"] == "confirm_order"  # what happened during the outage caught up
            with b.websocket_connect("/dashboard/api/live") as watch:
                assert [c["node"] for c in recv(watch)["calls"]] == ["confirm_order"]
                hang_up(media, call_sid=call)
                end = until(watch, is_call("call_end"), timeout=10)
                assert end["outcome"] == "caller_hangup"
        assert b.get("/dashboard/api/live").json()["calls"] == []
        stats_a, stats_b = pub_a.stats(), pub_b.stats()
        assert stats_a["dropped"] == 0 and stats_a["too_big"] == 0 and stats_b["received"] > 5
        assert stats_b["reconnects"] >= 1 and stats_a["echo_ms_p50"] is not None
    a_rt.store.flush()
    assert a_rt.store.get_call(call)["outcome"] == "caller_hangup"


def _notify(url: str, *envelopes: dict) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for envelope in envelopes:
            conn.execute("SELECT pg_notify(%s, %s)", (pg_live.CHANNEL, json.dumps(envelope)))


def _state(call_id: str, node: str | None = None) -> dict:
    return {"call_id": call_id, "flow": "bank", "flow_version": "v1", "caller": "+1555", "called": None,
            "started_at": time.time(), "node": node, "last_transcript": None, "last_prompt": None, "intent": None,
            "confidence": None, "turns": 0, "events": 0, "updated_at": time.time()}


def test_silent_instances_lost_ends_and_gaps(pg_database, stores, fast_beats):
    """Other instances seen only through the channel: one dies, one loses a call's end, one skips."""
    b, b_rt = instance(pg_database, stores)
    with b:
        pub = b_rt.store.publisher
        assert pub.listening.wait(10)
        login(b)
        with b.websocket_connect("/dashboard/api/live") as watch:
            assert recv(watch)["kind"] == "snapshot"
            now = time.time()
            _notify(pg_database,
                    {"i": "dead", "n": 1, "t": now, "m": {"kind": "call_start", "call_id": "CA-dead", "ts": now,
                                                         "state": _state("CA-dead")}},
                    {"i": "lossy", "n": 1, "t": now, "m": {"kind": "event", "call_id": "CA-lossy", "ts": now,
                                                          "type": "node", "data": {"node": "menu"},
                                                          "state": _state("CA-lossy", "menu")}})
            assert until(watch, lambda m: m.get("call_id") == "CA-dead")["state"]["remote"] is True
            assert until(watch, lambda m: m.get("call_id") == "CA-lossy")["state"]["node"] == "menu"
            assert {c["call_id"] for c in b.get("/dashboard/api/live").json()["calls"]} == {"CA-dead", "CA-lossy"}

            # "lossy" beats on without CA-lossy: its end was lost, so it ends here.
            _notify(pg_database, {"i": "lossy", "n": 2, "t": time.time(), "beat": []})
            end = until(watch, lambda m: m["kind"] == "call_end")
            assert (end["call_id"], end["outcome"]) == ("CA-lossy", "unknown")

            # "dead" never says anything again: after EXPIRE_S its call is over, as abnormal.
            t0 = time.monotonic()
            end = until(watch, lambda m: m["kind"] == "call_end", timeout=10)
            assert (end["call_id"], end["outcome"]) == ("CA-dead", "abnormal")
            assert time.monotonic() - t0 < pg_live.EXPIRE_S + 2
            assert b.get("/dashboard/api/live").json()["calls"] == []

            # B's own call: delivered once, although its NOTIFY comes back to B's listener.
            b_rt.store.start_call("CA-own", flow="bank", flow_version="v1")
            assert recv(watch)["call_id"] == "CA-own"
            assert wait_until(lambda: pub.stats()["echo_ms_p50"] is not None, 5)

            # A gap in an instance's sequence: B's browsers start over.
            now = time.time()
            _notify(pg_database, {"i": "skippy", "n": 1, "t": now, "beat": []},
                    {"i": "skippy", "n": 3, "t": now, "beat": []})
            before: list = []
            assert until(watch, lambda m: m["kind"] == "resync", seen=before)
            assert not [m for m in before if m.get("call_id") == "CA-own"]
            with pytest.raises(WebSocketDisconnect):
                recv(watch)
        b_rt.store.end_call("CA-own", "completed")


def test_publish_never_waits_on_an_unreachable_database():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    pub = PgLivePublisher(f"postgresql://postgres@127.0.0.1:{port}/x", LiveCalls(), max_queue=50, beat_s=60).start()
    try:
        worst = 0.0
        for i in range(500):
            t0 = time.perf_counter()
            pub.publish({"kind": "event", "call_id": "c", "type": "transcript", "data": {"i": i}, "ts": time.time()})
            worst = max(worst, time.perf_counter() - t0)
        assert worst < 0.01, worst
        stats = pub.stats()
        assert stats["queued"] <= 50 and stats["dropped"] >= 450 and stats["sent"] == 0
        assert not pub.listening.is_set()
    finally:
        t0 = time.monotonic()
        pub.close(timeout=0.5)
        assert time.monotonic() - t0 < 3


def test_payloads_fit_in_a_notify():
    state = _state("CA1") | {"last_transcript": "ü" * 6000}
    envelope = {"i": "x", "n": 1, "t": 0.0, "m": {"kind": "event", "call_id": "CA1", "type": "transcript",
                                                 "data": {"text": "ü" * 6000, "words": list(range(3000))},
                                                 "state": state}}
    payload = encode(envelope)
    assert len(payload.encode()) <= PAYLOAD_LIMIT
    sent = json.loads(payload)["m"]
    assert sent["truncated"] and sent["state"]["last_transcript"].startswith("ü" * 100)
    small = {"i": "x", "n": 2, "t": 0.0, "m": {"kind": "call_end", "call_id": "CA1", "outcome": "completed"}}
    assert json.loads(encode(small)) == small  # small messages go as they are
    huge = {"i": "x", "n": 3, "t": 0.0, "m": {"kind": "event", "call_id": "CA1", "data": {},
                                             "state": {str(k): k for k in range(3000)}}}
    assert encode(huge) is None
    assert encode({"i": "x", "n": 4, "t": 0.0, "m": {"data": {("a", 1): 2}}}) is None  # not JSON: skipped, not retried


def test_a_message_the_database_refuses_does_not_hold_up_the_others(pg_database, monkeypatch):
    real_encode = pg_live.encode
    monkeypatch.setattr(pg_live, "encode", lambda env: "x" * 9000 if (env.get("m") or {}).get("call_id") == "bad"
                        else real_encode(env))  # past NOTIFY's limit: PostgreSQL refuses it
    with psycopg.connect(pg_database, autocommit=True) as listener:
        listener.execute(f"LISTEN {pg_live.CHANNEL}")
        pub = PgLivePublisher(pg_database, LiveCalls(), beat_s=60).start()
        try:
            for call_id in ("ok1", "bad", "ok2"):
                pub.publish({"kind": "call_end", "call_id": call_id, "ts": time.time(), "outcome": "completed"})
            got = []
            deadline = time.monotonic() + 10
            while len(got) < 3 and time.monotonic() < deadline:  # the first beat, then the two that fit
                got += [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
            assert [e["m"]["call_id"] for e in got if "m" in e] == ["ok1", "ok2"]
            assert wait_until(lambda: pub.stats()["failed"] == 1, 5)
        finally:
            pub.close()
