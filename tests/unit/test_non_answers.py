"""What callers say instead of an answer: the line waits for "hang on", and "no idea" is no
text value."""

import pytest

from ivr.dialog.engine import HOLD_SECONDS, FlowEngine, Say, SetSlot, Understanding
from ivr.dialog.loader import load_flow_text
from ivr.dialog.schema import HOLD_REPLY
from ivr.nlu.non_answers import HOLD, UNKNOWN, non_answer
from ivr.nlu.slots import parse_text


@pytest.mark.parametrize("text", [
    "hang on", "um hang on a sec", "hold on a second", "hang on, let me grab my card", "let me check",
    "just a moment please", "one sec", "bear with me", "let me get my insurance card", "I'm looking for it now",
    "not yet, hold on", "hmm actually hold on, let me check with my wife real quick", "can you hold on",
    "could you give me a minute", "hold please", "hold on I'm driving", "let me look at the bottle",
])
def test_asking_the_line_to_wait(text):
    assert non_answer(text) == HOLD


@pytest.mark.parametrize("text", [
    "I don't know", "I don't know the name", "no idea, sorry", "I'm not sure", "I don't have it with me",
    "I don't have the bottle with me right now", "nope, didn't see it", "no, I didn't get it", "I can't remember",
    "I forgot", "I don't have my card", "I don't have a policy number", "I don't know his name",
    "I don't have that information",
])
def test_not_knowing(text):
    assert non_answer(text) == UNKNOWN
    assert not parse_text(text).ok


@pytest.mark.parametrize("text", [
    "Maria Lopez", "I don't know, maybe Eliquis", "wait, what time did you say?", "hang on my kid is talking to me",
    "I'm not sure, maybe Tuesday", "I didn't catch that", "I didn't get that", "no",
    "no wait", "no, hang on",  # at a read-back, a no
])
def test_answers_and_other_requests_are_neither(text):
    assert non_answer(text) is None


FLOW = """
flow: claims
start: ask_policy
global_intents:
  repeat: {examples: ["say that again"], action: repeat}
slots:
  policy: {type: text, description: the policy number}
  plate: {type: text}
nodes:
  ask_policy:
    say: "What's your policy number?"
    collect: policy
    no_input: {timeout: 5}
    next: ask_plate
  ask_plate: {say: "The other car's plate?", collect: plate, next: done}
  done: {say: "Thanks.", hangup: true}
"""


def test_hang_on_is_answered_and_waited_for_longer_without_counting_a_miss():
    e = FlowEngine(load_flow_text(FLOW))
    e.start()
    effects = e.on_text("hang on, let me grab my card", Understanding(None, 0.0, "test"))
    assert [x.text for x in effects if isinstance(x, Say)] == [HOLD_REPLY]
    assert e.expectation().no_input_timeout == HOLD_SECONDS and e.state.no_match == 0
    assert e.understands("hang on", Understanding(None, 0.0, "test"))  # no escalation for "not understood"
    effects = e.on_text("it's AB1234567", Understanding(None, 0.0, "test"))
    assert SetSlot("policy", "it's AB1234567") in effects and e.state.node == "ask_plate"
    assert e.expectation().no_input_timeout == 6.0  # the default again


def test_a_silence_after_hang_on_asks_the_question_again():
    e = FlowEngine(load_flow_text(FLOW))
    e.start()
    e.on_text("one sec", Understanding(None, 0.0, "test"))
    effects = e.on_no_input()
    assert "What's your policy number?" in [x.text for x in effects if isinstance(x, Say)]
    assert e.expectation().no_input_timeout == 5.0


def test_no_idea_at_a_text_question_is_no_value():
    e = FlowEngine(load_flow_text(FLOW))
    e.start()
    e.on_text("AB1234567", Understanding(None, 0.0, "test"))
    effects = e.on_text("no idea, sorry", Understanding(None, 0.0, "test"))
    assert not any(isinstance(x, SetSlot) for x in effects) and e.state.node == "ask_plate"


def test_whispers_repetitions_are_no_non_answer():
    """Read piece by piece: one pattern over the whole answer took seconds on these (whisper
    repeats itself on noise), and 22 repeats took 15 s."""
    assert non_answer("hold on a second, " * 22 + "hold on a") is None
    assert non_answer("hang on " * 200) is None


def test_wait_is_forgotten_once_the_call_moves_on():
    e = FlowEngine(load_flow_text(FLOW))
    e.start()
    e.on_text("hang on a sec", Understanding(None, 0.0, "test"))
    e.on_text("AB1234567", Understanding(None, 0.0, "test"))
    assert e.state.node == "ask_plate" and not e.state.holding


def test_no_wait_at_a_read_back_is_a_no_not_a_hold():
    flow = FLOW.replace("    no_input: {timeout: 5}\n", "    no_input: {timeout: 5}\n    confirm: true\n")
    e = FlowEngine(load_flow_text(flow))
    e.start()
    e.on_text("AB1234567", Understanding(None, 0.0, "test"))
    assert e.state.pending is not None
    effects = e.on_text("no wait", Understanding(None, 0.0, "test"))
    assert HOLD_REPLY not in [x.text for x in effects if isinstance(x, Say)] and e.state.pending is None


@pytest.mark.parametrize("text", ["hang on let me ask my wife", "one sec, I need to ask my husband"])
def test_asking_someone_else_is_a_wait(text):
    assert non_answer(text) == HOLD


def test_an_optional_slot_the_caller_does_not_know_stays_empty_and_the_flow_goes_on():
    flow = FLOW.replace("  plate: {type: text}", "  plate: {type: text, optional: true}")
    e = FlowEngine(load_flow_text(flow))
    e.start()
    e.on_text("AB1234567", Understanding(None, 0.0, "test"))
    assert e.understands("no, I didn't get it", Understanding(None, 0.0, "test"))  # no miss, no escalation
    # even where the router hears a global intent in it ("I didn't get it" as "repeat")
    effects = e.on_text("no, I didn't get it", Understanding("repeat", 0.95, "test"))
    assert SetSlot("plate", None) in effects and e.state.node == "done"


def test_the_wait_is_worded_by_the_flow():
    flow = FLOW.replace("nodes:", "defaults:\n  hold: [\"No rush, I'll wait.\", \"Take your time.\"]\nnodes:", 1)
    e = FlowEngine(load_flow_text(flow))
    e.start()
    said = [x.text for x in e.on_text("hang on", Understanding(None, 0.0, "test")) if isinstance(x, Say)]
    assert said == ["No rush, I'll wait."]
