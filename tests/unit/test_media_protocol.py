"""The Twilio side of the app: webhook, signatures, tokens and the media-stream protocol.

Runs the real FastAPI app and the real pipecat pipeline over Starlette's in-process websocket,
with fake models (tests/fakes.py), so every edge case costs a second, not a model load.
"""

import base64
import json
import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ivr.serving.app import create_app
from ivr.calllog.store import CallStore
from ivr.serving.config import Settings
from ivr.serving.flows import FlowRepository
from ivr.serving.runtime import Runtime
from ivr.telephony.security import make_stream_token, twilio_signature
from tests.fakes import KeywordNLU, ScriptedTranscriber, ToneSynthesizer

REPO = Path(__file__).parent.parent.parent
TOKEN = "test-auth-token"


@pytest.fixture
def store(tmp_path):
    s = CallStore(tmp_path / "calls.sqlite3")
    yield s
    s.close()


def make_client(store, **overrides):
    settings = Settings(**{"twilio_auth_token": TOKEN, "flows_dir": REPO / "flows", "public_url": "https://bot.example.com",
                           **overrides})
    flows = FlowRepository(settings.flows_dir)
    flows.reload()
    runtime = Runtime(
        settings=settings, stt=ScriptedTranscriber(), tts=ToneSynthesizer(), nlu=KeywordNLU(), store=store,
        flows=flows, models={"stt": {"name": "fake"}}, secret=TOKEN,
    )
    return TestClient(create_app(settings, runtime_factory=lambda: runtime)), runtime


def post_voice(client, params=None, sign=True, url="https://bot.example.com/twilio/voice"):
    params = params or {"CallSid": "CA123", "From": "+15551230000", "To": "+15550001111"}
    headers = {"X-Twilio-Signature": twilio_signature(TOKEN, url, params)} if sign else {}
    return client.post("/twilio/voice", data=params, headers=headers)


def start_msg(call_sid="CA123", flow="customer_service", token=None, stream_sid="MZ1"):
    token = token if token is not None else make_stream_token(TOKEN, call_sid, flow)
    return json.dumps({"event": "start", "streamSid": stream_sid, "start": {
        "streamSid": stream_sid, "callSid": call_sid, "customParameters": {"flow": flow, "token": token}}})


def media(payload: bytes = b"\xff" * 160) -> str:
    return json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": base64.b64encode(payload).decode()}})


def dtmf(d: str) -> str:
    return json.dumps({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": d}})


def receive_until(ws, event: str, limit: int = 2000):
    for _ in range(limit):
        msg = json.loads(ws.receive_text())
        if msg.get("event") == event:
            return msg
    raise AssertionError(f"no {event}")


def hang_up(ws, timeout: float = 10.0, call_sid: str = "CA123"):
    """Send Twilio's `stop`, then wait for the server to close the socket, as Twilio does, and
    to be done with the call (`call_sid`: the one `start_msg` named)."""
    ws.send_text(json.dumps({"event": "stop", "streamSid": "MZ1"}))
    drain(ws, timeout)
    # The socket closes before the call's pipeline has finished stopping. Leaving the test client
    # now would cancel that cleanup midway, and pipecat can turn the cancellation into a stray
    # CancelledError that fails the test (1 run in 20): wait until the server is done with the call.
    runtime = ws.app.state.ivr["runtime"]
    assert wait_for(lambda: call_sid not in runtime.active_calls, timeout), "the call's pipeline did not stop"


def drain(ws, timeout: float = 10.0):
    end = time.time() + timeout
    try:
        while time.time() < end:
            ws.receive_text()
    except Exception:
        return
    raise AssertionError("server did not close the stream")


def wait_for(pred, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------- webhook
def test_webhook_answers_connect_stream_with_flow_and_token(store):
    client, runtime = make_client(store)
    with client:
        r = post_voice(client)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert '<Connect><Stream url="wss://bot.example.com/twilio/media">' in r.text
    assert '<Parameter name="flow" value="customer_service"' in r.text
    assert '<Parameter name="token"' in r.text


def test_webhook_rejects_bad_and_missing_signatures(store, caplog):
    client, _ = make_client(store)
    with client, caplog.at_level(logging.WARNING):
        assert post_voice(client, sign=False).status_code == 403
        forged = client.post("/twilio/voice", data={"CallSid": "CA1"}, headers={"X-Twilio-Signature": "AAAA"})
        assert forged.status_code == 403
    assert "X-Twilio-Signature" in caplog.text


def test_without_token_only_dev_mode_accepts(store, caplog):
    client, _ = make_client(store, dev_mode=False)
    client.app.state.ivr  # noqa
    settings_no_token = Settings(flows_dir=REPO / "flows")
    flows = FlowRepository(settings_no_token.flows_dir)
    flows.reload()
    for dev, expected in ((False, 403), (True, 200)):
        s = Settings(flows_dir=REPO / "flows", dev_mode=dev)
        rt = Runtime(settings=s, stt=None, tts=ToneSynthesizer(), nlu=None, store=store, flows=flows, models={}, secret="x")
        with TestClient(create_app(s, runtime_factory=lambda rt=rt: rt)) as c, caplog.at_level(logging.WARNING):
            r = c.post("/twilio/voice", data={"CallSid": "CA9"})
            assert r.status_code == expected
    assert "DEV MODE" in caplog.text


def test_unknown_flow_and_busy_line_get_spoken_twiml(store):
    client, runtime = make_client(store, max_calls=0)
    with client:
        r = post_voice(client)
        assert "<Say>" in r.text and "busy" in r.text and "<Hangup" in r.text
    client, runtime = make_client(store)
    url = "https://bot.example.com/twilio/voice?flow=nope"
    with client:
        params = {"CallSid": "CA5"}
        r = client.post("/twilio/voice?flow=nope", data=params, headers={"X-Twilio-Signature": twilio_signature(TOKEN, url, params)})
        assert "not available" in r.text


# ---------------------------------------------------------------- media websocket
def test_call_by_keypad_reaches_node_and_is_logged(store):
    client, runtime = make_client(store)
    with client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(json.dumps({"event": "connected"}))
        ws.send_text(start_msg())
        first = receive_until(ws, "media")
        assert first["streamSid"] == "MZ1" and base64.b64decode(first["media"]["payload"])
        ws.send_text(dtmf("2"))
        assert wait_for(lambda: "Please say or key in your six digit order number." in runtime.tts.spoken)
        for d in "123456":
            ws.send_text(dtmf(d))
        assert wait_for(lambda: any("I heard order 1 2 3 4 5 6" in t for t in runtime.tts.spoken))
        hang_up(ws)
    store.flush()
    call = store.get_call("CA123")
    nodes = [e["data"]["node"] for e in call["events"] if e["type"] == "node"]
    assert nodes == ["main_menu", "ask_order", "confirm_order"]
    assert call["flow_version"] == runtime.flows.get("customer_service").version
    assert call["ended_at"] is not None and call["outcome"] == "caller_hangup"
    assert call["models"] == {"stt": {"name": "fake"}}
    assert not runtime.active_calls


def test_key_press_during_prompt_sends_clear(store):
    client, runtime = make_client(store)
    with client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(start_msg())
        receive_until(ws, "media")  # greeting playing
        ws.send_text(dtmf("1"))
        receive_until(ws, "clear")
        hang_up(ws)


def test_bad_messages_are_logged_and_the_call_goes_on(store, caplog):
    client, runtime = make_client(store)
    with client, caplog.at_level(logging.WARNING), client.websocket_connect("/twilio/media") as ws:
        ws.send_text(media())  # media before start
        ws.send_text("this is not json")
        ws.send_text(start_msg())
        receive_until(ws, "media")
        ws.send_text(json.dumps({"event": "media", "media": {"payload": "@@not base64@@"}}))
        ws.send_text(json.dumps({"event": "party", "streamSid": "MZ1"}))
        ws.send_text(json.dumps({"event": "dtmf", "dtmf": {"digit": "X"}}))
        ws.send_text(json.dumps([1, 2, 3]))
        ws.send_text("{" + "x" * 70000 + "}")
        ws.send_text(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": "m1"}}))
        ws.send_text(dtmf("2"))  # still answering
        assert wait_for(lambda: "Please say or key in your six digit order number." in runtime.tts.spoken)
        hang_up(ws)
    for fragment in ("event before `start`", "not JSON", "not valid base64", "unknown event 'party'",
                     "not a keypad key", "not a JSON object", "over the 65536 limit"):
        assert fragment in caplog.text, fragment
    store.flush()
    call = store.get_call("CA123")
    assert call["summary"]["rejected_messages"] == 5  # the rest were dropped before `start`


def test_fuzz_found_inputs_are_rejected_and_the_call_goes_on(store, caplog):
    """What the hypothesis fuzz (test_fuzz_media.py) found crashing the handler or ending the
    call as a hang-up, pinned one by one."""
    client, runtime = make_client(store)
    deep = "[" * 5000 + "]" * 5000
    with client, caplog.at_level(logging.WARNING), client.websocket_connect("/twilio/media") as ws:
        ws.send_bytes(b"\xff\xfe not utf-8")  # binary frame before start
        ws.send_text(deep)  # nesting deeper than the JSON parser's recursion limit
        ws.send_text(start_msg())
        receive_until(ws, "media")
        ws.send_text(json.dumps({"event": "media", "media": "not an object"}))
        ws.send_text(json.dumps({"event": "dtmf", "dtmf": [1, 2]}))
        ws.send_text(json.dumps({"event": ["media"]}))
        ws.send_text(deep)
        ws.send_text(dtmf("2"))  # still answering
        assert wait_for(lambda: "Please say or key in your six digit order number." in runtime.tts.spoken)
        hang_up(ws)
    store.flush()
    call = store.get_call("CA123")
    assert call["outcome"] != "error" and call["summary"]["rejected_messages"] >= 4


def test_start_with_non_text_fields_is_refused(store, caplog):
    client, _ = make_client(store)
    msg = json.loads(start_msg())
    msg["start"]["callSid"] = {"not": "text"}
    with client, caplog.at_level(logging.WARNING), client.websocket_connect("/twilio/media") as ws:
        ws.send_text(json.dumps(msg))
        with pytest.raises(Exception):
            ws.receive_text()
    assert store.get_call("CA123") is None


@pytest.mark.parametrize("token, why", [("", "missing"), ("123.abc", "expired"), (None, "does not match")])
def test_bad_stream_tokens_are_refused(store, caplog, token, why):
    client, runtime = make_client(store)
    if token is None:
        token = make_stream_token(TOKEN, "CA-other", "customer_service")
    with client, caplog.at_level(logging.WARNING), client.websocket_connect("/twilio/media") as ws:
        ws.send_text(start_msg(token=token))
        with pytest.raises(Exception):
            ws.receive_text()
    assert why in caplog.text
    assert store.get_call("CA123") is None


def test_stop_before_start_and_garbage_only(store, caplog):
    client, _ = make_client(store)
    with client, caplog.at_level(logging.WARNING):
        with client.websocket_connect("/twilio/media") as ws:
            ws.send_text(json.dumps({"event": "stop"}))
            with pytest.raises(Exception):
                ws.receive_text()
        with client.websocket_connect("/twilio/media") as ws:
            ws.send_text(json.dumps({"event": "start", "start": {}}))
            with pytest.raises(Exception):
                ws.receive_text()
    assert "`stop` before `start`" in caplog.text and "without callSid" in caplog.text


def test_caller_hangs_up_mid_prompt(store):
    client, runtime = make_client(store)
    import concurrent.futures

    with client:
        try:
            with client.websocket_connect("/twilio/media") as ws:
                ws.send_text(start_msg())
                receive_until(ws, "media")
        except concurrent.futures.CancelledError:
            pass  # TestClient cancels a handler still running when the client leaves
        # The socket closed while the greeting was still playing: the call must end, not hang.
        assert wait_for(lambda: not runtime.active_calls, timeout=10)
    store.flush()
    call = store.get_call("CA123")
    assert call["outcome"] == "caller_hangup" and call["ended_at"]


def test_replayed_token_for_live_call_is_refused(store, caplog):
    client, runtime = make_client(store)
    with client, caplog.at_level(logging.WARNING):
        with client.websocket_connect("/twilio/media") as ws:
            ws.send_text(start_msg())
            receive_until(ws, "media")
            with client.websocket_connect("/twilio/media") as ws2:
                ws2.send_text(start_msg())
                with pytest.raises(Exception):
                    ws2.receive_text()
            hang_up(ws)
    assert "already has a stream" in caplog.text


def test_flow_hangup_closes_the_stream(store):
    client, runtime = make_client(store)
    with client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(start_msg())
        receive_until(ws, "media")
        ws.send_text(dtmf("1"))  # hours -> anything else?
        assert wait_for(lambda: "Is there anything else I can help you with?" in runtime.tts.spoken)
        ws.send_text(dtmf("2"))  # no -> goodbye -> hang up
        drain(ws)
    store.flush()
    call = store.get_call("CA123")
    assert call["outcome"] == "completed"
    assert "Goodbye!" in runtime.tts.spoken


def test_metrics_count_calls_turns_and_errors(store):
    client, runtime = make_client(store)
    with client:
        with client.websocket_connect("/twilio/media") as ws:
            ws.send_text(start_msg())
            receive_until(ws, "media")
            ws.send_text(dtmf("2"))
            assert wait_for(lambda: "Please say or key in your six digit order number." in runtime.tts.spoken)
            assert wait_for(lambda: "ivr_calls_active 1.0" in client.get("/metrics").text)
            # The turn's latency is recorded when its reply's first audio goes out; a keypad
            # turn is a stage of its own, not mixed into the spoken turns' voice to voice.
            assert wait_for(lambda: 'stage="keypad_to_first_audio"' in client.get("/metrics").text)
            hang_up(ws)
        text = client.get("/metrics").text
    assert 'ivr_calls_total{flow="customer_service",outcome="caller_hangup"} 1.0' in text
    assert "ivr_calls_active 0.0" in text
    assert 'ivr_turn_latency_seconds_count{stage="keypad_to_first_audio"} 1.0' in text
    assert 'ivr_turn_latency_seconds_count{stage="voice_to_voice"}' not in text
    assert "ivr_barge_ins_total" in text


def test_the_server_places_a_warm_up_call_before_its_first_request_and_logs_nothing_of_it(store, caplog):
    caplog.set_level(logging.INFO, logger="ivr.serving.app")
    client, runtime = make_client(store)
    with client:  # the app's start-up, as uvicorn runs it before it takes requests
        assert client.get("/healthz").status_code == 200
    assert any("warm-up call greeted" in r.getMessage() for r in caplog.records)
    store.flush()
    assert store.list_calls(limit=10) == [] and runtime.active_calls == {}


def test_the_warm_up_call_can_be_turned_off(store, caplog):
    caplog.set_level(logging.INFO, logger="ivr.serving.app")
    client, _ = make_client(store, warm_up=False)
    with client:
        client.get("/healthz")
    assert not any("warm-up" in r.getMessage() for r in caplog.records)
