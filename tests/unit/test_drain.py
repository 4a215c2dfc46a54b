"""Draining on SIGTERM (ivr/serving/drain.py): the app's answers while draining, the polite end of a
CallSession, and the drain's order of events, all with fakes."""

import asyncio
from pathlib import Path

import pytest

from ivr.calllog.events import EVENT_TYPES
from ivr.conversation.session import DRAIN_SAY, CallSession
from ivr.serving.config import load_settings
from ivr.dialog.loader import load_flow
from ivr.serving.drain import DRAIN_REASON, drain
from tests.fakes import EventList, KeywordNLU, RecordingOutput
from tests.unit.test_media_protocol import make_client, post_voice, store  # noqa: F401 (fixture)

REPO = Path(__file__).parent.parent.parent


# ------------------------------------------------------------------ the app while draining
def test_healthz_is_503_draining_with_the_calls_left(store):  # noqa: F811
    client, runtime = make_client(store)
    with client:
        ok = client.get("/healthz")
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        runtime.active_calls["CAbusy"] = {"flow": "customer_service", "started": 0.0, "session": None}
        runtime.draining = True
        r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json() == {"status": "draining", "active_calls": 1}


def test_webhook_answers_busy_while_draining(store):  # noqa: F811
    client, runtime = make_client(store)
    with client:
        assert "<Connect>" in post_voice(client).text
        runtime.draining = True
        r = post_voice(client, {"CallSid": "CA999", "From": "+15551230000", "To": "+15550001111"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert "<Connect>" not in r.text and "<Hangup" in r.text and "busy" in r.text


def test_webhook_signature_still_checked_while_draining(store):  # noqa: F811
    client, runtime = make_client(store)
    with client:
        runtime.draining = True
        assert post_voice(client, sign=False).status_code == 403


def test_drain_seconds_setting_from_env():
    assert load_settings(env={"IVR_CONFIG": "/nonexistent.toml"}).drain_seconds == 30.0
    assert load_settings(env={"IVR_CONFIG": "/nonexistent.toml", "IVR_DRAIN_SECONDS": "3"}).drain_seconds == 3.0


# ------------------------------------------------------------------ the polite end of a call
@pytest.fixture
def flow():
    return load_flow(REPO / "flows" / "customer_service.yaml")


def make(flow, nlu=None):
    out, events = RecordingOutput(), EventList()
    return CallSession("CA1", flow, out, nlu=nlu or KeywordNLU(), events=events), out, events


async def test_end_politely_says_goodbye_hangs_up_and_logs_the_drain(flow):
    session, out, events = make(flow)
    await session.start()
    assert await session.end_politely(DRAIN_REASON) is True
    assert out.said[-1] == DRAIN_SAY
    assert out.hangups == [DRAIN_REASON]
    assert session.result.outcome == "drained" and session.result.reason == DRAIN_REASON
    assert events.of("drain") == [{"reason": DRAIN_REASON, "node": "main_menu", "outcome": "drained"}]
    assert "drain" in EVENT_TYPES  # the call log takes it (it refuses types it does not know)
    assert events.of("prompt")[-1]["kind"] == "drained"
    # The caller's words after it change nothing; the pipeline's own end keeps the outcome.
    await session.on_transcript("I want to check on my order")
    await session.on_dtmf("2")
    assert session.engine.node_name == "main_menu" and out.said[-1] == DRAIN_SAY
    assert await session.end_politely(DRAIN_REASON) is False  # once
    await session.end("completed", "pipeline finished")
    assert events.of("hangup") == [{"outcome": "drained", "reason": DRAIN_REASON}]
    assert out.hangups == [DRAIN_REASON]


async def test_end_politely_cuts_the_prompt_being_spoken(flow):
    session, out, _ = make(flow)
    await session.start()
    await session.on_bot_started_speaking()
    await session.end_politely(DRAIN_REASON)
    assert out.interrupts == 1 and out.said[-1] == DRAIN_SAY


async def test_a_turn_in_progress_says_nothing_after_the_goodbye(flow):
    """The goodbye is the last word: no question asked after it that nobody may answer."""
    session, out, events = make(flow, nlu=KeywordNLU(delay=0.3))
    await session.start()
    turn = asyncio.create_task(session.on_transcript("I want to check on my order"))
    await asyncio.sleep(0.05)  # the turn holds the lock, waiting on the NLU
    await session.end_politely(DRAIN_REASON, lock_wait=2.0)
    await turn
    assert out.said[-1] == DRAIN_SAY and "Please say or key in your six digit order number." not in out.said
    assert session.result.outcome == "drained"


async def test_a_turn_slower_than_the_wait_does_not_hold_up_the_goodbye(flow):
    session, out, _ = make(flow, nlu=KeywordNLU(delay=0.5))
    await session.start()
    turn = asyncio.create_task(session.on_transcript("I want to check on my order"))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(session.end_politely(DRAIN_REASON, lock_wait=0.05), 0.3)
    assert out.said[-1] == DRAIN_SAY
    await turn
    assert out.said[-1] == DRAIN_SAY and session.result.outcome == "drained"


async def test_end_politely_does_nothing_to_a_call_already_ending(flow):
    session, out, _ = make(flow)
    await session.start()
    await session.end("caller_hangup", "stream stopped")
    assert await session.end_politely(DRAIN_REASON) is False
    assert DRAIN_SAY not in out.said and session.result.outcome == "caller_hangup"


# ------------------------------------------------------------------ the drain itself
class FakeSession:
    def __init__(self, runtime, call_id, hangs_up_after=0.05):
        self.runtime, self.call_id, self.hangs_up_after = runtime, call_id, hangs_up_after
        self.asked: list[str] = []

    async def end_politely(self, reason):
        self.asked.append(reason)
        asyncio.get_running_loop().call_later(self.hangs_up_after, self.runtime.active_calls.pop, self.call_id, None)
        return True


class FakeRuntime:
    def __init__(self):
        self.active_calls: dict = {}
        self.draining = False

    def add(self, call_id, **kw):
        session = FakeSession(self, call_id, **kw)
        self.active_calls[call_id] = {"flow": "f", "started": 0.0, "session": session}
        return session


async def test_drain_lets_calls_finish_then_ends_the_rest_politely():
    runtime = FakeRuntime()
    finishing, staying = runtime.add("CAa"), runtime.add("CAb")
    asyncio.get_running_loop().call_later(0.1, runtime.active_calls.pop, "CAa", None)  # hangs up by itself
    result = await drain(runtime, 0.4)
    assert runtime.draining and not runtime.active_calls
    assert finishing.asked == [] and staying.asked == [DRAIN_REASON]
    assert result["calls_at_start"] == 2 and result["ended_by_drain"] == 1 and result["still_open"] == 0
    assert 0.4 <= result["seconds"] < 2


async def test_drain_with_no_calls_is_immediate():
    runtime = FakeRuntime()
    result = await drain(runtime, 30)
    assert runtime.draining and result["seconds"] < 0.5 and result["ended_by_drain"] == 0


async def test_drain_gives_up_on_a_call_that_never_closes():
    runtime = FakeRuntime()
    stuck = runtime.add("CAstuck", hangs_up_after=60)
    result = await drain(runtime, 0.1, goodbye_seconds=0.3)
    assert stuck.asked == [DRAIN_REASON] and result["still_open"] == 1 and result["seconds"] < 1.5


async def test_a_second_signal_stops_the_wait():
    runtime = FakeRuntime()
    runtime.add("CAlong")
    skip = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, skip.set)
    result = await drain(runtime, 30, skip=skip)
    assert result["seconds"] < 1


# ------------------------------------------------------------------ the server's SIGTERM
async def test_sigterm_drains_then_stops_the_server_without_re_raising(store):  # noqa: F811
    import signal

    import httpx
    import uvicorn

    from ivr.serving.app import create_app
    from ivr.serving.drain import DrainingServer
    from tests.integration.procs import free_port

    _, runtime = make_client(store)  # only its runtime
    port = free_port()
    app = create_app(runtime.settings, runtime_factory=lambda: runtime)
    server = DrainingServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"), runtime, 0.5)
    runtime.active_calls["CAx"] = {"flow": "customer_service", "started": 0.0, "session": None}
    serving = asyncio.create_task(server.serve())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(100):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert (await http.get("/healthz")).status_code == 200
        server.handle_exit(signal.SIGTERM, None)  # what the signal would call
        await asyncio.sleep(0.2)
        assert not server.should_exit  # draining, still answering
        r = await http.get("/healthz")
        assert r.status_code == 503 and r.json() == {"status": "draining", "active_calls": 1}
        runtime.active_calls.clear()  # the call ends
    await asyncio.wait_for(serving, 10)
    assert server.should_exit and server._captured_signals == []  # nothing re-raised: exit 0
