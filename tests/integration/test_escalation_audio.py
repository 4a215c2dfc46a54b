"""An escalation on a simulated phone call: real server, real models, real `twilio` client.

The caller's voice (piper) goes through the media stream, whisper transcribes it, the policy
hears frustration and sends the call to a person: the server updates the live call through
Twilio's REST API, here a local stand-in, with a `<Dial>` whose whisper link says the summary.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ivr.calllog.store import CallStore
from ivr.tools.simulate import CallerSimulator, Step

from .conftest import AUTH_TOKEN, Server
from .test_transfer_twilio import ACCOUNT, FakeTwilioAPI

pytestmark = pytest.mark.slow

FLOW = """
flow: escalating
description: A line that hands upset callers to a person.
start: menu
nodes:
  menu:
    say: Welcome. Ask about opening hours.
    intents:
      hours: {examples: [opening hours, when are you open], goto: hours}
  hours: {say: We are open nine to six., next: menu}
  agent: {say: Connecting you to a person., transfer: "+15550100"}
escalation:
  human: agent
"""


@pytest.fixture(scope="module")
def twilio_api():
    api = FakeTwilioAPI()
    yield api
    api.close()


@pytest.fixture(scope="module")
def escalating_server(tmp_path_factory, twilio_api):
    tmp = tmp_path_factory.mktemp("escalating")
    flows = tmp / "flows"
    flows.mkdir()
    (flows / "escalating.yaml").write_text(FLOW)
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT, "IVR_TWILIO_API_URL": twilio_api.url, "IVR_DEFAULT_FLOW": "escalating"}
    with mock.patch.dict(os.environ, env):  # the server process copies the environment
        server = Server(tmp, flows_dir=flows)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def call_log(server, call_sid: str, timeout: float = 15) -> dict:
    deadline, call = time.time() + timeout, None
    while time.time() < deadline:
        store = CallStore(Path(server.data_dir) / "ivr.sqlite3", recover=False)
        try:
            call = store.get_call(call_sid)
        finally:
            store.close()
        if call and call["ended_at"]:
            return call
        time.sleep(0.3)
    return call


def test_upset_caller_is_transferred_with_a_whisper(escalating_server, twilio_api, caller_voice, listener):
    sim = CallerSimulator(escalating_server.url, voice=caller_voice, stt=listener, auth_token=AUTH_TOKEN)
    report = asyncio.run(sim.run([Step("say", "This is ridiculous. You are useless."), Step("pause", "3")]))
    print("\n".join(report.lines()))

    call = call_log(escalating_server, report.call_sid)
    assert call is not None, escalating_server.log()
    events = call["events"]
    decisions = [e["data"]["decision"] for e in events if e["type"] == "nlu"]
    assert decisions and decisions[0]["trigger"] == "frustration", (decisions, escalating_server.log())
    starts = [e["data"] for e in events if e["type"] == "handoff" and e["data"].get("event") == "start"]
    assert starts[0]["target"] == "human" and starts[0]["trigger"] == "frustration"
    transfer = [e["data"] for e in events if e["type"] == "transfer"][0]
    assert (transfer["target"], transfer["trigger"]) == ("+15550100", "frustration")
    assert transfer["summary"].startswith("Reason: caller sounds upset")
    assert call["outcome"] == "transferred"

    (request,) = [r for r in twilio_api.requests if report.call_sid in r["path"]]
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{report.call_sid}.json"
    twiml = request["form"]["Twiml"][0]
    assert twiml.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Number url="http://127.0.0.1:')
    assert twiml.endswith('">+15550100</Number></Dial></Response>')
    link = twiml.split('url="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert parse_qs(urlsplit(link).query)["s"] == [transfer["summary"]]
    # What Twilio plays to the agent when they pick up:
    said = httpx.post(link, timeout=10)
    assert said.status_code == 200 and f"<Say>{transfer['summary']}</Say>" in said.text
