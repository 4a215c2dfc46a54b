"""Human transfer through the real `twilio` client against a local stand-in for Twilio's REST API.

The stand-in is a plain HTTP server on 127.0.0.1 that records each request, so the test asserts
exactly what Twilio would receive: method, path, basic auth and the form body with the TwiML
`<Dial>` whose `<Number url=...>` makes Twilio say the whisper summary to the agent.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from ivr.conversation.session import TRANSFER_FAILED_SAY, CallSession
from ivr.dialog.loader import load_flow_text
from ivr.telephony.rest import TwilioCalls
from ivr.telephony.agent_whisper import PATH, check_whisper, whisper_url
from tests.fakes import EventList, KeywordNLU, RecordingOutput

ACCOUNT = "AC" + "0123456789abcdef" * 2
AUTH = "auth-token-for-tests"
SECRET = "whisper-secret"


class FakeTwilioAPI:
    """Answers like Twilio's Calls resource; `status` decides success or failure."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                api.requests.append({"method": "POST", "path": self.path, "form": parse_qs(body),
                                     "auth": self.headers.get("authorization"), "type": self.headers.get("content-type")})
                sid = self.path.rsplit("/", 1)[-1].removesuffix(".json")
                payload = {"sid": sid, "account_sid": ACCOUNT, "status": "in-progress"} if api.status == 200 else {
                    "code": 20003, "message": "Authenticate", "status": api.status}
                data = json.dumps(payload).encode()
                self.send_response(api.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def twilio_api():
    api = FakeTwilioAPI()
    yield api
    api.close()


async def test_transfer_updates_the_live_call_with_dial_and_whisper(twilio_api):
    calls = TwilioCalls(ACCOUNT, AUTH, api_url=twilio_api.url)
    link = "https://bot.example.com/twilio/whisper?call=CA42&s=x&t=1.y"
    assert await calls.transfer("CA42", "+15550100", whisper_url=link) is True
    (request,) = twilio_api.requests
    assert request["method"] == "POST"
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/CA42.json"
    assert request["type"] == "application/x-www-form-urlencoded"
    assert request["auth"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{AUTH}".encode()).decode()
    assert request["form"] == {"Twiml": [
        '<?xml version="1.0" encoding="UTF-8"?><Response><Dial>'
        '<Number url="https://bot.example.com/twilio/whisper?call=CA42&amp;s=x&amp;t=1.y">+15550100</Number>'
        "</Dial></Response>"]}


async def test_sip_transfer_without_whisper(twilio_api):
    calls = TwilioCalls(ACCOUNT, AUTH, api_url=twilio_api.url)
    assert await calls.transfer("CA43", "sip:desk@pbx.example.com")
    assert twilio_api.requests[0]["form"]["Twiml"] == [
        '<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Sip>sip:desk@pbx.example.com</Sip></Dial></Response>']


async def test_rest_failure_is_reported_not_raised(twilio_api):
    twilio_api.status = 401
    assert await TwilioCalls(ACCOUNT, AUTH, api_url=twilio_api.url).transfer("CA44", "+15550100") is False


FLOW = """
flow: shop
start: menu
slots:
  order_number: {type: digits, length: 6}
nodes:
  menu:
    say: Main menu.
    intents:
      order: {description: The caller asks about an order., examples: [my order], goto: ask_order}
  ask_order: {say: "Your order number?", collect: order_number, next: menu}
  agent: {say: Connecting you., transfer: "+15550100"}
escalation:
  human: agent
"""


class TwilioOutput(RecordingOutput):
    """What ivr.media.pipeline does on a live call: REST update with a signed whisper link."""

    def __init__(self, calls: TwilioCalls):
        super().__init__()
        self.calls = calls

    async def transfer(self, target: str, reason: str, summary: str = "") -> bool:
        self.transfers.append((target, reason))
        link = whisper_url("https://bot.example.com", SECRET, "CA7", summary) if summary else None
        return await self.calls.transfer("CA7", target, whisper_url=link)


def session_on(api: FakeTwilioAPI):
    out, events = TwilioOutput(TwilioCalls(ACCOUNT, AUTH, api_url=api.url)), EventList()
    return CallSession("CA7", load_flow_text(FLOW), out, nlu=KeywordNLU(), events=events), out, events


async def test_policy_transfer_sends_the_summary_to_the_agent(twilio_api):
    session, out, events = session_on(twilio_api)
    await session.start()
    await session.on_transcript("my order")
    await session.enter_keys("123456")
    await session.on_transcript("this is ridiculous and useless")
    transfer = events.of("transfer")[0]
    assert transfer["trigger"] == "frustration" and session.result.outcome == "transferred"
    twiml = twilio_api.requests[0]["form"]["Twiml"][0]
    url = twiml.split('url="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path == PATH and q["call"] == "CA7" and q["s"] == transfer["summary"]
    assert q["s"] == ("Caller wants: The caller asks about an order. Details: order number 1 2 3 4 5 6. "
                      "Reason: caller sounds upset (ridiculous, useless; score 0.50).")
    assert check_whisper(SECRET, "CA7", q["s"], q["t"]) is None
    assert check_whisper(SECRET, "CA7", q["s"] + " Give them a refund.", q["t"]) == "bad signature"


async def test_rest_failure_tells_the_caller_and_ends_cleanly(twilio_api):
    twilio_api.status = 500
    session, out, events = session_on(twilio_api)
    await session.start()
    await session.on_transcript("let me talk to a real person")
    assert len(twilio_api.requests) == 1
    assert out.said[-2:] == ["Connecting you.", TRANSFER_FAILED_SAY] and out.hangups == ["transfer failed"]
    assert events.of("error")[-1]["stage"] == "transfer" and session.result.outcome == "transfer_failed"


def test_whisper_endpoint_says_only_signed_summaries(tmp_path):
    from ivr.calllog.store import CallStore
    from tests.unit.test_media_protocol import make_client

    store = CallStore(tmp_path / "calls.sqlite3")
    client, runtime = make_client(store)
    try:
        with client:
            link = whisper_url("http://testserver", runtime.secret, "CA9", "Caller wants: a refund. Reason: angry.")
            ok = client.post(link.removeprefix("http://testserver"))
            assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/xml")
            assert ok.text == ('<?xml version="1.0" encoding="UTF-8"?><Response>'
                               "<Say>Caller wants: a refund. Reason: angry.</Say></Response>")
            forged = link.replace("a+refund", "free+money")
            assert client.get(forged.removeprefix("http://testserver")).status_code == 403
            assert client.get(PATH + "?call=CA9&s=hi").status_code == 403
    finally:
        store.close()
