"""A story with a question in it: the turn's structure (ivr.nlu.story) and its signal."""

import pytest

from ivr.handoff.policy import TurnFacts, decide
from ivr.nlu.signals import Signals
from ivr.nlu.story import asks, clauses, story_features, tells


def test_a_story_is_cut_into_clauses_that_tell_or_ask():
    text = "I made a transfer to my friend on Monday, the app says it went through but he still hasn't got it, what's going on?"
    parts = clauses(text)
    assert parts == ["I made a transfer to my friend on Monday", "the app says it went through",
                     "but he still hasn't got it", "what's going on"]
    assert [asks(c) for c in parts] == [False, False, False, True]
    assert [tells(c) for c in parts] == [True, True, True, False]
    assert story_features(text) == (3.0, 3.0, 1.0)


@pytest.mark.parametrize("text", [
    "can you tell me my balance", "I'd like to book a table for four", "how do I reset my password",
    "please send me a new card", "is it possible to change my flight", "I don't know what to do",
])
def test_requests_ask(text):
    assert asks(text)


@pytest.mark.parametrize("text", [
    "you charged me twice and nobody fixed it",          # a story without a question
    "my card was declined",                              # a statement
    "",
])
def test_no_ask_no_story(text):
    assert story_features(text) == (0.0, 0.0, 0.0)


def test_a_plain_request_has_an_ask_and_no_story():
    assert story_features("what are your opening hours on saturday") == (0.0, 0.0, 1.0)
    # details of the request are not events
    assert story_features("I want a table for four at seven, somewhere quiet, with a view of the river")[1] == 0.0


def test_the_head_before_a_fit_scores_a_long_story_above_a_plain_request():
    from ivr.nlu.signal_model import _DEFAULT_HEADS

    head = _DEFAULT_HEADS["story_question"]
    story = ("I ordered a jacket two weeks ago and it came in the wrong size, I sent it back and they said I'd get "
             "a refund, but now there's another charge on my card, can you reverse it")
    assert head(story_features(story)) > 0.5 > head(story_features("can you reverse a charge on my card"))


def test_a_story_the_flow_did_not_take_goes_to_the_language_model():
    story = Signals(story=0.8)
    e = decide(TurnFacts("out_of_scope", 0.6, story, understood=False))
    assert (e.escalate, e.target, e.trigger) == (True, "llm", "story_question")
    assert "a story with a question in it (score 0.80)" in e.reason
    # the flow's own intent for it wins
    assert not decide(TurnFacts("refund", 0.9, story, understood=True)).escalate
    # below the threshold it is an ordinary out-of-scope turn
    assert decide(TurnFacts("out_of_scope", 0.6, Signals(story=0.3), understood=False)).trigger == "out_of_scope"
    assert Signals(story=0.8).as_dict()["story_question"] == 0.8


def test_what_only_looks_like_a_question_is_told():
    assert asks("I'm asking for a refund") and asks("I\u2019d like a refund")
    # question words that open a clause of the story
    assert story_features("when I called yesterday they told me it was sent, which was a lie") == (0.0, 0.0, 0.0)
    # a verb first after a joining word has only dropped its subject
    assert not asks("but was the wrong size")
    assert asks("was the payment made") and asks("the payment", question_mark=True)
    # having things is not a perfect
    assert story_features("I have two accounts and I have a joint card, can you check my balance") == (2.0, 0.0, 1.0)
    assert tells("I have already sent it") and tells("it hasn't arrived") and tells("we've been waiting")



def test_the_shipped_heads_carry_a_story_probe_for_the_shipped_embedder():
    import json

    from ivr.nlu.signal_model import HEADS_FILE, load_heads

    fitted_with = json.loads(HEADS_FILE.read_text())["provenance"]["embedder"]
    heads, provenance = load_heads(HEADS_FILE, fitted_with, 384)
    assert "defaults_for" not in provenance
    assert len(heads["story_question"].vector) == 384 and len(heads["upset"].vector) == 384
