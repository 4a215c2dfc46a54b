import pytest

from ivr.nlu.signals import detect


@pytest.mark.parametrize("text", [
    "this is ridiculous I've been waiting for an hour",
    "you're useless, you don't understand anything",
    "I'm so frustrated with this stupid system",
    "what the hell is going on with my card",
    "how many times do I have to say it",
    "no no no that's not what I said",
])
def test_frustration(text):
    assert detect(text).frustration >= 0.25, detect(text)  # one word or more: no model, so no more


@pytest.mark.parametrize("text", [
    "I'd like to check my balance please",
    "yes that's right",
    "my card hasn't arrived yet",
    "what time do you close on saturday",
    "four five seven two",
])
def test_calm(text):
    s = detect(text)
    assert s.frustration == 0 and not s.wants_person and not s.multiple_requests, s


@pytest.mark.parametrize("text", [
    "can I speak to a real person", "let me talk to a human", "get me a representative",
    "I want to speak with a supervisor", "operator",
])
def test_wants_person(text):
    assert detect(text).wants_person


@pytest.mark.parametrize("text", [
    "I want to check my balance and also report a lost card",
    "I have two questions, one about my bill",
    "pay my electricity bill and I also need to change my address",
])
def test_multiple_requests(text):
    assert detect(text).multiple_requests


# -- the model's side: exemplars, features, heads (a fake embedder: words as one-hot counts) ---
import json

import numpy as np

from ivr.nlu.signal_model import ANNOUNCED, HEADS_FILE, SIGNALS, Head, SignalScorer, load_examples, load_heads, splits


class WordsEmbedder:
    """Texts as normalised word counts over a hashed vocabulary: similar words, similar vectors."""

    dim = 512

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(",", " ").split():
                out[i, sum(map(ord, word)) % self.dim] += 1.0
        return out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-9, None)


DEFAULT_HEADS = load_heads(HEADS_FILE.parent / "no-such-file.json")[0]  # the fitted ones read MiniLM's space
EXAMPLES = {
    "upset": ["this is ridiculous I have called five times", "I am furious nobody helps me",
              "you people are useless and I'm fed up"],
    "calm": ["I'd like to check my balance", "what are your opening hours", "track my order please"],
    "complaint": ["you charged me twice", "I want my money back for the wrong item"],
    "policy_question": ["what is your refund policy", "is there a fee if I cancel"],
}


def test_the_shipped_exemplars_load_and_cover_every_signal():
    examples = load_examples()
    assert {"upset", "calm", "complaint", "policy_question"} <= set(examples)
    assert all(len(examples[k]) >= 15 for k in ("upset", "calm", "complaint", "policy_question"))


def test_a_broken_exemplar_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "ex.yaml"
    bad.write_text("upset: [a]\ncalm: []\n")
    with pytest.raises(ValueError, match="no examples for complaint, policy_question, calm"):
        load_examples(bad)


def test_splits_need_words_on_both_sides():
    assert splits("check my order and also change my address") == [
        ("check my order", "change my address", True)]
    assert splits("a table for four and two chairs") == []  # "two chairs" is too short to be a request
    assert [s[:2] for s in splits("I want to pay my bill, then I need to move my appointment")] == [
        ("I want to pay my bill", "I need to move my appointment")]


def test_scores_are_probabilities_and_follow_meaning():
    scorer = SignalScorer(WordsEmbedder(), EXAMPLES, heads=DEFAULT_HEADS)
    upset = scorer.score("I am furious, I have called five times and nobody helps")
    calm = scorer.score("I'd like to check my order please")
    assert set(upset) == set(SIGNALS) and all(0.0 <= v <= 1.0 for v in upset.values())
    assert upset["upset"] > calm["upset"]
    assert scorer.score("you charged me twice")["complaint"] > calm["complaint"]
    assert scorer.score("   ") == {name: 0.0 for name in SIGNALS}


def test_two_requests_score_above_one():
    scorer = SignalScorer(WordsEmbedder(), EXAMPLES, heads=DEFAULT_HEADS)
    two = scorer.score("I'd like to check my balance and also what are your opening hours")["multiple_requests"]
    one = scorer.score("I'd like to check my balance")["multiple_requests"]
    assert two > 0.5 > one == 0.0
    assert scorer.score("I have two questions about my bill")["multiple_requests"] == ANNOUNCED


def test_a_probe_head_reads_the_sentence_vector():
    head = Head((0.0, 0.0, 0.0), 0.0, vector=(1.0, -1.0))
    assert head((0, 0, 0), np.array([2.0, 0.0])) > 0.8 > 0.2 > head((0, 0, 0), np.array([0.0, 2.0]))
    assert head((0, 0, 0), None) == 0.5  # no vector: the features alone


def test_heads_fitted_on_another_embedder_are_not_used(tmp_path):
    path = tmp_path / "heads.json"
    path.write_text(json.dumps({"heads": {"upset": {"weights": [1, 2, 3], "bias": -1, "vector": [0.5, 0.5]},
                                          "complaint": {"weights": [1, 1, 1], "bias": 0}},
                                "provenance": {"embedder": "minilm"}}))
    heads, provenance = load_heads(path, embedder_name="e5-small")
    assert heads["upset"] == load_heads(tmp_path / "none.json")[0]["upset"] and provenance["defaults_for"] == ["upset"]
    assert heads["complaint"] == Head((1.0, 1.0, 1.0), 0.0)  # no vector: any embedder
    assert load_heads(path, embedder_name="minilm")[0]["upset"].vector == (0.5, 0.5)


def test_heads_file_overrides_the_defaults(tmp_path):
    path = tmp_path / "heads.json"
    path.write_text(json.dumps({"heads": {"upset": {"weights": [1, 2, 3], "bias": -1}}, "provenance": {"data": ["x"]}}))
    heads, provenance = load_heads(path)
    assert heads["upset"] == Head((1.0, 2.0, 3.0), -1.0) and provenance == {"data": ["x"]}
    assert load_heads(tmp_path / "none.json")[1] == {"source": "defaults"}
    path.write_text(json.dumps({"heads": {"upset": {"weights": [1, 2], "bias": 0}}}))
    with pytest.raises(ValueError, match="the upset head has 2 weights, 3 expected"):
        load_heads(path)


def test_model_scores_make_the_signals():
    s = detect("you charged me twice, get me a manager", {"upset": 0.7, "complaint": 0.9, "multiple_requests": 0.1,
                                                          "policy_question": 0.0})
    assert (s.frustration, s.complaint, s.several, s.source) == (0.7, 0.9, 0.1, "model")
    assert s.wants_person and not s.multiple_requests
    assert s.as_dict()["complaint"] == 0.9


def test_a_weighted_sample_counts_as_that_many_copies():
    from ivr.nlu.calibration import fit_logistic

    X, y = [[0.0], [1.0], [2.0], [3.0]], [0, 1, 0, 1]
    weighted = fit_logistic(X, y, weights=[1, 3, 1, 1])
    copied = fit_logistic(X + [[1.0], [1.0]], y + [1, 1])
    assert np.allclose(weighted[0], copied[0], atol=1e-6) and abs(weighted[1] - copied[1]) < 1e-6
