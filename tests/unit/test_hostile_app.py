"""Floods, stalls and replays against the real app in-process (fake models): what is refused,
with which close code and log line, and that the counts come back to zero (issue #9).

The same inputs against a real `ivr serve` over TCP: tests/integration/test_hostile.py.
"""

import json
import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ivr.serving.app import create_app
from ivr.serving.config import Settings
from ivr.serving.flows import FlowRepository
from ivr.serving.runtime import Runtime
from tests.fakes import ToneSynthesizer
from tests.unit.test_media_protocol import (dtmf, hang_up, make_client, media, post_voice, receive_until,  # noqa: F401
                                            start_msg, store, wait_for)

REPO = Path(__file__).parent.parent.parent


def close_code(ws, timeout: float = 5.0) -> int:
    """Read until the server closes the socket; its close code."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            ws.receive_text()
        except WebSocketDisconnect as exc:
            return exc.code
    raise AssertionError("the server did not close the socket")


def metric(client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_sockets_that_never_start_are_capped_per_source_with_1013(store, caplog):
    client, runtime = make_client(store, max_waiting_sockets_per_source=2, media_start_timeout=30)
    with client, caplog.at_level(logging.WARNING):
        with client.websocket_connect("/twilio/media"), client.websocket_connect("/twilio/media") as second:
            assert wait_for(lambda: metric(client, "ivr_media_websockets_waiting") == 2)
            with client.websocket_connect("/twilio/media") as third:
                assert close_code(third) == 1013
            second.send_text(start_msg())  # one starts: a socket from this source may wait again
            receive_until(second, "media")
            with client.websocket_connect("/twilio/media") as fourth:
                fourth.send_text(json.dumps({"event": "connected"}))
                assert metric(client, "ivr_media_websockets_open") == 3
            hang_up(second)
        assert wait_for(lambda: metric(client, "ivr_media_websockets_open") == 0)
        assert metric(client, "ivr_media_websockets_waiting") == 0
        text = client.get("/metrics").text
    assert "have not sent `start` (limit 2)" in caplog.text and "1013" in caplog.text
    assert 'ivr_refused_total{reason="waiting_per_source",what="media"} 1.0' in text


def test_sockets_in_total_are_capped_including_calls(store, caplog):
    client, runtime = make_client(store, max_media_sockets=2, media_start_timeout=30)
    with client, caplog.at_level(logging.WARNING):
        with client.websocket_connect("/twilio/media") as call, client.websocket_connect("/twilio/media"):
            call.send_text(start_msg())
            receive_until(call, "media")
            with client.websocket_connect("/twilio/media") as third:
                assert close_code(third) == 1013
            hang_up(call)
    assert "2 media sockets open (limit 2)" in caplog.text


def test_a_socket_that_never_sends_start_is_closed_after_the_timeout(store, caplog):
    client, _ = make_client(store, media_start_timeout=0.3)
    with client, caplog.at_level(logging.WARNING), client.websocket_connect("/twilio/media") as ws:
        ws.send_text(json.dumps({"event": "connected"}))
        assert close_code(ws) == 1008
    assert "no `start` within 0.3s" in caplog.text


def test_a_stalled_stream_is_ended_as_stalled(store, caplog):
    client, runtime = make_client(store, media_stall_seconds=0.5)
    with client, caplog.at_level(logging.WARNING), client.websocket_connect("/twilio/media") as ws:
        ws.send_text(start_msg())
        receive_until(ws, "media")
        started = time.time()
        close_code(ws, timeout=10)  # nothing more from "Twilio": the server ends the call
        assert time.time() - started < 5
        assert wait_for(lambda: not runtime.active_calls)
    store.flush()
    call = store.get_call("CA123")
    assert call["outcome"] == "stalled" and call["summary"]["reason"].startswith("no media for")
    assert "ending the call as stalled" in caplog.text


def test_a_stream_that_keeps_sending_is_not_stalled(store):
    client, runtime = make_client(store, media_stall_seconds=0.5)
    with client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(start_msg())
        for _ in range(15):  # 1.5 s of frames, 100 ms apart (Twilio: 20 ms)
            ws.send_text(media())
            time.sleep(0.1)
        assert "CA123" in runtime.active_calls
        ws.send_text(dtmf("2"))
        assert wait_for(lambda: "Please say or key in your six digit order number." in runtime.tts.spoken)
        hang_up(ws)
    store.flush()
    assert store.get_call("CA123")["outcome"] == "caller_hangup"


def test_a_token_replayed_after_its_call_ended_is_refused(store, caplog):
    client, runtime = make_client(store)
    with client, caplog.at_level(logging.WARNING):
        with client.websocket_connect("/twilio/media") as ws:
            ws.send_text(start_msg())
            receive_until(ws, "media")
            hang_up(ws)
        assert wait_for(lambda: not runtime.active_calls)
        with client.websocket_connect("/twilio/media") as again:
            again.send_text(start_msg())  # the same call's token, still within its lifetime
            assert close_code(again) == 1008
    assert "already had a stream, now ended (replayed token?)" in caplog.text
    store.flush()
    assert store.get_call("CA123")["outcome"] == "caller_hangup"  # the first call's record stands


def test_max_calls_is_checked_again_when_a_stream_starts(store, caplog):
    client, runtime = make_client(store, max_calls=1)
    with client, caplog.at_level(logging.WARNING):
        with client.websocket_connect("/twilio/media") as first:
            first.send_text(start_msg("CA1"))
            receive_until(first, "media")
            with client.websocket_connect("/twilio/media") as second:
                second.send_text(start_msg("CA2"))
                assert close_code(second) == 1013
            hang_up(first, call_sid="CA1")
    assert "call CA2 refused at stream start: 1 calls active (limit 1)" in caplog.text


def dev_client(store, **overrides):
    settings = Settings(flows_dir=REPO / "flows", dev_mode=True, **overrides)
    flows = FlowRepository(settings.flows_dir)
    flows.reload()
    runtime = Runtime(settings=settings, stt=None, tts=ToneSynthesizer(), nlu=None, store=store, flows=flows,
                      models={}, secret="x")
    return TestClient(create_app(settings, runtime_factory=lambda: runtime))


def test_unsigned_dev_mode_webhooks_are_rate_limited_per_source(store, caplog):
    with dev_client(store, webhook_burst_per_source=3) as client, caplog.at_level(logging.WARNING):
        answers = [client.post("/twilio/voice", data={"CallSid": f"CA{i}"}).text for i in range(5)]
    assert ["<Connect>" in a for a in answers] == [True, True, True, False, False]
    assert "busy" in answers[3] and "<Hangup" in answers[3]
    assert "over 5 new calls a second from this source (burst 3)" in caplog.text
    assert caplog.text.count("new calls a second") == 1  # the second refusal is not logged again


def test_signed_webhooks_are_not_rate_limited_per_source_by_default(store):
    client, _ = make_client(store)
    with client:
        answers = [post_voice(client, {"CallSid": f"CA{i}"}).text for i in range(60)]
    assert all("<Connect>" in a for a in answers)


def test_signed_webhooks_rate_when_the_operator_asks(store):
    client, _ = make_client(store, webhook_rate_per_source=0.001, webhook_burst_per_source=2)
    with client:
        answers = [post_voice(client, {"CallSid": f"CA{i}"}).text for i in range(3)]
    assert ["<Connect>" in a for a in answers] == [True, True, False]


def test_bad_signature_floods_log_one_line_per_source(store, caplog):
    client, _ = make_client(store)
    with client, caplog.at_level(logging.WARNING):
        codes = {post_voice(client, {"CallSid": f"CA{i}"}, sign=False).status_code for i in range(50)}
        text = client.get("/metrics").text
    assert codes == {403}
    assert caplog.text.count("X-Twilio-Signature") == 1
    assert 'ivr_refused_total{reason="signature",what="webhook"} 50.0' in text


def test_oversized_webhook_fields_are_refused(store):
    client, _ = make_client(store)
    with client:
        r = client.post("/twilio/voice", data={"CallSid": "CA1", "From": "x" * 100_000})
        many = client.post("/twilio/voice", data={f"f{i}": "1" for i in range(500)})
    assert r.status_code == 400 and many.status_code == 400


def test_metrics_expose_sockets_tasks_and_fds(store):
    client, _ = make_client(store)
    with client:
        assert metric(client, "ivr_media_websockets_open") == 0
        assert metric(client, "ivr_event_loop_tasks") >= 1
        assert metric(client, "process_open_fds") > 0
