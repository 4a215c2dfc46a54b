"""LLMHandoff against a fake OpenAI-compatible server (httpx2.MockTransport streaming SSE: the HTTP library openai is built on)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx2
import pytest

from ivr.conversation.session import CallSession
from ivr.dialog.loader import load_flow_text
from ivr.handoff.llm import APOLOGY, LLMHandoff, LLMSettings, SentenceStream, visible_text
from ivr.privacy.redact import CARD, EMAIL, NUMBER, PHONE, redact_slots, redact_text
from tests.fakes import EventList, KeywordNLU, RecordingOutput

FLOW = """
flow: shop
description: Acme shop line
start: menu
slots:
  order_number: {type: digits, length: 6}
  card: {type: digits, length: 4, sensitive: true}
nodes:
  menu:
    say: Main menu.
    dtmf: {"0": agent}
    intents:
      hours: {examples: [opening hours], goto: hours}
      card: {examples: [card details], goto: ask_card}
      other: {examples: [complicated question], goto: llm}
  hours: {say: We open at nine., next: menu}
  ask_card: {say: "Last four digits of your card?", collect: card, next: menu}
  llm: {handoff: llm, return_to: menu}
  agent: {say: Connecting you., transfer: "+15550100"}
"""
AGENT_NODE = '  agent: {say: Connecting you., transfer: "+15550100"}\n'


def without_agent(flow: str) -> str:
    return flow.replace(AGENT_NODE, "").replace('    dtmf: {"0": agent}\n', "")




# ---------------------------------------------------------------- fake server
@dataclass
class Script:
    """One streamed completion: content pieces and/or tool calls, with delays."""

    pieces: list = field(default_factory=list)  # str (content) or dict (a native tool call)
    first_delay: float = 0.0
    gap: float = 0.0
    status: int = 200
    error: Exception | None = None


def text(*pieces, **kw) -> Script:
    return Script(list(pieces), **kw)


def tool(tool_name: str, **arguments) -> dict:
    return {"name": tool_name, "arguments": arguments}


class FakeLLM:
    def __init__(self, *scripts: Script):
        self.scripts = list(scripts)
        self.requests: list[dict] = []
        self.raw_bodies: list[str] = []

    async def handler(self, request: httpx2.Request) -> httpx2.Response:
        raw = (await request.aread()).decode()
        self.raw_bodies.append(raw)
        self.requests.append(json.loads(raw))
        script = self.scripts.pop(0) if self.scripts else Script()
        if script.error is not None:
            raise script.error
        if script.status != 200:
            return httpx2.Response(script.status, json={"error": {"message": "server exploded", "type": "server_error"}})
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=self._sse(script))

    async def _sse(self, script: Script):
        def event(delta: dict, finish=None) -> bytes:
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(chunk)}\n\n".encode()

        yield event({"role": "assistant"})
        if script.first_delay:
            await asyncio.sleep(script.first_delay)
        for i, piece in enumerate(script.pieces):
            if i and script.gap:
                await asyncio.sleep(script.gap)
            if isinstance(piece, dict):
                call = {"index": i, "id": f"call_{i}", "type": "function",
                        "function": {"name": piece["name"], "arguments": json.dumps(piece["arguments"])}}
                yield event({"tool_calls": [call]})
            else:
                yield event({"content": piece})
        yield event({}, "stop")
        yield b"data: [DONE]\n\n"


class TimedOutput(RecordingOutput):
    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    async def speak(self, text: str) -> None:
        self.times.append(time.perf_counter())
        await super().speak(text)


def make(fake: FakeLLM, flow_text: str = FLOW, **settings):
    values = {"base_url": "http://llm.test/v1", "model": "fake", **settings}
    handoff = LLMHandoff(LLMSettings(**values), http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(fake.handler)))
    out, events, nlu = TimedOutput(), EventList(), KeywordNLU()
    session = CallSession("CA1", load_flow_text(flow_text), out, nlu=nlu, events=events, handoff=handoff)
    return session, out, events, nlu


async def handed_off(fake: FakeLLM, flow_text: str = FLOW, **settings):
    session, out, events, nlu = make(fake, flow_text, **settings)
    await session.start()
    await session.on_transcript("a complicated question about my parcel")
    return session, out, events, nlu


def handoff_events(events: EventList, kind: str) -> list[dict]:
    return [e for e in events.of("handoff") if e.get("event") == kind]


def no_markup(said: list[str]) -> None:
    for line in said:
        assert not any(ch in line for ch in "{}<>[]"), line
        assert "think" not in line.lower() and "return_to_flow" not in line, line


# ---------------------------------------------------------------- streaming and speech
async def test_streamed_reply_is_spoken_sentence_by_sentence_and_logged():
    fake = FakeLLM(text("Sure", ", parcels ", "usually take three days. ", "Anything ", "else?"))
    session, out, events, _ = await handed_off(fake)
    assert out.said[-2:] == ["Sure, parcels usually take three days.", "Anything else?"]
    assert session.handoff.is_active(session)
    start = handoff_events(events, "start")[0]
    assert start["reason"] == "flow node 'llm'" and start["return_to"] == "menu"
    turn = handoff_events(events, "turn")[0]
    assert turn["tokens"] == {"llm": 5} and turn["first_token_ms"] is not None and turn["latency_ms"] >= turn["first_token_ms"]
    assert [p["kind"] for p in events.of("prompt")][-2:] == ["llm", "llm"]
    request = fake.requests[0]
    assert request["stream"] is True and request["model"] == "fake"
    assert {t["function"]["name"] for t in request["tools"]} == {"return_to_flow", "transfer_to_human", "end_call", "set_slot"}
    assert request["messages"][0]["role"] == "system" and "Acme shop line" in request["messages"][0]["content"]
    assert request["messages"][-1] == {"role": "user", "content": "a complicated question about my parcel"}
    assert "flow node 'llm'" in request["messages"][1]["content"]  # per call: after the cached prefix


async def test_fixed_prompt_is_the_same_for_every_call_and_warm_sends_it():
    fake = FakeLLM(Script(), text("One."), text("Two."))
    session, _, _, _ = make(fake)
    warm_ms = await session.handoff.warm(session.flow)
    assert warm_ms is not None and fake.requests[0]["max_tokens"] == 1
    await session.start()
    await session.on_transcript("a complicated question")
    other, _, _, _ = make(fake)
    await other.start()
    await other.on_transcript("card details")
    await other.on_transcript("one two three four")
    await other.on_transcript("a complicated question")
    firsts = [r["messages"][0] for r in fake.requests]
    assert firsts[0] == firsts[1] == firsts[2] and len(fake.requests) == 3
    assert fake.requests[0]["tools"] == fake.requests[2]["tools"]


async def test_warm_failure_is_not_fatal():
    session, _, _, _ = make(FakeLLM(Script(status=500)))
    assert await session.handoff.warm(session.flow) is None


async def test_first_sentence_is_spoken_before_the_stream_ends():
    fake = FakeLLM(text("First sentence here. ", "Second one ", "arrives late.", gap=0.3))
    _, out, _, _ = await handed_off(fake)
    assert out.said[-2:] == ["First sentence here.", "Second one arrives late."]
    assert out.times[-1] - out.times[-2] >= 0.5


async def test_filler_when_first_token_is_slow():
    fake = FakeLLM(text("Here is the answer.", first_delay=0.3))
    _, out, events, _ = await handed_off(fake, filler_after_s=0.05, first_token_timeout_s=2.0)
    assert out.said[-2:] == ["One moment while I look into that.", "Here is the answer."]
    assert handoff_events(events, "turn")[0]["filler"] is True


async def test_no_filler_when_fast():
    fake = FakeLLM(text("Quick answer."))
    _, out, _, _ = await handed_off(fake, filler_after_s=0.5)
    assert "One moment while I look into that." not in out.said


# ---------------------------------------------------------------- tools
async def test_return_to_flow_tool_goes_to_the_node():
    fake = FakeLLM(text("Let me check the hours.", tool("return_to_flow", node="hours")))
    session, out, events, _ = await handed_off(fake)
    assert out.said[-3:] == ["Let me check the hours.", "We open at nine.", "Main menu."]
    assert not session.handoff.is_active(session)
    assert handoff_events(events, "end")[0]["why"] == "return_to_flow"
    assert handoff_events(events, "tool")[0]["tool"] == "return_to_flow"


async def test_return_to_unknown_node_is_refused_back_to_the_model():
    fake = FakeLLM(text(tool("return_to_flow", node="nowhere")), text("Sorry, what did you need?"))
    session, out, _, _ = await handed_off(fake)
    assert out.said[-1] == "Sorry, what did you need?"
    tool_result = fake.requests[1]["messages"][-1]
    assert tool_result["role"] == "tool" and "unknown step 'nowhere'" in tool_result["content"]
    assert session.handoff.is_active(session)


async def test_transfer_to_human_uses_the_flows_transfer_target():
    fake = FakeLLM(text(tool("transfer_to_human", reason="refund dispute")))
    session, out, events, _ = await handed_off(fake)
    assert out.transfers == [("+15550100", "LLM: refund dispute")]
    assert out.said[-1] == "Connecting you."  # the flow's own transfer node speaks
    assert session.result.outcome == "transferred"
    assert events.of("transfer")[0]["trigger"] == "llm"
    assert events.of("transfer")[0]["reason"] == "LLM: refund dispute"


async def test_transfer_to_configured_number_when_flow_has_none():
    flow = without_agent(FLOW)
    fake = FakeLLM(text(tool("transfer_to_human", reason="asked")))
    _, out, _, _ = await handed_off(fake, flow, transfer_target="+15559999")
    assert out.transfers[0][0] == "+15559999"


async def test_end_call_hangs_up():
    fake = FakeLLM(text("Glad I could help. Goodbye!", tool("end_call", reason="caller is done")))
    session, out, events, _ = await handed_off(fake)
    assert out.said[-1] == "Goodbye!" and out.hangups == ["LLM: caller is done"]
    assert handoff_events(events, "end")[0]["why"] == "end_call"


async def test_set_slot_valid_then_model_continues():
    fake = FakeLLM(text(tool("set_slot", name="order_number", value="one two three four five six")),
                   text("Thanks, I noted order 123456."))
    session, out, events, _ = await handed_off(fake)
    assert session.engine.state.slots["order_number"] == "123456"
    assert events.of("slot")[-1] == {"name": "order_number", "value": "123456"}
    assert fake.requests[1]["messages"][-1]["content"] == "saved"
    assert out.said[-1].startswith("Thanks, I noted order")


async def test_set_slot_invalid_value_and_unknown_slot_are_rejected_to_the_model():
    fake = FakeLLM(text(tool("set_slot", name="order_number", value="12"), tool("set_slot", name="shoe_size", value="9")),
                   text("Could you repeat the order number?"))
    session, out, _, _ = await handed_off(fake)
    assert "order_number" not in session.engine.state.slots
    results = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert results[0]["content"].startswith("error: not a valid digits")
    assert "unknown detail 'shoe_size'" in results[1]["content"]


async def test_sensitive_slot_set_by_the_model_is_not_logged():
    fake = FakeLLM(text(tool("set_slot", name="card", value="4321")), text("Noted."))
    session, _, events, _ = await handed_off(fake)
    assert session.engine.state.slots["card"] == "4321"
    assert events.of("slot")[-1]["value"] == "[redacted]"
    assert "4321" not in json.dumps(events.items)


# ---------------------------------------------------------------- tool calls printed as text
async def test_tool_call_printed_as_json_is_run_and_not_spoken():
    fake = FakeLLM(text("Sure, one moment. ", '{"name": "transfer', '_to_human", "arguments": ', '{"reason": "wants a person"}}'))
    _, out, events, _ = await handed_off(fake)
    assert out.transfers == [("+15550100", "LLM: wants a person")]
    assert out.said[-2:] == ["Sure, one moment.", "Connecting you."]
    no_markup(out.said)
    assert handoff_events(events, "tool")[0]["printed"] is True


async def test_think_tags_and_qwen_tool_call_tags_are_never_spoken():
    fake = FakeLLM(text("<think>The caller wants ", "the hours.</think>", "Our hours are on the menu. ",
                        '<tool_call>\n{"name": "return_to_flow", "arguments": {"node": "hours"}}\n</tool_call>'))
    _, out, _, _ = await handed_off(fake)
    assert out.said[-3:] == ["Our hours are on the menu.", "We open at nine.", "Main menu."]
    no_markup(out.said)


async def test_python_style_call_and_unclosed_think():
    fake = FakeLLM(text("Okay. end_call(reason=\"done\")"))
    _, out, _, _ = await handed_off(fake)
    assert out.hangups == ["LLM: done"] and out.said[-1] == "Okay."
    stream = SentenceStream()
    assert stream.feed("Hello there. <think>secret plan") == ["Hello there."]
    assert stream.finish() == ([], [])


async def test_unknown_json_is_dropped_not_spoken():
    fake = FakeLLM(text('Here you go. {"order": 5, "status": "shipped"} Anything else?'))
    _, out, _, _ = await handed_off(fake)
    assert out.said[-2:] == ["Here you go.", "Anything else?"]


# ---------------------------------------------------------------- failures
async def test_timeout_apologises_and_returns_within_two_seconds():
    fake = FakeLLM(text("Too late.", first_delay=5.0))
    started = time.perf_counter()
    session, out, events, _ = await handed_off(fake, filler_after_s=5, first_token_timeout_s=0.2)
    assert time.perf_counter() - started < 0.2 + 2.0
    assert out.said[-2:] == [APOLOGY, "Main menu."]
    assert session.engine.node_name == "menu" and not session.handoff.is_active(session)
    assert "timeout" in events.of("error")[-1]["error"]
    assert handoff_events(events, "end")[0]["why"] == "error"
    assert handoff_events(events, "fallback")[0]["to"] == "return_to"


async def test_stall_mid_reply_hits_the_total_timeout():
    fake = FakeLLM(text("Started fine. ", "then stalls", gap=5.0))
    _, out, events, _ = await handed_off(fake, timeout_s=0.4)
    assert out.said[-3:] == ["Started fine.", APOLOGY, "Main menu."]
    assert "no reply within" in events.of("error")[-1]["error"]


async def test_server_error_apologises_and_returns():
    fake = FakeLLM(Script(status=500))
    session, out, events, _ = await handed_off(fake)
    assert out.said[-2:] == [APOLOGY, "Main menu."]
    assert events.of("error")[-1] == {"stage": "llm", "error": "HTTP 500"}
    assert len(fake.requests) == 1  # no retries: the flow's fallback is the retry


async def test_connection_error_apologises_and_returns():
    fake = FakeLLM(Script(error=httpx2.ConnectError("connection refused")))
    _, out, events, _ = await handed_off(fake)
    assert out.said[-2:] == [APOLOGY, "Main menu."]
    assert events.of("error")[-1]["error"].startswith("connection error")


async def test_empty_reply_apologises_and_returns():
    fake = FakeLLM(text("<think>hmm</think>", "  "))
    _, out, events, _ = await handed_off(fake)
    assert out.said[-2:] == [APOLOGY, "Main menu."]
    assert events.of("error")[-1]["error"] == "empty reply"


async def test_fallback_without_return_to_transfers_then_hangs_up():
    no_return = FLOW.replace("llm: {handoff: llm, return_to: menu}", "llm: {handoff: llm}")
    _, out, _, _ = await handed_off(FakeLLM(Script(status=503)), no_return)
    assert out.said[-2:] == [APOLOGY, "Connecting you."] and out.transfers[0][0] == "+15550100"
    nobody = without_agent(no_return)
    session, out, events, _ = await handed_off(FakeLLM(Script(status=503)), nobody)
    assert out.said[-2:] == [APOLOGY, "Thank you for calling. Goodbye."]
    assert out.hangups and handoff_events(events, "fallback")[0]["to"] == "hangup"


# ---------------------------------------------------------------- multi-turn
async def test_multi_turn_goes_to_the_llm_then_returns_to_flow():
    fake = FakeLLM(text("Happy to help. What is the parcel about?"),
                   text("Opening hours are in the menu.", tool("return_to_flow", node="hours")))
    session, out, events, nlu = await handed_off(fake)
    nlu_calls = len(nlu.calls)
    await session.on_transcript("opening hours for collecting it")  # would match the flow's `hours` intent
    assert len(nlu.calls) == nlu_calls  # the LLM, not the flow, got it
    second = fake.requests[1]["messages"]
    assert [m["role"] for m in second[-3:]] == ["user", "assistant", "user"]
    assert second[-1]["content"] == "opening hours for collecting it"
    assert out.said[-3:] == ["Opening hours are in the menu.", "We open at nine.", "Main menu."]
    assert not session.handoff.is_active(session)
    await session.on_transcript("opening hours")  # back in the flow: NLU again
    assert len(nlu.calls) == nlu_calls + 1 and out.said[-2] == "We open at nine."


async def test_max_turns_returns_to_return_to():
    fake = FakeLLM(text("Answer one."), text("Answer two."), text("Never asked."))
    session, out, events, _ = await handed_off(fake, max_turns=2)
    await session.on_transcript("and another thing")
    assert out.said[-2:] == ["Answer two.", "Main menu."]
    assert len(fake.requests) == 2 and session.engine.node_name == "menu"
    assert handoff_events(events, "end")[0]["why"] == "max_turns"


async def test_a_bug_inside_the_handoff_costs_an_apology_not_the_call(monkeypatch):
    fake = FakeLLM(text("Fine."))
    session, out, events, _ = make(fake)

    def broken(*args, **kwargs):
        raise RuntimeError("oops")

    monkeypatch.setattr(session.handoff, "_request", broken)
    await session.start()
    await session.on_transcript("a complicated question")
    assert out.said[-2:] == [APOLOGY, "Main menu."]
    assert "RuntimeError" in events.of("error")[-1]["error"]


async def test_silence_asks_once_then_returns_to_the_flow():
    session, out, events, _ = await handed_off(FakeLLM(text("What else can I do?")))
    await session.handoff.on_no_input(session)
    assert out.said[-1] == "Are you still there?" and session.handoff.is_active(session)
    await session.handoff.on_no_input(session)
    assert out.said[-1] == "Main menu." and not session.handoff.is_active(session)
    assert handoff_events(events, "end")[0]["why"] == "no_input"


async def test_session_no_input_timer_during_handoff():
    session, out, _, _ = await handed_off(FakeLLM(text("Anything else?")), no_input_timeout_s=0.05)
    await session.on_bot_started_speaking()
    await session.on_bot_stopped_speaking()
    await asyncio.sleep(0.15)
    assert out.said[-1] == "Are you still there?"
    await session.on_bot_started_speaking()
    await session.on_bot_stopped_speaking()
    await asyncio.sleep(0.15)
    assert out.said[-1] == "Main menu." and not session.handoff.is_active(session)


async def test_caller_hanging_up_mid_reply_stops_speaking():
    fake = FakeLLM(text("One. ", "Two. ", "Three.", gap=0.2))
    session, out, _, _ = make(fake)
    await session.start()
    task = asyncio.create_task(session.on_transcript("a complicated question"))
    await asyncio.sleep(0.3)
    await session.end("caller_hangup", "hung up")
    await task
    assert "Three." not in out.said


# ---------------------------------------------------------------- redaction
async def test_request_body_carries_no_pii():
    fake = FakeLLM(text("I can help with that."), text("Okay."))
    session, out, _, _ = make(fake)
    await session.start()
    await session.on_transcript("card details")
    await session.on_transcript("nine eight seven six")
    assert session.engine.state.slots["card"] == "9876"
    await session.on_transcript("a complicated question about it. My card 4111 1111 1111 1111, mail bob.smith@example.com, ref 9876")
    await session.on_transcript("call me on +1 415 555 0199 or at 415-555-0199, account 12345678")
    body = "\n".join(fake.raw_bodies)
    for secret in ("4111", "bob.smith", "example.com", "9876", "555", "12345678"):
        assert secret not in body, secret
    assert "[redacted]" in body and "[card number]" in body and "[email]" in body
    context = fake.requests[0]["messages"][1]
    assert context["role"] == "system" and '"card": "[redacted]"' in context["content"]


def test_redact_text_cases():
    assert redact_text("card 4111-1111-1111-1111 thanks") == f"card {CARD} thanks"
    assert redact_text("it's 4111111111111111") == f"it's {CARD}"
    assert redact_text("call (415) 555-0199") == f"call {PHONE}"
    assert redact_text("call +44 20 7946 0958") == f"call {PHONE}"
    assert redact_text("account 00123456") == f"account {NUMBER}"
    assert redact_text("I heard order 1 2 3 4 5 6. Right?") == f"I heard order {NUMBER}. Right?"
    assert redact_text("four one one one two two two two") == NUMBER
    assert redact_text("mail jo.b+x@mail.co.uk now") == f"mail {EMAIL} now"
    assert redact_text("john dot smith at gmail dot com") == EMAIL
    assert redact_text("I have 2 kids and 3 dogs, open at 9:30") == "I have 2 kids and 3 dogs, open at 9:30"
    assert redact_text("my pin is 4321 ok", secrets=["4321"]) == "my pin is [redacted] ok"
    assert redact_text("I heard 4 3 2 1", secrets=["4321"]) == "I heard [redacted]"


def test_redact_slots():
    flow = load_flow_text(FLOW).flow
    slots = redact_slots({"order_number": "123456", "card": "4321", "note": "mail me at a@b.io"}, flow.slots)
    assert slots == {"order_number": "123456", "card": "[redacted]", "note": f"mail me at {EMAIL}"}


def test_visible_text_holds_back_possible_markup():
    assert visible_text("Hello. {\"na", final=False) == "Hello. "
    assert visible_text("Hi <thi", final=False) == "Hi "
    assert visible_text('Hi. {"name": "end_call", "arguments": {}} Bye.', final=True).split() == ["Hi.", "Bye."]
