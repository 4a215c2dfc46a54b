"""The escalation policy on live turns: CallSession with a fake NLU and a fake LLM server.

Each trigger sends the call where its target says and leaves an `nlu` decision and a
`handoff`/`transfer` record with the trigger and the reason in the call log.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import httpx2

from ivr.conversation.actions import HttpActions
from ivr.conversation.session import CallSession
from ivr.dialog.loader import load_flow_text
from ivr.handoff.llm import APOLOGY, LLMHandoff, LLMSettings
from ivr.handoff.policy import EscalationPolicy
from ivr.nlu.understanding import NLUOutcome, Understanding
from tests.fakes import EventList, KeywordNLU, RecordingOutput
from tests.unit.test_llm_handoff import FakeLLM, Script, handoff_events, text, tool

FLOW = """
flow: shop
description: Acme shop line
start: menu
slots:
  order_number: {type: digits, length: 6, description: the six digit order number}
global_intents:
  talk_to_agent: {examples: [agent, operator], goto: agent}
nodes:
  menu:
    say: Main menu.
    dtmf: {"1": hours}
    intents:
      hours: {examples: [opening hours], goto: hours}
      order: {description: The caller asks about an order., examples: [my order], goto: ask_order}
  hours: {say: We open at nine., next: menu}
  ask_order:
    say: Your order number?
    collect: order_number
    next: lookup
  lookup:
    action: {http: GET, url: "https://orders.test/orders/{slots.order_number}", save_as: order}
    say: Your order is {order.status}.
    next: menu
  agent: {say: Connecting you., transfer: "+15550100"}
"""


class FixedNLU(KeywordNLU):
    """Always the same answer: for confidence levels a keyword match cannot produce."""

    def __init__(self, intent: str, confidence: float):
        super().__init__()
        self.answer = Understanding(intent, confidence, "fake")

    async def understand(self, candidates, text):
        return NLUOutcome(self.answer, [(self.answer.intent, self.answer.confidence)], 1.0)


def make(fake: FakeLLM | None = None, flow: str = FLOW, nlu=None, escalation=None, backend=None, **llm):
    handoff = None
    if fake is not None:
        settings = LLMSettings(**{"base_url": "http://llm.test/v1", "model": "fake", **llm})
        handoff = LLMHandoff(settings, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(fake.handler)))
    out, events = RecordingOutput(), EventList()
    actions = HttpActions(httpx.MockTransport(backend)) if backend else None
    session = CallSession("CA1", load_flow_text(flow), out, nlu=nlu or KeywordNLU(), events=events, handoff=handoff,
                          escalation=escalation, actions=actions)
    return session, out, events


def decision(events: EventList, i: int = -1) -> dict:
    return events.of("nlu")[i]["decision"]


async def test_out_of_scope_goes_to_the_llm_which_answers_the_callers_words():
    fake = FakeLLM(text("We do sell gift cards, in any amount. Anything else?"))
    session, out, events = make(fake)
    await session.start()
    await session.on_transcript("do you sell gift cards")
    assert decision(events) == {"escalate": True, "target": "llm", "trigger": "out_of_scope",
                                "reason": "request is outside this menu"}
    start = handoff_events(events, "start")[0]
    assert (start["target"], start["trigger"], start["return_to"]) == ("llm", "out_of_scope", "menu")
    assert out.said[-2:] == ["We do sell gift cards, in any amount.", "Anything else?"]
    assert fake.requests[0]["messages"][-1] == {"role": "user", "content": "do you sell gift cards"}
    assert session.handoff.is_active(session)


async def test_routine_turn_logs_its_decision_too():
    session, out, events = make(FakeLLM())
    await session.start()
    await session.on_transcript("what are your opening hours")
    assert decision(events) == {"escalate": False, "target": None, "trigger": "", "reason": "on script: 'hours' (0.90)"}
    assert session.engine.node_name == "menu" and not events.of("handoff")


async def test_low_confidence_goes_to_the_llm():
    fake = FakeLLM(text("Happy to help with that."))
    session, out, events = make(fake, nlu=FixedNLU("hours", 0.2))
    await session.start()
    await session.on_transcript("uh the thing about times")
    d = decision(events)
    assert (d["trigger"], d["target"]) == ("low_confidence", "llm") and "0.20" in d["reason"]
    assert handoff_events(events, "start")[0]["trigger"] == "low_confidence"


async def test_repeated_no_match_in_a_question_goes_to_the_llm_on_the_second():
    fake = FakeLLM(text("No problem, you can find it on your receipt."))
    session, out, events = make(fake)
    await session.start()
    await session.on_transcript("my order")
    await session.on_transcript("I don't have it here")
    assert not decision(events)["escalate"] and "not understood (1 of 2)" in decision(events)["reason"]
    assert session.engine.node_name == "ask_order" and not events.of("handoff")
    await session.on_transcript("I really don't know where it is")
    assert decision(events)["trigger"] == "no_match" and decision(events)["reason"] == "not understood 2 times"
    assert handoff_events(events, "start")[0]["return_to"] == "ask_order"
    assert out.said[-1] == "No problem, you can find it on your receipt."


async def test_frustration_goes_to_a_person_with_a_whisper_summary():
    session, out, events = make(FakeLLM(), flow=FLOW + "escalation:\n  frustration: {target: human}\n")
    await session.start()
    await session.on_transcript("my order")
    await session.on_transcript("this is ridiculous, you are useless")
    d = decision(events)
    assert (d["trigger"], d["target"]) == ("frustration", "human") and "ridiculous" in d["reason"]
    assert handoff_events(events, "start")[0]["target"] == "human"
    transfer = events.of("transfer")[0]
    assert (transfer["target"], transfer["trigger"]) == ("+15550100", "frustration")
    assert transfer["summary"].startswith("Caller wants: The caller asks about an order. Reason: caller sounds upset")
    assert out.said[-1] == "Connecting you." and out.transfers[0][0] == "+15550100"
    assert session.result.outcome == "transferred"


async def test_asking_for_a_person_without_the_flows_own_intent():
    flow = FLOW.replace("  talk_to_agent: {examples: [agent, operator], goto: agent}\n", "").replace(
        "global_intents:\n", "global_intents: {}\n")
    flow = flow.replace("    dtmf: {\"1\": hours}\n", "    dtmf: {\"1\": hours, \"0\": agent}\n")
    session, out, events = make(flow=flow)
    await session.start()
    await session.on_transcript("can I speak to a representative please")
    assert decision(events)["trigger"] == "person" and events.of("transfer")[0]["trigger"] == "person"


async def test_flows_own_agent_intent_keeps_routing():
    session, out, events = make(FakeLLM())
    await session.start()
    await session.on_transcript("operator please, I want a real person")
    assert not decision(events)["escalate"]
    assert events.of("transfer")[0]["trigger"] == "flow" and not events.of("handoff")


async def test_multiple_requests_go_to_the_llm():
    fake = FakeLLM(text("Sure, let's do both."))
    session, out, events = make(fake)
    await session.start()
    await session.on_transcript("I need the opening hours and also I want to return a jacket")
    assert decision(events)["trigger"] == "multiple_requests"
    assert handoff_events(events, "start")[0]["trigger"] == "multiple_requests"


async def test_without_an_llm_out_of_scope_stays_in_the_flow_and_says_why():
    session, out, events = make(None)
    await session.start()
    await session.on_transcript("do you sell gift cards")
    d = decision(events)
    assert not d["escalate"] and "no llm to hand to" in d["reason"]
    assert out.said[-2] == "Sorry, I didn't catch that."


async def test_flow_can_turn_a_trigger_off_and_retarget_another():
    flow = FLOW + "escalation:\n  out_of_scope: {target: 'off'}\n  multiple_requests: {target: human}\n"
    session, out, events = make(FakeLLM(), flow=flow)
    await session.start()
    await session.on_transcript("do you sell gift cards")
    assert "trigger off" in decision(events)["reason"] and out.said[-2] == "Sorry, I didn't catch that."
    await session.on_transcript("I need the opening hours and also I want to return a jacket")
    assert events.of("transfer")[0]["trigger"] == "multiple_requests"


async def test_server_defaults_apply_under_the_flow():
    server = EscalationPolicy().merged({"out_of_scope": {"target": "human"}})
    session, out, events = make(FakeLLM(), escalation=server)
    await session.start()
    await session.on_transcript("do you sell gift cards")
    assert events.of("transfer")[0]["trigger"] == "out_of_scope"


async def test_saying_the_same_thing_three_times_reaches_a_person():
    flow = FLOW + "escalation:\n  no_match: {threshold: 5}\n  frustration: {threshold: 0.35}\n"
    session, out, events = make(None, flow=flow)
    await session.start()
    await session.on_transcript("my order")
    for _ in range(2):
        await session.on_transcript("I have told you I lost the receipt")  # one cue: 0.25 < 0.35; again: 0.4
    d = decision(events)
    assert d["trigger"] == "frustration" and "said the same thing again" in d["reason"]


async def test_key_zero_reaches_a_person_in_a_menu_that_does_not_use_it():
    session, out, events = make(None)
    await session.start()
    await session.on_dtmf("0")
    start = handoff_events(events, "start")[0]
    assert (start["trigger"], start["target"]) == ("dtmf", "human")
    assert events.of("transfer")[0]["trigger"] == "dtmf"
    # In a question, 0 is a digit of the answer.
    session, out, events = make(None)
    await session.start()
    await session.on_transcript("my order")
    await session.enter_keys("012345")
    assert not events.of("transfer") and events.of("slot")[0]["value"] == "012345"


# ---------------------------------------------------------------- during an LLM handoff
async def handed_to_llm(*scripts: Script, **kw):
    fake = FakeLLM(text("Happy to help."), *scripts)
    session, out, events = make(fake, **kw)
    await session.start()
    await session.on_transcript("do you sell gift cards")
    assert session.handoff.is_active(session)
    return session, out, events, fake


async def test_key_zero_during_the_llm_handoff_transfers():
    session, out, events, _ = await handed_to_llm()
    await session.on_dtmf("0")
    assert not session.handoff.is_active(session)
    assert handoff_events(events, "end")[0]["why"] == "transfer"
    assert events.of("transfer")[0]["trigger"] == "dtmf" and out.transfers


async def test_asking_for_a_person_during_the_llm_handoff_transfers():
    session, out, events, fake = await handed_to_llm()
    await session.on_transcript("no, let me talk to a real person")
    assert decision(events) == {"escalate": True, "target": "human", "trigger": "person",
                                "reason": "caller asked for a person"}
    assert events.of("transfer")[0]["trigger"] == "person" and len(fake.requests) == 1


async def test_barge_in_stops_the_llms_reply():
    slow = Script(["First sentence. ", "Second sentence. ", "Third sentence. "], gap=0.3)
    session, out, events, fake = await handed_to_llm(slow)
    turn = asyncio.create_task(session.on_transcript("and what about returns"))
    await asyncio.sleep(0.15)
    assert out.said[-1] == "First sentence."
    await session.on_bot_started_speaking()
    await session.on_user_started_speaking()
    await asyncio.wait_for(turn, 2)
    assert "Second sentence." not in out.said and out.interrupts == 1
    assert events.of("barge_in")[-1]["llm"] is True
    assert handoff_events(events, "turn")[-1]["interrupted"] is True
    assert session.handoff.is_active(session)  # the caller's next words go on with the model


async def test_llm_failure_falls_back_to_a_person_when_the_flow_says_so():
    flow = FLOW + "escalation:\n  llm_fallback: human\n"
    fake = FakeLLM(Script(status=500))
    session, out, events = make(fake, flow=flow)
    await session.start()
    await session.on_transcript("do you sell gift cards")
    assert out.said[-2:] == [APOLOGY, "Connecting you."]
    assert handoff_events(events, "fallback")[0]["to"] == "transfer"
    assert events.of("transfer")[0]["trigger"] == "llm_fallback"


async def test_the_flows_http_action_is_a_tool_for_the_llm():
    seen = []

    def backend(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"status": "shipped"})

    fake = FakeLLM(text(tool("http_lookup", order_number="123456")), text("It has shipped."))
    session, out, events = make(fake, backend=backend)
    await session.start()
    await session.on_transcript("do you sell gift cards")
    assert seen == ["https://orders.test/orders/123456"]
    assert out.said[-1] == "It has shipped."
    tool_result = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"][0]
    assert json.loads(tool_result["content"]) == {"status": "shipped"}
    assert events.of("action")[0]["llm"] is True and session.engine.state.slots["order_number"] == "123456"
    names = [t["function"]["name"] for t in fake.requests[0]["tools"]]
    assert "http_lookup" in names
    spec = [t for t in fake.requests[0]["tools"] if t["function"]["name"] == "http_lookup"][0]["function"]
    assert spec["parameters"]["required"] == ["order_number"]


async def test_http_tool_with_a_bad_value_asks_the_model_to_ask_again():
    fake = FakeLLM(text(tool("http_lookup", order_number="12")), text("What is your six digit order number?"))
    session, out, events = make(fake, backend=lambda r: httpx.Response(200, json={}))
    await session.start()
    await session.on_transcript("do you sell gift cards")
    tool_result = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"][0]
    assert tool_result["content"].startswith("error: order_number is not a valid digits")
    assert not events.of("action")


async def test_llm_turn_events_carry_token_counts():
    session, out, events, _ = await handed_to_llm()
    turn = handoff_events(events, "turn")[0]
    assert turn["tokens"] == {"llm": 1} and turn["tokens_reported"] is False


NOBODY_FLOW = FLOW.replace('  agent: {say: Connecting you., transfer: "+15550100"}\n', "").replace(
    "  talk_to_agent: {examples: [agent, operator], goto: agent}\n", "  bye: {examples: [goodbye], goto: hours}\n")


async def test_an_upset_caller_with_nobody_to_reach_is_told_so_once_and_the_flow_goes_on():
    session, out, events = make(None, flow=NOBODY_FLOW)  # no LLM, no transfer node, no human
    await session.start()
    await session.on_transcript("this is ridiculous, you are useless")  # not one of the menu's intents
    start = handoff_events(events, "unavailable")[0]
    assert (start["trigger"], start["score"]) == ("frustration", 0.5) and "no llm or human" in start["reason"]
    assert out.said[-3].startswith("I'm sorry this has been so frustrating. I can't put you through")
    assert out.said[-2:] == ["Sorry, I didn't catch that.", "Main menu."]  # the flow's own no-match, counted
    assert session.engine.state.no_match == 1 and not events.of("transfer") and not session.ended
    await session.on_transcript("this is stupid and useless")
    assert len(handoff_events(events, "unavailable")) == 2
    assert sum("frustrating" in said for said in out.said) == 1  # the apology is said once a call


async def test_an_upset_caller_the_flow_understood_is_answered_after_the_apology():
    session, out, events = make(None, flow=NOBODY_FLOW)
    await session.start()
    await session.on_transcript("this is ridiculous and useless, what are your opening hours")
    assert handoff_events(events, "unavailable")[0]["trigger"] == "frustration"
    apology = next(i for i, said in enumerate(out.said) if "frustrating" in said)
    assert "We open at nine." in out.said[apology + 1:]


async def test_the_handoff_event_names_the_signal_and_its_score():
    session, out, events = make(FakeLLM(text("I'm sorry. Let me help.")))
    await session.start()
    await session.on_transcript("this is ridiculous, you are useless")
    start = handoff_events(events, "start")[0]
    assert (start["target"], start["trigger"], start["score"]) == ("llm", "frustration", 0.5)
