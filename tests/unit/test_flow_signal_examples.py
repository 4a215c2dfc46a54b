"""A flow's own sentences for the escalation signals (`escalation.signal_examples`, #21): a turn
that says nearly the same is scored as the designer says, at once, on the live turn path; the
rest of the line is scored as before."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.dialog.engine import nlu_preparation, signal_examples
from ivr.dialog.loader import FlowLoadError, load_flow_text
from ivr.nlu.signal_model import NEAR, SignalScorer, load_examples, nearest_override
from ivr.nlu.understanding import SignalExamples
from tests.unit.test_intents import FakeEmbedder

FLOW = """flow: bank
start: main
escalation:
  signal_examples:
    upset: [my mum passed away and I need to close her account]
    calm: [my card was declined at the shop]
nodes:
  main:
    say: How can I help?
    intents:
      balance: {examples: [what is my balance, how much money do I have], goto: main}
"""


def test_a_turn_nearly_the_same_as_a_flow_sentence_is_scored_as_the_designer_says():
    scores = {"upset": 0.02, "complaint": 0.6, "policy_question": 0.1, "multiple_requests": 0.0}
    vec = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    flow = {"upset": np.array([[0.9, np.sqrt(1 - 0.81), 0.0]], dtype=np.float32),
            "calm": np.array([[0.0, 1.0, 0.0]], dtype=np.float32)}
    out = nearest_override(scores, vec, flow)
    assert out["upset"] == pytest.approx(0.9) and out["complaint"] == 0.6  # only the signal it is near
    calm = nearest_override(scores, vec, {"calm": np.array([[0.95, np.sqrt(1 - 0.9025), 0.0]], dtype=np.float32)})
    assert calm["complaint"] == pytest.approx(0.05) and calm["multiple_requests"] == 0.0
    far = nearest_override(scores, vec, {"upset": np.array([[NEAR - 0.05, np.sqrt(1 - (NEAR - 0.05) ** 2), 0]],
                                                           dtype=np.float32)})
    assert far == scores  # the same topic is not enough


def test_the_flows_sentences_reach_the_scorer_on_a_real_scorer():
    loaded = load_flow_text(FLOW)
    examples = signal_examples(loaded)
    # the intents' examples are calm sentences too: the requests the line exists to serve
    assert examples == SignalExamples(upset=("my mum passed away and I need to close her account",),
                                      calm=("my card was declined at the shop", "what is my balance",
                                            "how much money do I have"))
    assert examples in nlu_preparation(loaded)  # embedded at load, before the first caller
    scorer = SignalScorer(FakeEmbedder(), load_examples())
    flow = scorer.embed_examples(examples)
    said = "my mum passed away and I need to close her account please"
    assert scorer.score(said, flow)["upset"] >= NEAR > scorer.score(said)["upset"]
    assert scorer.score("my card was declined at the shop today", flow)["complaint"] <= 1 - NEAR


def test_an_empty_sentence_is_a_load_error():
    with pytest.raises(FlowLoadError, match="empty sentence"):
        load_flow_text(FLOW.replace("calm: [my card was declined at the shop]", "calm: ['']"))


async def test_a_distressed_caller_the_flow_taught_is_handed_to_a_person():
    """The shipped model scores this near 0; the flow's own sentence makes the line hand over."""
    from ivr.conversation.session import CallSession
    from ivr.nlu.intents import IntentClassifier
    from ivr.nlu.service import NLUService
    from tests.fakes import EventList, RecordingOutput

    flow = load_flow_text(FLOW.replace("      balance: {examples: [what is my balance, how much money do I have], goto: main}",
                                       "      balance: {examples: [what is my balance, how much money do I have], goto: main}\n"
                                       "      agent: {examples: [a person please], goto: agent}\n"
                                       "  agent: {say: Putting you through., transfer: '+15550100'}"))
    events, out = EventList(), RecordingOutput()
    nlu = NLUService(IntentClassifier(FakeEmbedder()), timeout=None)
    nlu.prepare_all(nlu_preparation(flow))
    session = CallSession("CA1", flow, out, nlu=nlu, events=events)
    await session.start()
    await session.on_transcript("my mum passed away and I need to close her account please")
    [turn] = events.of("nlu")
    assert turn["signals"]["frustration"] >= NEAR and turn["decision"]["trigger"] == "frustration"
    assert any(e.get("trigger") == "frustration" for e in events.of("handoff"))


def test_the_intents_examples_are_calm_unless_they_say_otherwise():
    flow = load_flow_text(FLOW.replace("      balance: {examples: [what is my balance, how much money do I have], goto: main}",
                                       "      balance: {examples: [what is my balance, this is ridiculous where is my money], "
                                       "goto: main}"))
    calm = signal_examples(flow).calm
    assert "what is my balance" in calm and "this is ridiculous where is my money" not in calm
