"""Escalation triggers on text calls, against llama-cpp-python's real OpenAI-compatible server.

Each case drives a CallSession by the caller's words into one trigger and reads the call log:
the `nlu` decision names the trigger and the reason, the `handoff`/`transfer` record follows.
The fault cases use servers that fail the way real ones do (nothing listening, too slow,
garbage) and measure, from the caller's words, when the caller first hears something.
"""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ivr.conversation.session import CallSession
from ivr.dialog.loader import load_flow_text
from ivr.handoff.llm import APOLOGY, LLMHandoff
from tests.fakes import EventList, KeywordNLU
from tests.unit.test_llm_handoff import TimedOutput, handoff_events

from .procs import free_port
from .test_llm_server import LlamaServer, settings

pytestmark = pytest.mark.slow

FLOW = """
flow: petshop
description: Paws and Claws, a pet shop open nine to six every day
start: menu
slots:
  order_number: {type: digits, length: 6, description: the six digit order number}
nodes:
  menu:
    say: Welcome to Paws and Claws. Ask about opening hours or an order.
    intents:
      hours: {examples: [opening hours, when are you open], goto: hours}
      order: {examples: [my order, order status], goto: ask_order}
  hours: {say: We are open nine to six every day., next: menu}
  ask_order: {say: "What is your six digit order number?", collect: order_number, next: menu}
  agent: {say: Connecting you., transfer: "+15550100"}
escalation:
  human: agent
"""
MENU = "Welcome to Paws and Claws. Ask about opening hours or an order."
HEARD_WITHIN_S = 2.0
SLACK_S = 0.5  # a shared 2-core machine: scheduling, not the design, may add this much


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    server = LlamaServer(tmp_path_factory.mktemp("llama"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def make(base_url: str, flow: str = FLOW, **overrides):
    handoff = LLMHandoff(settings(base_url, **overrides))
    out, events = TimedOutput(), EventList()
    session = CallSession("CA-esc", load_flow_text(flow), out, nlu=KeywordNLU(), events=events, handoff=handoff)
    return session, out, events


async def say(session, out, text: str) -> float | None:
    """The caller's words; returns seconds until the caller heard the bot's next line."""
    before = len(out.times)
    said_at = time.perf_counter()
    await session.on_transcript(text)
    return out.times[before] - said_at if len(out.times) > before else None


def decision(events: EventList) -> dict:
    return events.of("nlu")[-1]["decision"]


def llm_spoke(events: EventList) -> list[str]:
    return [p["text"] for p in events.of("prompt") if p.get("kind") == "llm"]


def print_turns(events: EventList) -> None:
    for t in handoff_events(events, "turn"):
        print(f"  LLM turn: first_token_ms={t['first_token_ms']} latency_ms={t['latency_ms']} "
              f"tokens={t['tokens']} tools={t['tool_calls']}")


async def test_out_of_scope_question_is_answered_by_the_llm(llama):
    session, out, events = make(llama.base_url)
    print(f"\nwarm-up: {await session.handoff.warm(session.flow)} ms")
    await session.start()
    heard = await say(session, out, "can dogs come into the shop")
    print_turns(events)
    print("said:", out.said, f"first heard after {heard:.2f}s")
    d = decision(events)
    assert (d["escalate"], d["trigger"], d["target"]) == (True, "out_of_scope", "llm"), d
    start = handoff_events(events, "start")[0]
    assert (start["trigger"], start["reason"]) == ("out_of_scope", "request is outside this menu")
    assert llm_spoke(events) and APOLOGY not in out.said, events.of("error")
    assert heard is not None and heard < HEARD_WITHIN_S + SLACK_S  # a sentence, or the filler
    turn = handoff_events(events, "turn")[0]
    assert turn["tokens"]["llm"] > 0


async def test_return_to_flow_ends_back_in_the_scripted_node(llama):
    prompt = ("When the caller asks about opening hours, call return_to_flow with node hours. "
              "When they ask about an order, call return_to_flow with node ask_order.")
    session, out, events = make(llama.base_url, system_prompt=prompt, max_turns=2)
    await session.handoff.warm(session.flow)
    await session.start()
    await say(session, out, "I have a question about hamsters")
    if session.handoff.is_active(session):
        await say(session, out, "actually, what are your opening hours")
    print_turns(events)
    print("said:", out.said)
    end = handoff_events(events, "end")[0]
    print("handoff ended:", end)
    assert end["why"] in ("return_to_flow", "max_turns"), end
    assert not session.handoff.is_active(session) and not session.closing
    assert session.engine.node_name in ("menu", "hours", "ask_order")
    assert session.expectation is not None and session.expectation.node == session.engine.node_name
    # The flow speaks again: the node's own prompt is the last thing the caller heard.
    assert out.said[-1] in (MENU, "What is your six digit order number?"), out.said


async def test_repeated_no_match_and_multiple_requests_go_to_the_llm(llama):
    session, out, events = make(llama.base_url, max_turns=1)
    await session.start()
    await say(session, out, "my order")
    await say(session, out, "I don't have it with me")
    assert not decision(events)["escalate"] and "1 of 2" in decision(events)["reason"]
    await say(session, out, "it's on the receipt somewhere I think")
    assert decision(events)["trigger"] == "no_match" and handoff_events(events, "start")[0]["return_to"] == "ask_order"
    print_turns(events)
    assert handoff_events(events, "end")[0]["why"] == "max_turns"
    assert session.engine.node_name == "ask_order" and out.said[-1] == "What is your six digit order number?"

    await say(session, out, "I need your opening hours and also I want to return a dog bed")
    assert decision(events)["trigger"] == "multiple_requests"
    assert [s["trigger"] for s in handoff_events(events, "start")] == ["no_match", "multiple_requests"]


async def test_frustration_and_a_person_during_the_llm_go_to_a_human(llama):
    # By default an upset caller goes to the model when there is one; this flow says a person.
    session, out, events = make(llama.base_url, flow=FLOW + "  frustration: {target: human}\n")
    await session.start()
    heard = await say(session, out, "this is ridiculous, you are useless")
    assert decision(events)["trigger"] == "frustration" and events.of("transfer")[0]["trigger"] == "frustration"
    assert heard is not None and heard < HEARD_WITHIN_S and out.transfers

    session, out, events = make(llama.base_url, max_turns=3)
    await session.start()
    await say(session, out, "any bird cages for sale")
    assert session.handoff.is_active(session), out.said
    await say(session, out, "I'd rather talk to a real person")
    d = decision(events)
    assert (d["trigger"], d["target"]) == ("person", "human")
    transfer = events.of("transfer")[0]
    assert transfer["trigger"] == "person" and transfer["summary"].endswith("Reason: caller asked for a person.")
    assert handoff_events(events, "end")[0]["why"] == "transfer"


# ---------------------------------------------------------------- faults
class Misbehaving:
    """An HTTP server on 127.0.0.1 that answers chat completions slowly or with garbage."""

    def __init__(self, *, delay: float = 0.0, body: bytes = b"", content_type: str = "text/event-stream"):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                if outer.delay:
                    outer.stop.wait(outer.delay)
                try:
                    self.send_response(200)
                    self.send_header("content-type", outer.content_type)
                    self.send_header("content-length", str(len(outer.body)))
                    self.end_headers()
                    self.wfile.write(outer.body)
                except OSError:
                    pass  # the client gave up first: that is the point

            def log_message(self, *args):
                pass

        self.delay, self.body, self.content_type = delay, body, content_type
        self.stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


FAULT_SETTINGS = dict(first_token_timeout_s=1.8, timeout_s=4.0, filler_after_s=1.0)


async def fault_call(base_url: str):
    session, out, events = make(base_url, **FAULT_SETTINGS)
    await session.start()
    said_at = time.perf_counter()
    heard = await say(session, out, "can parrots come into the shop")
    apology_after = out.times[out.said.index(APOLOGY)] - said_at if APOLOGY in out.said else None
    print(f"\n  first heard {heard:.2f}s, apology {apology_after:.2f}s after the caller's words; said {out.said}")
    assert decision(events)["trigger"] == "out_of_scope"
    assert heard is not None and heard < HEARD_WITHIN_S + SLACK_S
    assert apology_after is not None and apology_after < HEARD_WITHIN_S + SLACK_S
    assert out.said[-1] == MENU and session.engine.node_name == "menu"  # the flow's fallback: retry
    assert not session.handoff.is_active(session)
    assert handoff_events(events, "fallback")[0]["to"] == "return_to"
    return events.of("error")[-1], out


async def test_fault_server_stopped():
    error, out = await fault_call(f"http://127.0.0.1:{free_port()}/v1")
    assert error["stage"] == "llm" and error["error"].startswith("connection error"), error
    assert out.said[1] == APOLOGY  # no filler needed: the failure is immediate


async def test_fault_server_slower_than_the_timeout():
    server = Misbehaving(delay=30)
    try:
        error, out = await fault_call(server.base_url)
    finally:
        server.close()
    assert error["error"] == "timeout: no first token within 1.8s", error
    assert out.said[1] == "One moment while I look into that."  # heard at 1 s, before the apology


@pytest.mark.parametrize("body, content_type", [
    (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
    (b"data: {this is not json\n\ndata: [DONE]\n\n", "text/event-stream"),
    (b'data: {"id": "x", "choices": [{"index": 0, "delta": {}}]}\n\ndata: [DONE]\n\n', "text/event-stream"),
], ids=["html", "broken-json", "empty-reply"])
async def test_fault_server_returning_garbage(body, content_type):
    server = Misbehaving(body=body, content_type=content_type)
    try:
        error, out = await fault_call(server.base_url)
    finally:
        server.close()
    print("  logged:", error)
    assert error["stage"] == "llm" and error["error"]
