"""SIGTERM on a real `ivr serve` with a call in progress: the server drains, then exits 0.

While it drains /healthz is 503 "draining" and a new webhook hears "busy"; the call in progress
gets IVR_DRAIN_SECONDS to finish, then hears the goodbye and is hung up; the call log says
"drained". Its own server: the shared one must not be stopped.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import signal
import time

import httpx
import pytest

from ivr.calllog.store import CallStore
from ivr.conversation.session import DRAIN_SAY
from ivr.serving.drain import DRAIN_REASON
from ivr.tools.simulate import CallerSimulator, Step
from ivr.telephony.security import twilio_signature

from .conftest import AUTH_TOKEN, Server

pytestmark = pytest.mark.slow

DRAIN_SECONDS = 3


def similar(heard: str, expected: str) -> float:
    def words(t):
        return re.findall(r"[a-z0-9]+", t.lower())

    return difflib.SequenceMatcher(None, words(heard), words(expected)).ratio()


async def _healthz(client: httpx.AsyncClient, url: str):
    r = await client.get(url + "/healthz")
    return r.status_code, r.json()


def test_sigterm_drains_the_call_in_progress_then_exits_0(tmp_path, caller_voice, listener):
    server = Server(tmp_path, env={"IVR_DRAIN_SECONDS": str(DRAIN_SECONDS)})
    try:
        server.wait_ready()
        sim = CallerSimulator(server.url, voice=caller_voice, stt=listener, auth_token=AUTH_TOKEN)
        # The caller stays on the line, quiet, far longer than the drain.
        steps = [Step("pause", "1")] * 60

        async def scenario():
            call = asyncio.create_task(sim.run(steps))
            async with httpx.AsyncClient(timeout=5) as client:
                # Wait for the greeting to be over, so the goodbye is an utterance of its own.
                deadline = time.time() + 60
                while time.time() < deadline and not (sim._utterances and time.time() - sim._last_speech > 1.5):
                    await asyncio.sleep(0.1)
                status, body = await _healthz(client, server.url)
                assert status == 200 and body["active_calls"] == 1, body
                sent = time.time()
                server.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                status, body = await _healthz(client, server.url)
                assert (status, body) == (503, {"status": "draining", "active_calls": 1})
                url = server.url + "/twilio/voice"
                params = {"CallSid": "CAdrain-new", "From": "+15555550999", "To": "+15555550100"}
                r = await client.post(url, data=params, headers={"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, url, params)})
                assert r.status_code == 200 and "<Connect>" not in r.text and "busy" in r.text, r.text
            report = await asyncio.wait_for(call, DRAIN_SECONDS + 40)
            return report, sent

        report, sent = asyncio.run(scenario())
        print("\n".join(report.lines()))
        assert report.closed_by == "bot"
        assert len(report.turns) < len(steps)  # hung up on, long before the caller was done
        heard = [u.text for u in sim._utterances]
        print("heard:", heard)
        assert similar(heard[-1], DRAIN_SAY) > 0.6, heard
        assert len(heard) >= 2  # the greeting, then the goodbye

        rc = server.proc.wait(timeout=DRAIN_SECONDS + 25)
        took = time.time() - sent
        print(f"exited {rc} {took:.1f}s after SIGTERM")
        assert rc == 0, server.log()
        # The drain limit, the goodbye spoken in real time (~4 s) and uvicorn's stop.
        assert took < DRAIN_SECONDS + 12, took

        store = CallStore(tmp_path / "ivr.sqlite3", recover=False)
        try:
            call = store.get_call(report.call_sid)
            assert store.get_call("CAdrain-new") is None  # refused: never started
        finally:
            store.close()
        assert call["outcome"] == "drained" and call["ended_at"], call
        drains = [e["data"] for e in call["events"] if e["type"] == "drain"]
        assert drains and drains[0]["reason"] == DRAIN_REASON, drains
        assert "drained in" in server.log()
    finally:
        server.stop()
