"""The dashboard's server side: login and sessions, the API's filters and errors, turn grouping,
the live publisher and websocket, and recording downloads. Real app, real SQLite call log,
fake models (the browser test in tests/integration drives the pages themselves)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from starlette.websockets import WebSocketDisconnect

from ivr.calllog.store import CallStore
from ivr.dashboard.auth import COOKIE, DashboardAuth
from ivr.dashboard.live import RESYNC, LiveCalls, LocalPublisher, PublishingStore
from ivr.dashboard.turns import group_turns, waterfall
from tests.unit.test_media_protocol import make_client

TOKEN = "operator-token-123"


@pytest.fixture
def store(tmp_path):
    s = CallStore(tmp_path / "calls.sqlite3")
    yield s
    s.close()


@pytest.fixture
def app(store, tmp_path):
    client, runtime = make_client(store, dashboard_token=TOKEN, recording_dir=tmp_path / "rec")
    with client:
        yield client, runtime


def login(client, token=TOKEN):
    return client.post("/dashboard/login", data={"token": token}, follow_redirects=False)


# ---------------------------------------------------------------- auth
def test_pages_and_api_need_a_session(app):
    client, _ = app
    page = client.get("/dashboard/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    for path in ("/dashboard/calls", "/dashboard/summary", "/dashboard/calls/CA1"):
        assert client.get(path, follow_redirects=False).status_code == 303
    for path in ("/dashboard/api/calls", "/dashboard/api/live", "/dashboard/api/summary", "/dashboard/api/calls/CA1"):
        r = client.get(path)
        assert r.status_code == 401 and r.json()["detail"] == "not logged in or session expired"
    assert client.get("/dashboard/login").status_code == 200
    assert client.get("/dashboard/static/app.css").status_code == 200  # the login form needs it
    assert client.get("/dashboard/static/../auth.py").status_code == 404


def test_wrong_token_gets_no_session(app):
    client, _ = app
    r = login(client, "wrong")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login?error=token"
    assert COOKIE not in r.cookies and "wrong" not in r.headers["location"]
    assert client.get("/dashboard/api/calls").status_code == 401


def test_login_sets_a_strict_httponly_cookie_that_opens_pages_and_api(app):
    client, _ = app
    r = login(client)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/dashboard/api/calls").json()["total"] == 0
    assert "default-src 'self'" in client.get("/dashboard/").headers["content-security-policy"]
    client.post("/dashboard/logout")
    assert client.get("/dashboard/api/calls").status_code == 401


def test_bearer_token_for_scripts(app):
    client, _ = app
    assert client.get("/dashboard/api/calls", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/dashboard/api/calls", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/dashboard/api/calls", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401


def test_sessions_expire_and_cannot_be_forged():
    auth = DashboardAuth("t1")
    cookie = auth.new_session(now=1000.0)
    assert auth.valid_session(cookie, now=1001.0)
    assert not auth.valid_session(cookie, now=1000.0 + 13 * 3600)
    expires, nonce, sig = cookie.split(".")
    assert not auth.valid_session(f"{int(expires) + 10**6}.{nonce}.{sig}", now=1001.0)
    assert not DashboardAuth("t2").valid_session(cookie, now=1001.0)  # a new token ends old sessions
    for junk in ("", "a.b", "x.y.z", None):
        assert not auth.valid_session(junk)


def test_a_generated_token_is_logged_once_at_start(store, caplog):
    caplog.set_level(logging.INFO)
    client, _ = make_client(store)
    with client:
        lines = [r.getMessage() for r in caplog.records if "dashboard" in r.getMessage()]
        assert len(lines) == 1 and "login token is" in lines[0]
        token = lines[0].split("login token is ")[1].split(" ")[0]
        assert len(token) >= 24
        assert client.get("/dashboard/api/calls", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        login(client, token)
    assert sum(token in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------- call list filters
def seed(store):
    t = time.time() - 3600
    store.start_call("CA-a", flow="customer_service", flow_version="v1", caller="+15550001", started_at=t)
    store.add_event("CA-a", "transcript", {"text": "where is my parcel"}, ts=t + 1)
    store.end_call("CA-a", "completed", ended_at=t + 20)
    store.start_call("CA-b", flow="bank", flow_version="v1", caller="+15550002", started_at=t + 100)
    store.add_event("CA-b", "handoff", {"reason": "no match twice", "target": "llm"}, ts=t + 110)
    store.end_call("CA-b", "transferred", ended_at=t + 130)
    store.start_call("CA-c", flow="bank", flow_version="v1", caller="+15559999", started_at=t + 200)
    store.flush()
    return t


def test_call_list_filters_and_paging(app, store):
    client, _ = app
    t = seed(store)
    login(client)

    def ids(**params):
        body = client.get("/dashboard/api/calls", params=params).json()
        return [c["call_id"] for c in body["calls"]], body["total"]

    assert ids() == (["CA-c", "CA-b", "CA-a"], 3)
    assert ids(flow="bank") == (["CA-c", "CA-b"], 2)
    assert ids(outcome="completed") == (["CA-a"], 1)
    assert ids(caller="9999") == (["CA-c"], 1)
    assert ids(handoff_reason="no match") == (["CA-b"], 1)
    assert ids(q="parcel") == (["CA-a"], 1)
    assert ids(since=str(t + 50), until=str(t + 150)) == (["CA-b"], 1)
    assert ids(limit="1", offset="1") == (["CA-b"], 3)
    assert ids(flow="") == (["CA-c", "CA-b", "CA-a"], 3)  # an empty filter is no filter
    row = client.get("/dashboard/api/calls", params={"outcome": "transferred"}).json()["calls"][0]
    assert row["duration"] == pytest.approx(30) and row["flow"] == "bank"


@pytest.mark.parametrize("params, message", [
    ({"since": "yesterday"}, "since: expected epoch seconds or an ISO 8601 date/time, got 'yesterday'"),
    ({"limit": "0"}, "limit: must be between 1 and 500, got 0"),
    ({"offset": "x"}, "offset: expected a whole number, got 'x'"),
    ({"since": "2026-01-02", "until": "2026-01-01"}, "until must be after since"),
])
def test_bad_filters_are_a_clear_400(app, params, message):
    client, _ = app
    login(client)
    r = client.get("/dashboard/api/calls", params=params)
    assert r.status_code == 400 and r.json()["detail"] == message


def test_iso_dates_are_accepted(app, store):
    client, _ = app
    seed(store)
    login(client)
    assert client.get("/dashboard/api/calls", params={"since": "2000-01-01T00:00:00Z"}).json()["total"] == 3
    assert client.get("/dashboard/api/calls", params={"until": "2000-01-01"}).json()["total"] == 0


def test_summary_and_options(app, store):
    client, _ = app
    seed(store)
    login(client)
    s = client.get("/dashboard/api/summary").json()
    assert s["calls"] == 3 and s["ended"] == 2 and s["escalations"] == {"no match twice": 1}
    assert client.get("/dashboard/api/summary", params={"bucket_s": "1"}).status_code == 400
    o = client.get("/dashboard/api/options").json()
    assert "customer_service" in o["flows"] and o["outcomes"] == ["completed", "transferred"]
    assert o["handoff_reasons"] == ["no match twice"]


def test_one_call_and_a_missing_one(app, store):
    client, _ = app
    seed(store)
    login(client)
    call = client.get("/dashboard/api/calls/CA-a").json()
    assert call["turns"][1]["caller"] == "where is my parcel" and call["recording"] is None
    r = client.get("/dashboard/api/calls/CA-nope")
    assert r.status_code == 404 and "CA-nope" in r.json()["detail"]


# ---------------------------------------------------------------- recordings
def test_recording_download_and_refusals(app, store, tmp_path):
    client, _ = app
    login(client)
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "CA-r.wav").write_bytes(b"RIFF....WAVE")
    (tmp_path / "secret.wav").write_bytes(b"no")
    for call_id, file in (("CA-r", "CA-r.wav"), ("CA-evil", "../secret.wav"), ("CA-gone", "CA-gone.wav")):
        store.start_call(call_id, flow="bank", flow_version="v1")
        store.add_event(call_id, "recording", {"file": file, "duration_s": 1.0})
        store.end_call(call_id, "completed")
    store.start_call("CA-none", flow="bank", flow_version="v1")
    store.flush()
    r = client.get("/dashboard/api/calls/CA-r/recording")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content == b"RIFF....WAVE"
    assert client.get("/dashboard/api/calls/CA-r").json()["recording"]["available"] is True
    assert client.get("/dashboard/api/calls/CA-evil/recording").status_code == 404
    assert client.get("/dashboard/api/calls/CA-gone").json()["recording"]["available"] is False
    assert "not recorded" in client.get("/dashboard/api/calls/CA-none/recording").json()["detail"]
    client.post("/dashboard/logout")
    assert client.get("/dashboard/api/calls/CA-r/recording").status_code == 401


# ---------------------------------------------------------------- turns
def ev(type_, ts, **data):
    return {"type": type_, "ts": ts, "data": data}


def test_events_group_into_turns_with_latencies():
    events = [
        ev("call_start", 100.0), ev("node", 100.1, node="main_menu"), ev("prompt", 100.1, text="Hi, how can I help?", kind="prompt"),
        ev("barge_in", 101.0, node="main_menu"),
        ev("transcript", 102.0, text="", stt_ms=80),
        ev("transcript", 103.0, text="check my order", stt_ms=310.0),
        ev("nlu", 103.01, intent="order", confidence=0.91, source="router", ranked=[["order", 0.91]], latency_ms=4.0),
        ev("node", 103.02, node="ask_order"), ev("prompt", 103.02, text="Your order number?"),
        ev("turn_end", 103.3, turn=1, source="speech", to_transcript_ms=700.0, stt_ms=310.0, nlu_ms=4.0,
           to_first_audio_ms=60.0, voice_to_voice_ms=800.0),
        ev("dtmf", 105.0, digit="1"), ev("dtmf", 105.2, digit="2"),
        ev("node", 105.5, node="confirm"), ev("slot", 105.5, name="order_number", value="12"), ev("prompt", 105.5, text="Is 12 right?"),
        ev("dtmf", 107.0, digit="9"),
        ev("no_input", 115.0, after_s=7), ev("prompt", 115.0, text="Are you still there?", kind="no_input"),
        ev("hangup", 116.0, outcome="caller_hangup"),
    ]
    turns = group_turns(events, 100.0)
    assert [t["kind"] for t in turns] == ["greeting", "speech", "dtmf", "dtmf", "no_input"]
    greeting, spoken, keys, key9, silence = turns
    assert greeting["nodes"] == ["main_menu"] and greeting["barge_in"] and greeting["noise"] == 1
    assert spoken["caller"] == "check my order" and spoken["at_s"] == 3.0
    assert spoken["nlu"]["intent"] == "order" and spoken["nlu"]["confidence"] == 0.91
    assert spoken["nodes"] == ["ask_order"] and spoken["prompts"][0]["text"] == "Your order number?"
    assert spoken["latency_ms"]["voice_to_voice"] == 800.0
    assert [b["stage"] for b in spoken["waterfall"]] == [
        "end of speech → transcript", "speech recognition", "understanding (NLU)", "→ first audio", "voice to voice"]
    assert keys["caller"] == "[keys 12]" and keys["slots"] == [{"name": "order_number", "value": "12", "heard": None}]
    assert key9["keys"] == "9"  # a new entry after the bot answered is a new turn
    assert silence["prompts"][0]["kind"] == "no_input"


def test_a_turn_shows_which_slots_it_filled_in_passing_and_how():
    events = [
        ev("call_start", 100.0),
        ev("transcript", 101.0, text="a table for four tomorrow"),
        ev("nlu", 101.1, intent="book", confidence=0.9, source="router",
           slots=[{"slot": "party_size", "value": 4, "source": "parser"}, {"slot": "day", "value": "2026-12-07", "source": "parser"}]),
        ev("slot", 101.1, name="party_size", value=4), ev("prompt", 101.1, text="What time?"),
        ev("transcript", 104.0, text="seven"), ev("slot", 104.1, name="at", value="19:00"),
        ev("slot", 104.1, name="day", value="2026-12-07"),
    ]
    _, booking, answer = group_turns(events, 100.0)
    assert booking["nlu"]["heard"][0] == {"slot": "party_size", "value": 4, "source": "parser"}
    assert booking["slots"] == [{"name": "party_size", "value": 4, "heard": "parser"}]
    # the day was heard in the first turn and kept when its node came: still said in passing
    assert answer["slots"] == [{"name": "at", "value": "19:00", "heard": None}, {"name": "day", "value": "2026-12-07", "heard": "parser"}]


def test_waterfall_bars_line_up_on_one_axis():
    bars = {b["stage"]: b for b in waterfall({"to_transcript": 700, "stt": 300, "nlu": 5, "to_first_audio": 60, "voice_to_voice": 800})}
    assert bars["speech recognition"] == {"stage": "speech recognition", "start_ms": 400, "end_ms": 700}
    assert bars["understanding (NLU)"]["start_ms"] == 700 and bars["understanding (NLU)"]["end_ms"] == 740
    assert bars["→ first audio"]["end_ms"] == bars["voice to voice"]["end_ms"] == 800
    assert waterfall({}) == []  # nothing measured: no invented bars
    with_endpoint = waterfall({"endpoint": 500, "to_transcript": 520, "stt": 310, "voice_to_voice": 600})
    assert with_endpoint[0] == {"stage": "end-of-turn silence", "start_ms": 0.0, "end_ms": 500.0}
    assert [b["stage"] for b in waterfall({"to_first_audio": 20, "voice_to_voice": 20})] == ["→ first audio", "voice to voice"]


# ---------------------------------------------------------------- publisher
async def test_slow_subscriber_is_dropped_and_others_keep_everything():
    pub = LocalPublisher(max_queue=5)
    slow, fast = pub.subscribe(), pub.subscribe()
    got = []

    async def read_fast():
        while len(got) < 20:
            got.append(await fast.get(1.0))

    reader = asyncio.create_task(read_fast())
    for i in range(20):
        pub.publish({"kind": "event", "n": i})
        await asyncio.sleep(0.002)  # the fast reader keeps up; the slow one never reads
    await reader
    assert [m["n"] for m in got] == list(range(20))
    assert slow.dropped and slow.closed and pub.subscribers == 1
    assert slow.queue.qsize() == 1 and await slow.get(0.1) is RESYNC  # its backlog was freed
    pub.publish({"kind": "event", "n": 99})
    assert slow.queue.empty()
    fast.close()
    assert pub.subscribers == 0


async def test_publish_from_another_thread_arrives_on_the_loop():
    pub = LocalPublisher()
    sub = pub.subscribe()
    thread = threading.Thread(target=pub.publish, args=({"kind": "event", "n": 1},))
    thread.start()
    thread.join()
    assert (await sub.get(1.0))["n"] == 1


def test_publishing_store_folds_live_state_and_never_breaks_writes(store):
    class Exploding:
        def publish(self, message):
            raise RuntimeError("boom")

    live = LiveCalls()
    wrapped = PublishingStore(store, Exploding(), live)
    wrapped.start_call("CA1", flow="bank", flow_version="v1", caller="+1555")
    wrapped.add_event("CA1", "node", {"node": "menu"})
    wrapped.add_event("CA1", "transcript", {"text": "hello"})
    assert live.snapshot()[0] | {} == live.calls["CA1"] and live.calls["CA1"]["node"] == "menu"
    assert live.calls["CA1"]["last_transcript"] == "hello"
    wrapped.end_call("CA1", "completed")
    store.flush()
    assert store.get_call("CA1")["outcome"] == "completed"  # written despite the publisher failing
    assert live.calls == {} and "CA1" in live.recently_ended


def test_live_websocket_gets_a_snapshot_then_changes(app):
    client, runtime = app
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/dashboard/api/live") as ws:
            ws.receive_text()
    assert refused.value.code == 1008  # not logged in
    login(client)
    with client.websocket_connect("/dashboard/api/live") as ws:
        assert ws.receive_json() == {"kind": "snapshot", "calls": []}
        runtime.store.start_call("CA-live", flow="bank", flow_version="v1", caller="+1555")
        start = ws.receive_json()
        assert start["kind"] == "call_start" and start["state"]["flow"] == "bank"
        runtime.store.add_event("CA-live", "node", {"node": "main_menu"})
        assert ws.receive_json()["state"]["node"] == "main_menu"
        assert client.get("/dashboard/api/live").json()["calls"][0]["node"] == "main_menu"
        runtime.store.end_call("CA-live", "completed")
        end = ws.receive_json()
        assert end["kind"] == "call_end" and end["outcome"] == "completed"
    assert runtime.store.publisher.subscribers == 0  # the closed socket let go of its queue


def test_live_websocket_refuses_other_origins(app):
    client, _ = app
    login(client)
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/dashboard/api/live", headers={"origin": "https://evil.example"}) as ws:
            ws.receive_text()
    assert refused.value.code == 1008


def test_a_turn_the_caller_went_on_from_is_marked_withdrawn_and_the_next_joined():
    events = [
        ev("call_start", 100.0),
        ev("transcript", 101.0, text="I'm checking on an order", early=True),
        ev("node", 101.1, node="ask_order"), ev("prompt", 101.1, text="Your order number?"),
        ev("turn_withdrawn", 101.3, turn=1, node="main_menu", early=True, replied=True),
        ev("transcript", 102.5, text="I'm checking on an order that I placed last week", joined=True),
    ]
    _, first, second = group_turns(events, 100.0)
    assert first["early"] and first["withdrawn"] and not first["joined"]
    assert second["joined"] and not second["withdrawn"] and not second["early"]
