"""The turn step on its own (ivr/conversation/turn.py): understand and decide, with no session,
no audio and no call log."""

from __future__ import annotations

from ivr.conversation.turn import TurnStep
from ivr.dialog.engine import FlowEngine
from ivr.dialog.loader import load_flow_text
from ivr.handoff.policy import EscalationPolicy
from tests.fakes import KeywordNLU

FLOW = """
flow: shop
description: a shop line
start: menu
slots:
  order_number: {type: digits, length: 6}
global_intents:
  agent: {examples: [agent, operator], goto: agent}
nodes:
  menu:
    say: "Hours or an order?"
    intents:
      hours: {examples: [opening hours], goto: hours}
      order: {examples: [my order], goto: ask_order}
  hours: {say: We open at nine., next: menu}
  ask_order: {say: "Your order number?", collect: order_number, next: menu}
  agent: {say: Connecting you., transfer: "+15550100"}
"""


def make(nlu=None, policy=EscalationPolicy()):
    loaded = load_flow_text(FLOW)
    engine = FlowEngine(loaded)
    engine.start()
    errors = []
    step = TurnStep(engine, nlu if nlu is not None else KeywordNLU(), policy, loaded.flow,
                    on_error=lambda node, error: errors.append((node, error)))
    return engine, step, errors


async def test_a_menu_answer_is_routed_and_understood():
    engine, step, _ = make()
    understood = await step.understand(engine.expectation(), "what are your opening hours")
    assert understood.understanding.intent == "hours" and understood.facts.understood
    assert understood.facts.menu and not understood.facts.from_slot
    assert step.last_intent == "hours"
    assert not step.decide(understood.facts, ["llm", "human"]).escalate


async def test_a_value_the_node_collects_skips_the_nlu():
    nlu = KeywordNLU()
    engine, step, _ = make(nlu)
    engine.on_text("my order", (await step.understand(engine.expectation(), "my order")).understanding)
    calls = len(nlu.calls)
    understood = await step.understand(engine.expectation(), "four five seven two one nine")
    assert len(nlu.calls) == calls  # the NLU was not asked
    assert understood.understanding.source == "slot" and understood.facts.from_slot and understood.facts.understood


async def test_a_failing_model_is_reported_and_the_turn_goes_on_not_understood():
    engine, step, errors = make(KeywordNLU(fail=True))
    understood = await step.understand(engine.expectation(), "opening hours")
    assert understood.understanding.source == "error" and not understood.facts.understood
    assert errors == [("menu", "model exploded")]


async def test_out_of_scope_escalates_to_what_is_available():
    engine, step, _ = make()
    understood = await step.understand(engine.expectation(), "do you sell gift cards")
    assert understood.understanding.intent == "out_of_scope"
    assert step.decide(understood.facts, ["llm", "human"]).target == "llm"
    assert not step.decide(understood.facts, []).escalate  # nowhere to go: the flow's no-match handles it


async def test_the_caller_repeating_themselves_is_a_signal():
    engine, step, _ = make()
    first = await step.understand(engine.expectation(), "I want my money back")
    second = await step.understand(engine.expectation(), "I want my money back")
    assert "said the same thing again" in second.signals.cues and "said the same thing again" not in first.signals.cues
    assert second.signals.frustration > first.signals.frustration
