"""Browser calls ("Try a call", #24) in-process with fake models: who may open one, what is
refused and how the page is told, wideband audio, drafts, transfers said instead of dialled,
floods, and a turn kept as a flow test. Chromium against a real server:
tests/integration/test_try_call_browser.py."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from starlette.websockets import WebSocketDisconnect

from ivr.dashboard.auth import COOKIE
from ivr.conversation.flow_test_cases import (TestCaseError, append_case, case_from_turns, new_tests_file, find_tests_file,
                                      unique_name)
from ivr.dashboard.turns import group_turns
from ivr.dialog.loader import FlowLoadError, expand_flow_paths
from ivr.media.serializer import SafeTwilioSerializer
from ivr.media.session_bridge import spoken_target
from ivr.serving.flows import FlowRepository
from ivr.telephony.guard import SocketWatch
from tests.unit.test_media_protocol import hang_up, make_client, receive_until, store, wait_for  # noqa: F401

REPO = Path(__file__).parent.parent.parent
MZ = "MZbrowser"


def browser_start(**params) -> str:
    return json.dumps({"event": "start", "streamSid": MZ, "start": {
        "streamSid": MZ, "callSid": "browser", "customParameters": params}})


def logged_in(client, runtime) -> None:
    response = client.post("/dashboard/login", data={"token": runtime.settings.dashboard_token},
                           follow_redirects=False)
    assert response.status_code == 303 and COOKIE in response.cookies


def closed_with(ws) -> tuple[int, list[dict]]:
    """Everything the server sent until it closed, and the close code."""
    sent = []
    while True:
        try:
            sent.append(json.loads(ws.receive_text()))
        except WebSocketDisconnect as exc:
            return exc.code, sent


@pytest.fixture
def client(store):  # noqa: F811
    c, runtime = make_client(store, dashboard_token="dash-token", max_calls=2)
    with c:
        yield c, runtime


def test_only_a_logged_in_operator_can_open_a_browser_call(client):
    c, runtime = client
    with c.websocket_connect("/dashboard/api/try/media") as ws:
        code, sent = closed_with(ws)
    assert code == 1008 and "Not logged in" in sent[-1]["message"]  # the page can say why
    assert not runtime.active_calls


def test_a_cross_site_page_cannot_use_the_operators_session(client):
    c, runtime = client
    logged_in(c, runtime)
    with pytest.raises(WebSocketDisconnect) as refused:
        with c.websocket_connect("/dashboard/api/try/media", headers={"origin": "https://evil.example"}) as ws:
            ws.receive_text()
    assert refused.value.code == 1008


def test_a_browser_call_runs_the_flow_and_is_logged_as_one(client):
    c, runtime = client
    logged_in(c, runtime)
    with c.websocket_connect("/dashboard/api/try/media") as ws:
        ws.send_text(browser_start(flow="customer_service"))
        placed = receive_until(ws, "call")
        assert placed["callSid"].startswith("BR") and placed["flow"] == "customer_service"
        receive_until(ws, "media")  # the greeting, as 8 kHz mu-law like Twilio's
        assert runtime.active_calls[placed["callSid"]]["channel"] == "browser"
        ws.send_text(json.dumps({"event": "dtmf", "streamSid": MZ, "dtmf": {"digit": "0"}}))  # agent
        sent = []
        code = None
        while code is None:
            try:
                sent.append(json.loads(ws.receive_text()))
            except WebSocketDisconnect as exc:
                code = exc.code
    transfer = next(m for m in sent if m.get("event") == "transfer")  # shown, and said, never dialled
    assert transfer["target"] == "+15550100"
    assert wait_for(lambda: not runtime.active_calls)
    runtime.store.flush()
    call = runtime.store.get_call(placed["callSid"])
    assert call["meta"]["channel"] == "browser" and call["meta"]["operator"].startswith("session ")
    said = [e["data"]["text"] for e in call["events"] if e["type"] == "prompt"]
    assert any("test call, so nobody is dialled" in s and "5 5 5 0 1 0 0" in s for s in said), call["events"]
    assert call["outcome"] == "transferred"
    assert runtime.store.summary()["test_calls"] == 1 and runtime.store.summary()["calls"] == 0
    metrics = c.get("/metrics").text  # nor in the line's metrics
    assert "ivr_calls_total{" not in metrics and "ivr_calls_active 0.0" in metrics


def test_what_cannot_be_called_is_said_to_the_page(client):
    c, runtime = client
    logged_in(c, runtime)
    for params, words in [({"flow": "no_such_flow"}, "No flow 'no_such_flow' is loaded"),
                          ({"draft": "../customer_service.yaml"}, "no draft")]:
        with c.websocket_connect("/dashboard/api/try/media") as ws:
            ws.send_text(browser_start(**params))
            code, sent = closed_with(ws)
        assert code == 1008 and words in sent[-1]["message"], sent


def test_browser_calls_count_against_max_calls(client):
    c, runtime = client
    logged_in(c, runtime)
    runtime.active_calls.update({"CA1": {}, "CA2": {}})  # the line is full
    with c.websocket_connect("/dashboard/api/try/media") as ws:
        ws.send_text(browser_start(flow="customer_service"))
        code, sent = closed_with(ws)
    assert code == 1013 and "IVR_MAX_CALLS" in sent[-1]["message"]
    runtime.active_calls.clear()


def test_a_browser_stream_that_sends_garbage_goes_on_and_one_that_floods_is_closed(client):
    c, runtime = client
    logged_in(c, runtime)
    with c.websocket_connect("/dashboard/api/try/media") as ws:
        ws.send_text(browser_start(flow="customer_service"))
        call_id = receive_until(ws, "call")["callSid"]
        for junk in ["not json", "[]", json.dumps({"event": "media", "media": {"payload": "***"}}),
                     json.dumps({"event": "dtmf", "dtmf": {"digit": "x"}})]:
            ws.send_text(junk)
        ws.send_text(json.dumps({"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}}))
        assert call_id in runtime.active_calls  # bad messages are dropped, the call goes on
        for _ in range(800):  # far past 150 a second, burst 500
            ws.send_text(json.dumps({"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}}))
        code, _ = closed_with(ws)
    assert code == 1008
    assert wait_for(lambda: not runtime.active_calls)
    runtime.store.flush()
    call = runtime.store.get_call(call_id)
    assert any(e["type"] == "error" and "flooding" in e["data"]["error"] for e in call["events"])


def test_a_draft_is_callable_from_the_browser_but_never_answers_the_phone(tmp_path, store):  # noqa: F811
    flows = tmp_path / "flows"
    shutil.copytree(REPO / "flows", flows)
    draft = (flows / "customer_service.yaml").read_text().replace("flow: customer_service", "flow: cs_next", 1)
    (flows / "cs_next.draft.yaml").write_text(draft)
    (flows / "broken.draft.yaml").write_text("flow: broken\nnodes: {}\n")
    assert not any(p.name.endswith(".draft.yaml") for p in expand_flow_paths([flows]))
    prepared = []
    repo = FlowRepository(flows, prepare=prepared.append)
    repo.reload()
    assert "cs_next" not in repo.names
    assert [p.name for p in repo.draft_files()] == ["broken.draft.yaml", "cs_next.draft.yaml"]
    loaded = repo.draft("cs_next.draft.yaml")
    assert loaded.name == "cs_next" and prepared[-1] is loaded
    assert repo.draft("cs_next.draft.yaml") is loaded  # unchanged on disk: not prepared again
    with pytest.raises(FlowLoadError):
        repo.draft("broken.draft.yaml")
    with pytest.raises(LookupError):
        repo.draft("customer_service.yaml")  # a live flow is not a draft

    c, runtime = make_client(store, dashboard_token="dash-token", flows_dir=flows)
    with c:
        logged_in(c, runtime)
        listed = c.get("/dashboard/api/try/flows").json()
        assert {d["file"]: bool(d["errors"]) for d in listed["drafts"]} == {"broken.draft.yaml": True,
                                                                            "cs_next.draft.yaml": False}
        with c.websocket_connect("/dashboard/api/try/media") as ws:
            ws.send_text(browser_start(draft="broken.draft.yaml"))
            code, sent = closed_with(ws)
        assert code == 1008 and "does not validate" in sent[-1]["message"] and sent[-1]["errors"]


def test_wideband_audio_goes_to_the_pipeline_as_16_khz_pcm():
    serializer = SafeTwilioSerializer(MZ, "BR1", wideband=True)
    serializer._sample_rate = 16000  # what the pipeline's setup gives it
    pcm = (np.sin(np.arange(320) / 5) * 8000).astype("<i2").tobytes()

    def message(payload: bytes) -> str:
        return json.dumps({"event": "media", "media": {"payload": base64.b64encode(payload).decode()}})

    frame = asyncio.run(serializer.deserialize(message(pcm)))
    assert frame.sample_rate == 16000 and frame.audio == pcm
    assert asyncio.run(serializer.deserialize(message(pcm[:-1]))) is None  # half a sample
    assert serializer.rejected == 1


class _Socket:
    def __init__(self, n: int):
        self.messages = [{"type": "websocket.receive", "text": "{}"}] * n

    async def receive(self):
        return self.messages.pop()


def test_a_wideband_call_hears_the_bot_at_16_khz(client):
    """Both ways: the greeting comes back as 16 kHz 16-bit PCM, spoken at 16 kHz, not 8 kHz mu-law."""
    c, runtime = client
    logged_in(c, runtime)
    runtime.tts.rates.clear()  # the start-up warm-up's call is a phone call
    with c.websocket_connect("/dashboard/api/try/media") as ws:
        ws.send_text(browser_start(flow="customer_service", wideband="1"))
        placed = receive_until(ws, "call")
        assert placed["wideband"] is True
        greeting = base64.b64decode(receive_until(ws, "media")["media"]["payload"])
        hang_up(ws, call_sid=placed["callSid"])  # and wait for the server to be done with the call
    tone = np.frombuffer(greeting, dtype="<i2")
    assert len(greeting) % 2 == 0 and np.abs(tone).max() > 4000  # PCM (mu-law bytes read as int16 would not be a tone)
    crossings = np.count_nonzero(np.diff(np.signbit(tone.astype(float))))  # 440 Hz: 880 crossings a second
    assert crossings / (len(tone) / 16000) == pytest.approx(880, rel=0.05)
    assert set(runtime.tts.rates) == {16000}


async def test_the_wideband_serializer_sends_16_khz_pcm_and_converts_other_rates():
    from pipecat.frames.frames import OutputAudioRawFrame, StartFrame

    serializer = SafeTwilioSerializer(MZ, "BR1", wideband=True)
    await serializer.setup(StartFrame(audio_in_sample_rate=16000, audio_out_sample_rate=16000))
    pcm = (np.sin(np.arange(640) / 5) * 8000).astype("<i2")
    sent = json.loads(await serializer.serialize(OutputAudioRawFrame(audio=pcm.tobytes(), sample_rate=16000,
                                                                    num_channels=1)))
    assert sent["event"] == "media" and sent["streamSid"] == MZ
    assert base64.b64decode(sent["media"]["payload"]) == pcm.tobytes()  # as it is: no mu-law, no resampling
    at_8k = json.loads(await serializer.serialize(OutputAudioRawFrame(audio=pcm.tobytes(), sample_rate=8000,
                                                                     num_channels=1)))
    assert len(base64.b64decode(at_8k["media"]["payload"])) == 2 * len(pcm.tobytes())  # twice the samples
    assert await serializer.serialize(OutputAudioRawFrame(audio=b"", sample_rate=16000, num_channels=1)) is None


def test_a_stream_that_floods_reads_as_closed_1008():
    clock = [0.0]
    socket = _Socket(1000)
    watch = SocketWatch(socket, max_rate=150, burst=500, clock=lambda: clock[0])

    async def read(n):
        return [await watch.receive() for _ in range(n)]

    got = asyncio.run(read(600))  # 600 messages in no time: past the burst
    assert got[499]["type"] == "websocket.receive" and got[500] == {"type": "websocket.disconnect", "code": 1008}
    assert watch.flooded and "flooding" in watch.problem
    calm = SocketWatch(_Socket(400), max_rate=150, burst=500, clock=lambda: clock[0])

    async def steady():
        for _ in range(400):  # 50 a second, Twilio's pace, for 8 s
            clock[0] += 0.02
            assert (await calm.receive())["type"] == "websocket.receive"

    asyncio.run(steady())
    assert not calm.flooded


def test_a_transfer_target_is_said_digit_by_digit():
    assert spoken_target("+15550100") == "1 5 5 5 0 1 0 0"
    assert spoken_target("sip:billing@pbx.example.com") == "billing"
    assert spoken_target("sip:2001@pbx.example.com") == "2 0 0 1"


# ----------------------------------------------------------------- a turn kept as a flow test

def _events():
    t = 100.0
    return [
        {"ts": t, "type": "node", "data": {"node": "main_menu"}},
        {"ts": t + 1, "type": "prompt", "data": {"text": "How can I help?"}},
        {"ts": t + 5, "type": "transcript", "data": {"text": "hours"}},
        {"ts": t + 5.1, "type": "turn_withdrawn", "data": {}},
        {"ts": t + 6, "type": "transcript", "data": {"text": "hours please, and where are you"}},
        {"ts": t + 6.1, "type": "nlu", "data": {"intent": "hours", "confidence": 0.9}},
        {"ts": t + 6.2, "type": "node", "data": {"node": "anything_else"}},
        {"ts": t + 6.3, "type": "prompt", "data": {"text": "We're open nine to six. Anything else?"}},
        {"ts": t + 9, "type": "dtmf", "data": {"digit": "0"}},
        {"ts": t + 9.1, "type": "node", "data": {"node": "agent"}},
        {"ts": t + 9.2, "type": "transfer", "data": {"target": "+15550100", "reason": "asked"}},
        {"ts": t + 12, "type": "transcript", "data": {"text": "[redacted]"}},
    ]


def test_a_turn_becomes_a_case_that_replays_the_call_up_to_it():
    turns = group_turns(_events(), 100.0)
    case = case_from_turns(turns, 3, "agent from anything else")
    assert case == {"name": "agent from anything else", "turns": [
        {"user": "hours please, and where are you", "expect": {"node": "anything_else"}},
        {"dtmf": "0", "expect": {"node": "agent", "transfer": "+15550100"}},
    ]}
    first = case_from_turns(turns, 2, "hours")["turns"][-1]["expect"]
    assert first == {"intent": "hours", "node": "anything_else", "say": "We're open nine to six."}
    for index, words in [(0, "greeting"), (1, "withdrawn"), (4, "redacted"), (9, "not a turn")]:
        with pytest.raises(TestCaseError, match=words):
            case_from_turns(turns, index, "x")


def test_a_case_is_appended_without_touching_the_designers_comments(tmp_path):
    text = "# my tests\nflow: ../bank.yaml  # the flow\ncases:\n  # the first one\n  - name: a\n    turns: [{user: hi}]\n"
    case = {"name": unique_name(text, "a"), "turns": [{"user": "yo", "expect": {"node": "x"}}]}
    assert case["name"] == "a (2)"
    out = append_case(text, case)
    assert out.startswith(text) and yaml.safe_load(out)["cases"][-1] == case
    for layout in ["flow: x\ncases:\n  - {name: a, turns: []}\nenv: {}\n", "flow: x\ncases: [{name: a, turns: []}]\n"]:
        with pytest.raises(TestCaseError, match="by hand"):
            append_case(layout, case)
    flows = tmp_path / "flows"
    (flows / "tests").mkdir(parents=True)
    (flows / "bank.yaml").write_text("flow: bank\n")
    (flows / "tests" / "bank.test.yaml").write_text("flow: ../bank.yaml\ncases:\n")
    assert find_tests_file(flows / "bank.yaml", flows) == flows / "tests" / "bank.test.yaml"
    fresh = find_tests_file(flows / "bank.draft.yaml", flows)
    assert fresh == flows / "tests" / "bank.draft.test.yaml"
    created = append_case(new_tests_file(flows / "bank.draft.yaml", fresh), case)
    assert yaml.safe_load(created)["flow"] == "../bank.draft.yaml"


def test_add_to_tests_is_for_the_dashboards_own_pages_and_never_loses_the_case(tmp_path, store):  # noqa: F811
    flows = tmp_path / "flows"
    shutil.copytree(REPO / "flows", flows)
    c, runtime = make_client(store, dashboard_token="dash-token", flows_dir=flows)
    with c:
        logged_in(c, runtime)
        runtime.store.start_call("CA9", flow="customer_service", flow_version="v", started_at=1.0)
        runtime.store.add_event("CA9", "transcript", {"text": "what time do you close"}, ts=2.0)
        runtime.store.add_event("CA9", "nlu", {"intent": "hours", "confidence": 0.95}, ts=2.1)
        runtime.store.add_event("CA9", "node", {"node": "anything_else"}, ts=2.2)
        runtime.store.end_call("CA9", "completed", ended_at=3.0)
        runtime.store.flush()
        body = json.dumps({"turn": 1})
        json_type = {"content-type": "application/json"}
        assert c.post("/dashboard/api/calls/CA9/tests", content=body,
                      headers={**json_type, "origin": "https://evil.example"}).status_code == 403
        assert c.post("/dashboard/api/calls/CA9/tests", content=body,
                      headers={"content-type": "text/plain"}).status_code == 415
        tests = flows / "tests" / "customer_service.test.yaml"
        blocker = tests.with_name(tests.name + ".tmp")
        blocker.mkdir()  # the write fails, as on a read-only flows folder (root ignores permissions)
        out = c.post("/dashboard/api/calls/CA9/tests", content=body, headers=json_type).json()
        assert not out["added"] and "paste the case by hand" in out["reason"]
        assert "what time do you close" in out["case"]
        blocker.rmdir()
        out = c.post("/dashboard/api/calls/CA9/tests", content=body, headers=json_type).json()
        assert out["added"] and yaml.safe_load(tests.read_text())["cases"][-1]["name"].startswith("call CA9, turn 1")
