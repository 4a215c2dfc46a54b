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


# ---------------------------------------------------------------- values said in passing
PASSING = """
flow: tables
start: menu
slots:
  party_size: {type: number}
  guest: {type: text, description: the name the table is under}
nodes:
  menu:
    say: "How can I help?"
    intents:
      book: {examples: ["book a table", "a table under [Ann](guest)"], goto: ask_size}
  ask_size: {say: "How many?", collect: party_size, next: ask_guest}
  ask_guest: {say: "Under what name?", collect: guest, next: done}
  done: {say: Booked., hangup: true}
"""


class ExtractingNLU(KeywordNLU):
    """KeywordNLU with a small model that finds the capitalised word as the guest's name."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.asked: list[str] = []
        self.fail_extract = fail

    async def extract(self, plan, ask, text, claimed=()):
        from ivr.nlu.understanding import SlotValue

        self.asked.append(text)
        if self.fail_extract:
            raise RuntimeError("extractor exploded")
        names = [w for w in text.split() if w[:1].isupper() and w != "I"]
        return [SlotValue("guest", names[0], names[0], "model", text.index(names[0]))] if names else []


def passing(nlu):
    loaded = load_flow_text(PASSING)
    engine = FlowEngine(loaded)
    engine.start()
    errors = []
    step = TurnStep(engine, nlu, EscalationPolicy(), loaded.flow, on_error=lambda node, error: errors.append(error))
    return engine, step, errors


async def test_a_menu_turn_carries_the_values_of_the_intents_path():
    nlu = ExtractingNLU()
    engine, step, _ = passing(nlu)
    understood = await step.understand(engine.expectation(), "book a table for four under Maria")
    values = {v.slot: (v.value, v.source) for v in understood.understanding.values}
    assert values == {"party_size": (4, "parser"), "guest": ("Maria", "model")}
    record = TurnStep.record(understood, step.decide(understood.facts, []), text="…", sensitive=False)
    assert record["slots"] == [{"slot": "party_size", "value": 4, "source": "parser"},
                               {"slot": "guest", "value": "Maria", "source": "model"}]


async def test_the_small_model_is_asked_only_when_words_are_left_that_could_be_a_value():
    nlu = ExtractingNLU()
    engine, step, _ = passing(nlu)
    await step.understand(engine.expectation(), "I'd like to book a table for four")
    assert nlu.asked == []  # "four" is placed by the parsers; the rest are request words
    await step.understand(engine.expectation(), "book a table for Maria")
    assert nlu.asked == ["book a table for Maria"]


async def test_a_failing_extractor_keeps_the_parsers_values():
    engine, step, errors = passing(ExtractingNLU(fail=True))
    understood = await step.understand(engine.expectation(), "book a table for four under Maria")
    assert [(v.slot, v.value) for v in understood.understanding.values] == [("party_size", 4)]
    assert errors == ["slot extraction: extractor exploded"]


async def test_words_understood_during_the_silence_are_not_understood_again():
    nlu = KeywordNLU()
    engine, step, _ = make(nlu)
    step.understand_early(engine.expectation(), "what are your opening hours")
    understood = await step.understand(engine.expectation(), "what are your opening hours")
    assert understood.understanding.intent == "hours" and len(nlu.calls) == 1


async def test_words_that_changed_after_the_pause_are_understood_afresh():
    nlu = KeywordNLU()
    engine, step, _ = make(nlu)
    step.understand_early(engine.expectation(), "what are your")
    understood = await step.understand(engine.expectation(), "what are your opening hours")
    assert understood.understanding.intent == "hours"
    assert [text for _, text in nlu.calls][-1] == "what are your opening hours"


class FeelingNLU(KeywordNLU):
    """A keyword NLU whose signal model answers fixed scores (or fails)."""

    def __init__(self, scores=None, explode=False):
        super().__init__()
        self.scores, self.explode, self.scored = scores or {}, explode, []

    async def signals(self, text, examples=None):
        self.scored.append(text)
        if self.explode:
            raise RuntimeError("signal model exploded")
        return self.scores


async def test_the_signal_model_scores_a_turn_after_its_intent():
    nlu = FeelingNLU({"upset": 0.8, "complaint": 0.6, "multiple_requests": 0.1, "policy_question": 0.0})
    engine, step, _ = make(nlu)
    understood = await step.understand(engine.expectation(), "my order is late again, this is a joke")
    s = understood.signals
    assert (s.source, s.frustration, s.complaint) == ("model", 0.8, 0.6) and understood.understanding.intent == "order"
    assert step.decide(understood.facts, ["human"]).trigger == "frustration"


async def test_a_story_with_a_question_the_menu_did_not_take_goes_to_the_model():
    nlu = FeelingNLU({"story_question": 0.7})
    engine, step, _ = make(nlu)
    story = "I rang last week and was told someone would call me back but nobody did, can you look into it"
    understood = await step.understand(engine.expectation(), story)
    assert understood.signals.story == 0.7 and understood.understanding.intent == "out_of_scope"
    decision = step.decide(understood.facts, ["llm", "human"])
    assert (decision.trigger, decision.target, decision.score) == ("story_question", "llm", 0.7)


async def test_a_value_the_node_asked_for_is_not_scored_nor_counted_as_a_repeat():
    nlu = FeelingNLU({"upset": 0.9})
    engine, step, _ = make(nlu)
    await step.understand(engine.expectation(), "my order")
    engine.on_text("my order", (await step.understand(engine.expectation(), "my order")).understanding)
    for _ in range(2):
        understood = await step.understand(engine.expectation(), "1 2 3 4 5 6")
    assert "1 2 3 4 5 6" not in nlu.scored and understood.signals.frustration == 0.0
    assert "said the same thing again" not in understood.signals.cues


async def test_a_stock_non_answer_is_not_scored():
    nlu = FeelingNLU({"upset": 0.7})
    engine, step, _ = make(nlu)
    for said in ("not yet, hold on", "I don't have it with me"):
        understood = await step.understand(engine.expectation(), said)
        assert said not in nlu.scored and understood.signals.frustration == 0.0
        assert step.decide(understood.facts, ["human"]).trigger != "frustration"


async def test_at_a_free_text_question_only_upset_said_in_words_escalates():
    """A leak or a pain described scores upset from its topic; "this is ridiculous" says it."""
    flow = FLOW.replace("  order_number: {type: digits, length: 6}",
                        "  order_number: {type: digits, length: 6}\n  problem: {type: text, description: what went wrong}")
    flow = flow.replace("collect: order_number, next: menu}", "collect: order_number, next: ask_problem}\n"
                        "  ask_problem: {say: \"What went wrong?\", collect: problem, next: menu}")
    loaded = load_flow_text(flow)
    engine = FlowEngine(loaded)
    engine.start()
    nlu = FeelingNLU({"upset": 0.9})
    step = TurnStep(engine, nlu, EscalationPolicy(), loaded.flow, on_error=lambda node, error: None)
    engine.on_text("my order", (await step.understand(engine.expectation(), "my order")).understanding)
    engine.on_text("457219", (await step.understand(engine.expectation(), "457219")).understanding)
    assert engine.node.collect == "problem"
    calm = await step.understand(engine.expectation(), "water is coming through the ceiling of the box")
    assert calm.facts.text_answer and not step.decide(calm.facts, ["human"]).escalate
    angry = await step.understand(engine.expectation(), "this is ridiculous, it's the third time I'm calling")
    assert step.decide(angry.facts, ["human"]).trigger == "frustration"


async def test_a_failing_signal_model_leaves_the_words():
    engine, step, errors = make(FeelingNLU(explode=True))
    understood = await step.understand(engine.expectation(), "this is ridiculous and useless")
    assert understood.signals.source == "words" and understood.signals.frustration == 0.5
    assert errors == [("menu", "signals: signal model exploded")]
