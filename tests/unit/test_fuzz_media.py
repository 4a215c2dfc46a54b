"""Property-based fuzzing of the Twilio side: the media websocket and the voice webhook (issue #9).

Hypothesis generates whole media-stream sessions: a prelude (`connected`, junk, out-of-order
events), a `start` (mostly valid, made with a real stream token as the protocol tests make it;
sometimes broken), a body mixing valid media and keys with every kind of hostile message (bad
base64, non-JSON, JSON that is not an object, unknown events, huge and deeply nested messages,
duplicate `start`, `stop` then more media, bad DTMF, binary frames, random unicode), and an end
(Twilio's `stop`, or the caller's side closing the socket).

Each session runs against the real app and pipecat pipeline in-process with fake models. After
each one: nothing was raised out of the websocket handler, the server closed the socket, every
hostile message after `start` was counted as rejected (so the receive loop stayed alive to read
the last one), no ERROR was logged, and nothing leaked: no live call in the registry, the
`ivr_calls_active` gauge at 0, no extra asyncio tasks, no extra open file descriptors, no open
websockets.

The budget is fixed (max_examples, derandomize=True) so `make test` runs the same inputs every
time; test_zz_report prints how many inputs were tried (`pytest -s` shows it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import gc
import json
import logging
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger as loguru_logger
from starlette.websockets import WebSocket, WebSocketState

from ivr.serving.app import create_app
from ivr.calllog.store import CallStore
from ivr.serving.config import Settings
from ivr.serving.flows import FlowRepository
from ivr.media.serializer import KNOWN_EVENTS, MAX_MESSAGE_BYTES
from ivr.serving.runtime import Runtime
from ivr.telephony.security import make_stream_token, twilio_signature
from tests.fakes import KeywordNLU, ScriptedTranscriber, ToneSynthesizer

REPO = Path(__file__).parent.parent.parent
TOKEN = "test-auth-token"
FLOW = "customer_service"
WEBHOOK_URL = "https://bot.example.com/twilio/voice"

MEDIA_EXAMPLES = 30
WEBHOOK_EXAMPLES = 300
FUZZ_SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

# How many generated inputs ran, and what they held (reported by test_zz_report).
TRIED = {"media sessions": 0, "media messages": 0, "webhook posts": 0}


# ---------------------------------------------------------------- message strategies
ACCEPT, REJECT, END = "accept", "reject", "end"  # what the serializer must do with a message


def _media(payload: str | object, sid: str = "MZ1") -> str:
    return json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}})


def _is_json_object(raw: str | bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=10)
not_a_dict = json_values.filter(lambda v: not isinstance(v, dict))

valid_media = st.binary(min_size=0, max_size=480).map(lambda b: (_media(base64.b64encode(b).decode()), ACCEPT))
valid_media_as_binary_frame = st.binary(min_size=1, max_size=160).map(
    lambda b: (_media(base64.b64encode(b).decode()).encode(), ACCEPT))
valid_dtmf = st.sampled_from("0123456789*#").map(lambda d: (json.dumps({"event": "dtmf", "dtmf": {"digit": d}}), ACCEPT))
connected_again = st.just((json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}), ACCEPT))
mark = json_values.map(lambda m: (json.dumps({"event": "mark", "streamSid": "MZ1", "mark": m}), ACCEPT))

bad_base64 = st.text(min_size=1, max_size=60).filter(lambda s: not _is_base64(s)).map(lambda s: (_media(s), REJECT))
payload_not_a_string = json_values.filter(lambda v: not isinstance(v, str)).map(lambda v: (_media(v), REJECT))
media_body_not_an_object = not_a_dict.map(lambda v: (json.dumps({"event": "media", "media": v}), REJECT))
bad_dtmf_digit = json_values.filter(lambda d: not (isinstance(d, str) and len(d) == 1 and d in "0123456789*#")).map(
    lambda d: (json.dumps({"event": "dtmf", "dtmf": {"digit": d}}), REJECT))
dtmf_body_not_an_object = not_a_dict.map(lambda v: (json.dumps({"event": "dtmf", "dtmf": v}), REJECT))
non_json_text = st.text(max_size=80).filter(lambda s: not _is_json_object(s)).map(lambda s: (s, REJECT))
json_non_object = not_a_dict.map(lambda v: (json.dumps(v), REJECT))
unknown_event = (json_values.filter(lambda e: not (isinstance(e, str) and e in KNOWN_EVENTS))).map(
    lambda e: (json.dumps({"event": e, "streamSid": "MZ1"}), REJECT))
no_event = st.dictionaries(st.text(max_size=8).filter(lambda k: k != "event"), json_values, max_size=4).map(
    lambda d: (json.dumps(d), REJECT))
huge = st.sampled_from([
    "{" + "x" * (MAX_MESSAGE_BYTES + 10) + "}",
    _media(base64.b64encode(b"\xff" * 60000).decode()),  # valid media, but far too big for Twilio
    "\u00e9" * (MAX_MESSAGE_BYTES + 1),
]).map(lambda s: (s, REJECT))
deeply_nested = st.sampled_from([2000, 30000]).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"event": ' + "[" * n + "]" * n + "}"])).map(lambda s: (s, REJECT))
binary_junk = st.binary(max_size=120).filter(lambda b: not _is_json_object(b)).map(lambda b: (b, REJECT))
random_unicode = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200).filter(
    lambda s: not _is_json_object(s)).map(lambda s: (s, REJECT))


def start_message(call_sid: str, token: object | None = None, custom_extra: dict | None = None, stream_sid: object = "MZ1") -> str:
    token = make_stream_token(TOKEN, call_sid, FLOW) if token is None else token
    custom = {"flow": FLOW, "token": token, **(custom_extra or {})}
    return json.dumps({"event": "start", "streamSid": stream_sid, "start": {
        "streamSid": stream_sid, "callSid": call_sid, "customParameters": custom}})


@dataclass
class Session:
    prelude: list
    start: str  # "valid" or a kind of broken start
    start_detail: object
    body: list = field(default_factory=list)
    end: str = "stop"


@st.composite
def sessions(draw) -> Session:
    prelude_msg = st.one_of(
        st.just(json.dumps({"event": "connected", "protocol": "Call"})),
        valid_media.map(lambda m: m[0]),  # media before `start`
        non_json_text.map(lambda m: m[0]), json_non_object.map(lambda m: m[0]), unknown_event.map(lambda m: m[0]),
        bad_dtmf_digit.map(lambda m: m[0]), binary_junk.map(lambda m: m[0]), deeply_nested.map(lambda m: m[0]),
        random_unicode.map(lambda m: m[0]),
    )
    prelude = draw(st.lists(prelude_msg, max_size=4))
    start = draw(st.sampled_from(["valid"] * 6 + ["valid_odd_params", "bad_token", "token_not_text", "custom_not_object",
                                                    "start_not_object", "stop_first"]))
    detail = None
    if start == "valid_odd_params":
        detail = draw(st.dictionaries(st.sampled_from(["caller", "called", "extra"]), json_values, min_size=1))
    elif start == "bad_token":
        detail = draw(st.text(max_size=40) | st.just("123.abc") | st.just(make_stream_token(TOKEN, "CA-other", FLOW)))
    elif start == "token_not_text":
        detail = draw(json_values.filter(lambda v: not isinstance(v, str) and v is not None))
    elif start in ("custom_not_object", "start_not_object"):
        detail = draw(not_a_dict)
    body = []
    if start.startswith("valid"):
        hostile = st.one_of(
            bad_base64, payload_not_a_string, media_body_not_an_object, bad_dtmf_digit, dtmf_body_not_an_object,
            non_json_text, json_non_object, unknown_event, no_event, huge, deeply_nested, binary_junk, random_unicode,
            st.just(("DUPLICATE_START", REJECT)),
        )
        benign = st.one_of(valid_media, valid_media_as_binary_frame, valid_dtmf, connected_again, mark)
        body = draw(st.lists(st.one_of(hostile, hostile, benign, st.just(("STOP", END))), max_size=12))
    end = draw(st.sampled_from(["stop", "stop", "disconnect"]))
    return Session(prelude, start, detail, body, end)


# ---------------------------------------------------------------- the harness
class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(f"{record.name}: {record.getMessage()}")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _open_websockets() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, WebSocket)
               and WebSocketState.DISCONNECTED not in (o.application_state, o.client_state))


def _wait_for(pred, timeout=10.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def _drain(ws, timeout=10.0) -> bool:
    """Read until the server closes the socket; False when it is still open after timeout."""
    end = time.time() + timeout
    try:
        while time.time() < end:
            ws.receive_text()
    except Exception:
        return True
    return False


@pytest.fixture(scope="module")
def app_under_test(tmp_path_factory):
    store = CallStore(tmp_path_factory.mktemp("fuzz") / "calls.sqlite3")
    settings = Settings(twilio_auth_token=TOKEN, flows_dir=REPO / "flows", public_url="https://bot.example.com")
    flows = FlowRepository(settings.flows_dir)
    flows.reload()
    runtime = Runtime(
        settings=settings, stt=ScriptedTranscriber(), tts=ToneSynthesizer(), nlu=KeywordNLU(), store=store,
        flows=flows, models={"stt": {"name": "fake"}}, secret=TOKEN,
    )
    tracker = _Tracked(create_app(settings, runtime_factory=lambda: runtime))
    client = TestClient(tracker)
    errors = _Errors()
    loguru_errors: list[str] = []
    sink = loguru_logger.add(lambda m: loguru_errors.append(str(m)), level="ERROR")
    logging.getLogger().addHandler(errors)
    try:
        with client:
            # A few plain calls first: the first calls load what stays loaded (VAD model, thread
            # pools), which is not a leak.
            for i in range(3):
                with client.websocket_connect("/twilio/media") as ws:
                    ws.send_text(start_message(f"CAwarmup{i}"))
                    ws.send_text(json.dumps({"event": "stop", "streamSid": "MZ1"}))
                    _drain(ws)
                    _wait_for(lambda: tracker.running == 0)
            store.flush()
            store.get_call("CAwarmup0")  # this thread's own database connection
            client.get("/metrics")
            yield client, tracker, runtime, store, errors, loguru_errors
    finally:
        logging.getLogger().removeHandler(errors)
        loguru_logger.remove(sink)
        store.close()


def _tasks(client) -> int:
    async def count():
        return len(asyncio.all_tasks())

    return client.portal.call(count)


class _Tracked:
    """The ASGI app, counting websocket handlers still running and what escaped them."""

    def __init__(self, app):
        self.app, self.running, self.errors = app, 0, []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        self.running += 1
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self.running -= 1


def _run_session(client, tracker, runtime, store, s: Session, call_sid: str) -> None:
    odd = s.start_detail if s.start == "valid_odd_params" else {}
    starts_call = s.start.startswith("valid") and all(isinstance(v, str) for v in odd.values()) and not any(
        isinstance(m, str) and _stops(m) for m in s.prelude)
    if s.start in ("valid", "valid_odd_params"):
        start = start_message(call_sid, custom_extra=s.start_detail)
    elif s.start in ("bad_token", "token_not_text"):
        start = start_message(call_sid, token=s.start_detail)
    elif s.start == "custom_not_object":
        start = json.dumps({"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1", "callSid": call_sid, "customParameters": s.start_detail}})
    elif s.start == "start_not_object":
        start = json.dumps({"event": "start", "streamSid": "MZ1", "start": s.start_detail})
    else:  # stop_first
        start = json.dumps({"event": "stop", "streamSid": "MZ1"})
    rejected_by = None  # rejected messages up to the first `stop` in the body
    rejected_all = 0
    closed = False
    try:
        with client.websocket_connect("/twilio/media") as ws:
            for raw in [*s.prelude, start]:
                _send(ws, raw)
            for raw, verdict in s.body:
                if raw == "DUPLICATE_START":
                    raw = start
                elif raw == "STOP":
                    raw = json.dumps({"event": "stop", "streamSid": "MZ1"})
                    if rejected_by is None:
                        rejected_by = rejected_all
                _send(ws, raw)
                rejected_all += verdict == REJECT
            TRIED["media messages"] += len(s.prelude) + 1 + len(s.body)
            if rejected_by is None:
                rejected_by = rejected_all
            if s.end == "stop":
                ws.send_text(json.dumps({"event": "stop", "streamSid": "MZ1"}))
                closed = _drain(ws)
            else:  # the caller's side closes the socket
                ws.close(1000)
                closed = _drain(ws)
            # Leaving this block makes the test client cancel a handler still running, which
            # Twilio never does: wait for the handler to return on its own first.
            assert _wait_for(lambda: tracker.running == 0), "the media handler did not return"
    except concurrent.futures.CancelledError:
        raise AssertionError("the media handler was still running when the client left")
    assert closed, "the server did not close the media socket"
    assert not tracker.errors, f"raised out of the media handler: {tracker.errors!r}"

    assert _wait_for(lambda: not runtime.active_calls), f"calls left in the registry: {list(runtime.active_calls)}"
    store.flush()
    call = store.get_call(call_sid)
    if not starts_call:
        assert call is None, "a refused stream left a call record"
        return
    assert call is not None and call["ended_at"] is not None, "the call was not ended and logged"
    rejected = call["summary"]["rejected_messages"]
    assert rejected <= rejected_all + 0, (rejected, rejected_all)
    if s.end == "stop" and call["outcome"] != "completed":
        # The receive loop read every message up to the `stop` (nothing killed it) and the call
        # ended because of a `stop`, not because the loop died and closed the socket.
        assert call["summary"]["reason"] == "stream stopped", call["summary"]["reason"]
        assert rejected >= rejected_by, (rejected, rejected_by)


def _stops(raw: str) -> bool:
    try:
        m = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(m, dict) and m.get("event") == "stop"


def _send(ws, raw) -> None:
    if isinstance(raw, bytes):
        ws.send_bytes(raw)
    else:
        ws.send_text(raw)


def test_fuzz_media_stream_sessions(app_under_test):
    client, tracker, runtime, store, errors, loguru_errors = app_under_test
    counter = iter(range(1_000_000))

    @settings(max_examples=MEDIA_EXAMPLES, **FUZZ_SETTINGS)
    @given(s=sessions())
    def run(s: Session):
        TRIED["media sessions"] += 1
        call_sid = f"CAfuzz{next(counter)}"
        fds, tasks, sockets = _fds(), _tasks(client), _open_websockets()
        errors.records.clear()
        loguru_errors.clear()
        tracker.errors.clear()
        _run_session(client, tracker, runtime, store, s, call_sid)
        assert "ivr_calls_active 0.0" in client.get("/metrics").text
        assert _wait_for(lambda: _tasks(client) <= tasks, 5), f"asyncio tasks: {_tasks(client)} after, {tasks} before"
        assert _wait_for(lambda: _fds() <= fds, 5), f"open fds: {_fds()} after, {fds} before"
        assert _open_websockets() <= sockets, "a websocket was left open"
        assert not errors.records, errors.records
        assert not loguru_errors, loguru_errors

    run()


# ---------------------------------------------------------------- the webhook
form_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=30)
form_params = st.dictionaries(
    st.sampled_from(["CallSid", "From", "To", "AccountSid", "CallStatus", "Direction"]) | form_text.filter(bool),
    form_text, max_size=6)


@st.composite
def webhook_posts(draw):
    params = draw(form_params)
    query = draw(st.sampled_from(["", "", "?flow=customer_service", "?flow=nope"]) | form_text.map(lambda q: "?flow=" + quote(q, safe="")))
    how = draw(st.sampled_from(["valid", "valid", "none", "random", "other_url", "other_params"]))
    url = WEBHOOK_URL + query
    if how == "valid":
        sig = twilio_signature(TOKEN, url, params)
    elif how == "none":
        sig = None
    elif how == "random":
        sig = draw(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40))
    elif how == "other_url":
        sig = twilio_signature(TOKEN, "https://evil.example.com/twilio/voice" + query, params)
    else:
        sig = twilio_signature(TOKEN, url, {**params, "Extra": "x"})
    return params, query, sig, how == "valid"


def test_fuzz_voice_webhook(app_under_test):
    client, tracker, runtime, store, errors, loguru_errors = app_under_test

    @settings(max_examples=WEBHOOK_EXAMPLES, **FUZZ_SETTINGS)
    @given(post=webhook_posts())
    def run(post):
        TRIED["webhook posts"] += 1
        params, query, sig, signed = post
        headers = {"X-Twilio-Signature": sig} if sig is not None else {}
        r = client.post("/twilio/voice" + query, data=params, headers=headers)
        if not signed:
            assert r.status_code == 403, (r.status_code, r.text)
            return
        if not params.get("CallSid"):
            assert r.status_code == 400
            return
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml"), (r.status_code, r.text)
        root = ET.fromstring(r.content)  # well-formed XML, whatever the caller's fields held
        assert root.tag == "Response"
        if root.find("Connect") is not None:
            stream = root.find("Connect/Stream")
            values = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
            assert values["flow"] == FLOW and values["token"]
        else:
            assert root.find("Say") is not None and root.find("Hangup") is not None

    run()
    assert not runtime.active_calls


def test_zz_report():
    """Runs last in this file: the numbers quoted in the issue's note."""
    print(f"\nfuzz inputs tried: {TRIED['media sessions']} media-stream sessions "
          f"({TRIED['media messages']} websocket messages), {TRIED['webhook posts']} webhook posts; "
          "no crash, no leaked call, task, fd or websocket")
    if TRIED["media sessions"]:
        assert TRIED["media sessions"] >= MEDIA_EXAMPLES // 2
