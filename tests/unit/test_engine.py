"""The flow engine on its own: effects for each input, no audio and no models."""

from pathlib import Path

import pytest

from ivr.dialog.engine import (
    OUT_OF_SCOPE,
    EnterNode,
    FlowEngine,
    Handoff,
    Hangup,
    Listen,
    Say,
    SetSlot,
    Transfer,
    Understanding,
)
from ivr.dialog.loader import load_flow, load_flow_text

REPO = Path(__file__).parent.parent.parent


@pytest.fixture
def cs():
    engine = FlowEngine(load_flow(REPO / "flows" / "customer_service.yaml"))
    engine.start()
    return engine


def said(effects):
    return [e.text for e in effects if isinstance(e, Say)]


def nodes(effects):
    return [e.node for e in effects if isinstance(e, EnterNode)]


def intent(name, confidence=0.9):
    return Understanding(name, confidence, "test")


def test_start_greets_and_listens():
    engine = FlowEngine(load_flow(REPO / "flows" / "customer_service.yaml"))
    effects = engine.start()
    assert nodes(effects) == ["main_menu"]
    assert said(effects)[0].startswith("Thanks for calling Acme")
    assert isinstance(effects[-1], Listen)
    exp = effects[-1].expectation
    assert exp.node == "main_menu" and exp.max_digits == 1 and exp.slot is None
    names = {o.name: o.scope for o in exp.intents}
    assert names["order"] == "node" and names["talk_to_agent"] == "global"


def test_spoken_intent_then_spoken_digits_then_confirmation(cs):
    effects = cs.on_text("where's my order", intent("order"))
    assert nodes(effects) == ["ask_order"]
    assert cs.expectation().slot_type == "digits" and cs.expectation().max_digits == 6
    effects = cs.on_text("it's four five seven two one nine", Understanding())
    assert SetSlot("order_number", "457219") in effects
    assert nodes(effects) == ["confirm_order"]
    assert said(effects) == ["I heard order 4 5 7 2 1 9. Is that right?"]
    effects = cs.on_text("yes that's right", Understanding())
    assert nodes(effects) == ["order_agent", "agent"]
    assert isinstance(effects[-1], Transfer) and effects[-1].target == "+15550100"


def test_one_answer_is_parsed_once_a_turn(cs, monkeypatch):
    """The media layer (may the turn end?), the session (does it need the NLU?) and the engine
    (what does it fill?) all ask about the same answer: one parse serves them, and the next
    turn parses its own words afresh."""
    import ivr.dialog.engine as engine_module
    import ivr.dialog.schema as schema_module

    calls = []
    real = engine_module.parse_slot
    for module in (engine_module, schema_module):  # yes/no answers, slot values (SlotDef.parse)
        monkeypatch.setattr(module, "parse_slot", lambda *a, **k: calls.append(a[:2]) or real(*a, **k))
    cs.on_text("where's my order", intent("order"))
    answer = "it's four five seven two one nine"
    assert cs.answer_is_whole(answer) and cs.fills_slot(answer) and cs.understands(answer, Understanding())
    assert SetSlot("order_number", "457219") in cs.on_text(answer, Understanding())
    assert calls == [("digits", answer)]
    cs.on_text("yes", Understanding())
    assert calls == [("digits", answer), ("yes_no", "yes")]


def test_keypad_menu_and_keypad_digits(cs):
    assert nodes(cs.on_dtmf("2")) == ["ask_order"]
    effects = cs.on_dtmf("123456")
    assert nodes(effects) == ["confirm_order"]
    assert cs.on_dtmf("2") and cs.node_name == "ask_order"  # keypad 2 = no on a yes/no question


def test_wrong_length_is_a_no_match_that_reprompts(cs):
    cs.on_dtmf("2")
    effects = cs.on_text("one two three four five six seven", Understanding())
    assert said(effects) == ["That didn't sound like six digits.", "Please say or key in your six digit order number.",
                             "You can also type it on your keypad."]
    assert cs.node_name == "ask_order"


def test_global_intent_works_inside_collect(cs):
    cs.on_dtmf("2")
    effects = cs.on_text("let me talk to a person", intent("talk_to_agent"))
    assert nodes(effects) == ["agent"] and isinstance(effects[-1], Transfer)


def test_no_match_retries_then_escalates_with_reason(cs):
    first = cs.on_text("blah", intent(OUT_OF_SCOPE, 0.2))
    assert said(first)[0].startswith("Sorry, I didn't get that. You can say")
    second = cs.on_text("blah", intent(OUT_OF_SCOPE, 0.2))
    assert said(second)[0] == "Sorry, I still didn't catch that."
    third = cs.on_text("blah", intent(OUT_OF_SCOPE, 0.2))
    transfer = third[-1]
    assert isinstance(transfer, Transfer)
    assert "out of scope 3 times" in transfer.reason


def test_unknown_key_is_no_match(cs):
    effects = cs.on_dtmf("7")
    assert cs.node_name == "main_menu" and said(effects)


def test_no_input_reprompts_then_goes_to_configured_node(cs):
    assert said(cs.on_no_input())[0] == "Are you still there?"
    cs.on_no_input()
    effects = cs.on_no_input()
    assert nodes(effects) == ["goodbye"] and isinstance(effects[-1], Hangup)


def test_repeat_says_last_prompt_again(cs):
    effects = cs.on_text("say that again", intent("repeat"))
    assert said(effects) == [said(FlowEngine(cs.loaded).start())[0]]
    assert cs.node_name == "main_menu"


def test_start_over_clears_slots(cs):
    cs.on_dtmf("2")
    cs.on_dtmf("123456")
    assert cs.state.slots
    cs.on_text("start over", intent("start_over"))  # at a question, asked about first
    effects = cs.on_text("yes", Understanding())
    assert cs.state.slots == {} and nodes(effects) == ["main_menu"]


def test_branch_on_yes_no(cs):
    cs.on_dtmf("1")  # hours -> anything_else
    assert cs.node_name == "anything_else"
    effects = cs.on_text("nope", Understanding())
    assert nodes(effects) == ["goodbye"] and isinstance(effects[-1], Hangup)


def test_inputs_after_the_end_are_ignored(cs):
    cs.on_text("bye", intent("goodbye"))
    assert cs.state.ended
    assert cs.on_text("hello?", intent("order")) == []
    assert cs.on_dtmf("1") == []


def test_unsure_goodbye_is_asked_about_not_hung_up_on(cs):
    """A caller confirming a misheard number ("yes, that's right" at the digits question) was
    once heard as goodbye at 0.59 and hung up on."""
    from ivr.dialog.engine import END_CALL_QUESTION

    cs.on_text("where's my order", intent("order"))
    effects = cs.on_text("yes that's right", intent("goodbye", 0.59))
    assert said(effects) == [END_CALL_QUESTION] and not cs.state.ended
    assert cs.node_name == "ask_order" and cs.expectation().confirming
    assert cs.expectation().slot_type == "yes_no" and cs.fills_slot("no")
    # no: back to the node's own question, the call goes on
    effects = cs.on_text("no", Understanding())
    assert said(effects)[0] == "Okay." and "order number" in said(effects)[-1]
    assert not cs.state.ended and cs.expectation().slot_type == "digits"
    # asked again and answered yes: the caller leaves
    cs.on_text("bye", intent("goodbye", 0.5))
    effects = cs.on_text("yes please", Understanding())
    assert nodes(effects) == ["goodbye"] and isinstance(effects[-1], Hangup)


def test_unsure_goodbye_then_an_answer_to_the_node_carries_on(cs):
    from ivr.dialog.engine import END_CALL_QUESTION

    cs.on_text("where's my order", intent("order"))
    assert said(cs.on_text("hmm", intent("goodbye", 0.6))) == [END_CALL_QUESTION]
    assert said(cs.on_no_input())[-1] == END_CALL_QUESTION  # silence: the question again
    effects = cs.on_text("four five seven two one nine", Understanding())  # the number instead
    assert SetSlot("order_number", "457219") in effects
    assert not cs.state.ended and cs.state.pending_intent is None


def test_sure_goodbye_and_keys_end_at_once(cs):
    effects = cs.on_text("bye", intent("goodbye", 0.95))
    assert isinstance(effects[-1], Hangup)
    # an intent that can be undone (another question comes) is applied at any confidence
    other = FlowEngine(cs.loaded)
    other.start()
    assert nodes(other.on_text("order maybe", intent("order", 0.3)))


@pytest.mark.parametrize("confidence, asked", [(0.55, True), (0.95, False)])
def test_a_transfer_heard_unsure_is_asked_about_first(cs, confidence, asked):
    """'I'd like to report a leak too', heard as the agent at 0.55, put a caller through."""
    from ivr.dialog.engine import Transfer

    effects = cs.on_text("I'd like to report a leak too", intent("talk_to_agent", confidence))
    assert (said(effects)[-1:] == ["Sorry, do you want to talk to a person?"]) == asked
    assert any(isinstance(e, Transfer) for e in effects) != asked
    if asked:
        assert any(isinstance(e, Transfer) for e in cs.on_text("yes please", Understanding()))


def test_start_over_heard_unsure_keeps_what_was_given(cs):
    """'starting next month', heard as start over at 0.66, wiped the caller's answers."""
    cs.on_text("where is my order", intent("order", 0.95))
    cs.on_text("four five seven two one nine", Understanding())
    assert cs.state.slots
    effects = cs.on_text("starting next month", intent("start_over", 0.66))
    assert said(effects)[-1:] == ["Sorry, do you want to start over?"] and cs.state.slots
    cs.on_text("no", Understanding())
    assert cs.state.slots


def test_intent_not_of_this_node_is_not_applied(cs):
    effects = cs.on_text("x", intent("made_up_intent"))
    assert cs.node_name == "main_menu" and said(effects)


FLOW = """
flow: t
start: menu
slots:
  amount: {type: number}
nodes:
  menu:
    say: [First, Second, Third]
    intents:
      llm: {examples: [something complicated], goto: helper}
      ask: {examples: [amount], goto: ask}
  ask:
    say: How much?
    collect: amount
    next:
      - if: slots.amount > 100
        then: big
      - else: small
  big:
    say: That's a lot, {slots.amount}.
    hangup: true
  small:
    say: Fine.
    hangup: true
  helper:
    handoff: llm
    return_to: menu
"""


def test_variants_rotate_and_templates_render():
    engine = FlowEngine(load_flow_text(FLOW))
    assert said(engine.start()) == ["First"]
    assert said(engine.on_text("?", Understanding()))[-1] == "Second"
    assert said(engine.on_text("?", Understanding()))[-1] == "Third"
    engine.on_text("amount", intent("ask"))
    effects = engine.on_text("a hundred and fifty", Understanding())
    assert said(effects) == ["That's a lot, 150."]


def test_handoff_effect_and_return():
    engine = FlowEngine(load_flow_text(FLOW))
    engine.start()
    effects = engine.on_text("it's complicated", intent("llm"))
    handoff = effects[-1]
    assert isinstance(handoff, Handoff) and handoff.return_to == "menu"
    assert nodes(engine.goto("menu")) == ["menu"]
    with pytest.raises(KeyError):
        engine.goto("nowhere")


def test_next_loop_is_cut():
    loop = """
flow: loop
start: a
nodes:
  a: {say: A, next: b}
  b: {say: B, next: a}
"""
    effects = FlowEngine(load_flow_text(loop)).start()
    assert isinstance(effects[-1], Hangup) and "loops" in effects[-1].reason


CONFIRM = """
flow: c
start: ask
slots:
  amount: {type: money}
nodes:
  ask:
    say: How much would you like to pay?
    collect: amount
    confirm: That's {slots.amount} dollars, right?
    rejections:
      - if: slots.amount > 5000
        say: Sorry, {slots.amount} is over the 5000 dollar limit.
      - if: slots.amount <= 0
        say: The amount has to be more than zero.
    next: done
  done: {say: "Paid {slots.amount}.", hangup: true}
"""


def test_confirmation_yes_keeps_value():
    engine = FlowEngine(load_flow_text(CONFIRM))
    engine.start()
    effects = engine.on_text("forty two fifty", Understanding())
    assert said(effects) == ["That's 42.50 dollars, right?"]
    assert "amount" not in engine.state.slots and engine.expectation().slot_type == "yes_no"
    effects = engine.on_text("yep", Understanding())
    assert SetSlot("amount", "42.50") in effects and said(effects) == ["Paid 42.50."]


def test_confirmation_no_asks_again_and_keypad_works():
    engine = FlowEngine(load_flow_text(CONFIRM))
    engine.start()
    engine.on_text("forty two fifty", Understanding())
    effects = engine.on_dtmf("2")
    assert said(effects) == ["Okay, let's try that again.", "How much would you like to pay?"]
    assert engine.state.pending is None
    engine.on_text("twelve dollars", Understanding())
    assert said(engine.on_dtmf("1")) == ["Paid 12.00."]


def test_unclear_confirmation_reasks_the_confirmation():
    engine = FlowEngine(load_flow_text(CONFIRM))
    engine.start()
    engine.on_text("forty two fifty", Understanding())
    effects = engine.on_text("hmm what", Understanding())
    assert said(effects)[-1] == "That's 42.50 dollars, right?"


def test_rejection_says_why_and_reasks():
    engine = FlowEngine(load_flow_text(CONFIRM))
    engine.start()
    effects = engine.on_text("ten thousand dollars", Understanding())
    assert said(effects) == ["Sorry, 10000.00 is over the 5000 dollar limit.", "How much would you like to pay?"]
    assert "amount" not in engine.state.slots and engine.state.pending is None


def test_a_whole_answer_is_one_that_cannot_go_on(cs):
    assert not cs.answer_is_whole("yes")  # a menu: nothing is collected
    cs.on_text("where's my order", intent("order"))
    assert not cs.answer_is_whole("four five seven")  # three of six digits
    assert cs.number_incomplete("four five seven") and not cs.number_incomplete("four five seven two one nine")
    assert cs.answer_is_whole("four five seven two one nine")
    cs.on_text("four five seven two one nine", Understanding())
    assert cs.answer_is_whole("yes") and not cs.answer_is_whole("well")
    money = FlowEngine(load_flow_text("""
flow: t
start: ask
slots:
  amount: {type: money}
nodes:
  ask: {say: "How much?", collect: amount, next: done}
  done: {say: Thanks., hangup: true}
"""))
    money.start()
    assert money.fills_slot("twelve dollars") and not money.answer_is_whole("twelve dollars")


@pytest.mark.parametrize("answer, kept", [
    ("four five seven two one nine", "457219"),
    ("four five seven, no, four five eight two one nine", "458219"),
    ("4 5 7 2 1 8, sorry, 4 5 7 2 1 9", "457219"),
])
def test_a_caller_correcting_themselves_in_one_answer_is_taken_at_their_word(cs, answer, kept):
    """'fifty dollars, no, sixty' was read back as 50 dollars and 60 cents."""
    cs.on_text("where is my order", intent("order", 0.95))
    assert SetSlot("order_number", kept) in cs.on_text(answer, Understanding())
