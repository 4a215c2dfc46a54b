"""Values said in passing with the real models: the router picks the intent, the parsers place
typed values, and the small model fills text slots from the caller's own words (never invented).

Loads MiniLM and the Qwen SLM and prepares the flow's prompts (seconds)."""

from __future__ import annotations

import asyncio

import pytest

from ivr.conversation.turn import TurnStep
from ivr.dialog.engine import FlowEngine, nlu_preparation
from ivr.dialog.loader import load_flow_text
from ivr.handoff.policy import EscalationPolicy

pytestmark = pytest.mark.slow

FLOW = """
flow: dining
start: menu
slots:
  cuisine: {type: text, description: the kind of food}
  city: {type: text, description: the city to eat in}
  party_size: {type: number, description: how many people}
  day: {type: date}
  at: {type: time}
nodes:
  menu:
    say: "How can I help?"
    intents:
      find_restaurant:
        description: The caller wants a restaurant recommendation.
        examples:
          - "I'm looking for a [Filipino](cuisine) place to eat"
          - "somewhere to eat in [Pleasanton](city)"
          - "find me a [Mexican](cuisine) restaurant in [San Jose](city)"
          - "I'm hungry, can you find me a restaurant"
          - "help me find a good place to eat"
        goto: ask_cuisine
      book_table:
        description: The caller wants to reserve a table.
        examples:
          - "I'd like to reserve a table"
          - "book a table for [two](party_size) [tomorrow](day)"
          - "can I get a reservation at [seven](at)"
        goto: ask_size
  ask_cuisine: {say: "What kind of food?", collect: cuisine, next: ask_city}
  ask_city: {say: "In which city?", collect: city, next: done}
  ask_size: {say: "For how many?", collect: party_size, next: ask_day}
  ask_day: {say: "What day?", collect: day, next: ask_at}
  ask_at: {say: "What time?", collect: at, next: done}
  done: {say: "Thanks.", hangup: true}
"""


@pytest.fixture(scope="module")
def nlu():
    from ivr.nlu.intents import load_intent_classifier
    from ivr.nlu.service import NLUService

    service = NLUService(load_intent_classifier(), timeout=None)
    if service.extractor is None:
        pytest.fail("the small model did not load, so text slots cannot be filled")
    service.prepare_all(nlu_preparation(load_flow_text(FLOW)))
    return service


def understand(nlu, text, flow=FLOW, answers=()):
    loaded = load_flow_text(flow)
    engine = FlowEngine(loaded)
    engine.start()
    step = TurnStep(engine, nlu, EscalationPolicy(), loaded.flow, on_error=lambda node, err: pytest.fail(err))
    for said, intent in answers:  # the call so far, to reach the node asked about
        from ivr.nlu.understanding import Understanding

        engine.on_text(said, Understanding(intent, 0.95 if intent else 0.0, "test"))
    return asyncio.run(step.understand(engine.expectation(), text)).understanding


def test_the_small_model_fills_text_slots_from_the_callers_words(nlu):
    u = understand(nlu, "I'm looking for a Thai place to eat in Sunnyvale")
    assert u.intent == "find_restaurant"
    values = {v.slot: v for v in u.values}
    assert values["cuisine"].value == "Thai" and values["city"].value == "Sunnyvale"
    assert all(v.source == "model" for v in u.values)
    text = "I'm looking for a Thai place to eat in Sunnyvale"
    assert all(text[v.start:v.start + len(v.said)] == v.said for v in u.values)  # grounded, by construction


def test_a_request_without_values_fills_nothing(nlu):
    u = understand(nlu, "can you help me find somewhere to eat")
    assert u.intent == "find_restaurant" and u.values == ()


def test_typed_values_come_from_the_parsers_with_the_intent(nlu):
    u = understand(nlu, "I'd like to reserve a table for four tomorrow at seven thirty")
    assert u.intent == "book_table"
    values = {v.slot: (v.value, v.source) for v in u.values}
    assert values["party_size"] == (4, "parser") and values["at"] == ("19:30", "parser")
    assert "day" in values


DELIVERY = """
flow: pharmacy
start: menu
slots:
  fulfilment:
    type: enum
    choices: {pickup: [pick it up, pick up], delivery: [deliver, delivery, drop it off]}
  address: {type: text, description: the street address to deliver the prescription to}
nodes:
  menu:
    say: "How can I help?"
    intents:
      refill: {examples: ["I need a refill", "refill my prescription please"], goto: ask_fulfilment}
  ask_fulfilment: {say: "Pick up or delivery?", collect: fulfilment, next: ask_address}
  ask_address: {say: "What's the address?", collect: address, next: done}
  done: {say: "Thanks.", hangup: true}
"""


@pytest.mark.parametrize("answer, address", [
    ("I'd rather you drop it off at my house", None),  # no address said: the question is asked
    ("whichever is faster", None),
    ("deliver it to 379 Gellert Boulevard please", "379 Gellert Boulevard"),
])
def test_an_unmarked_text_slot_takes_only_a_name_or_an_address_in_passing(nlu, answer, address):
    u = understand(nlu, answer, DELIVERY, answers=[("I need a refill", "refill")])
    assert {v.slot: v.value for v in u.values}.get("address") == address
