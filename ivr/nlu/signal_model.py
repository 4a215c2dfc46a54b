"""Escalation signals from what a turn means: the embedder against labelled exemplars, then a
calibrated head per signal.

    upset             an angry, fed-up, distressed or complaining caller (the `frustration`
                      trigger), whatever words they use: repeated contact, being charged
                      wrongly, threats to leave, sarcasm, fear
    complaint         a dispute or complaint about what the company did, calm or not
    policy_question   a question about rules, terms or what is allowed
    multiple_requests two requests in one breath ("check my order and also change my address"):
                      the turn split at a joining word, each side a request of its own
    story_question    a story with a question in it ("I ordered it two weeks ago, it came
                      broken, I sent it back and now there's a new charge, can you reverse it?"):
                      the turn's clauses, how many tell what happened beside one that asks
                      (`ivr.nlu.story`)

For the first three, a turn's features are its similarity to the signal's exemplars and to the
calm ones (`ivr/nlu/signal_examples.yaml`, mean of the nearest three, in the embedding space
centred on the exemplars), the word cues of `ivr.nlu.signals`, and, for heads fitted as a
linear probe (upset, complaint), the sentence vector itself: the exemplars let a designer move
a score without refitting, the probe carries what thousands of labelled turns taught. For
several requests the turn is split at each joining word ("and also", "plus", ". Oh and", ...)
and each split is scored from its two sides' sentence vectors (a probe on a*b, |a-b|, a+b) and
the join; the turn's score is its likeliest split's. For a story with a question the features
are the turn's own structure (`ivr.nlu.story.story_features`) and, as a probe, its sentence
vector. A logistic head maps features to a probability, fitted by
`python -m ivr.bench.signals --fit` on public labelled data (never on the benchmark's test
split) and shipped in signal_heads.json: a score of 0.8 means about 8 in 10 such turns were
that signal in the data it was fitted on.

Blocking (the embedder): run it on the NLU worker. The turn's own vector is usually already in
the embedder's cache, since the router embedded the same words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import yaml

from ivr.nlu.calibration import sigmoid
from ivr.nlu.signals import announces_several, cue_counts
from ivr.nlu.story import story_features

EXAMPLES_FILE = Path(__file__).with_name("signal_examples.yaml")
HEADS_FILE = Path(__file__).with_name("signal_heads.json")

MEANING = ("upset", "complaint", "policy_question")
"""Signals scored by similarity to their exemplars."""
SIGNALS = MEANING + ("multiple_requests", "story_question")
# Each meaning signal's negatives: calm requests, and the other kinds that are not it (a calm
# dispute is not an upset caller; an upset one is still a complaint, so upset is not a negative
# of complaint).
_NEGATIVES = {
    "upset": ("calm", "complaint", "policy_question"),
    "complaint": ("calm", "policy_question"),
    "policy_question": ("calm", "complaint"),
}
TOP_K = 3
N_FEATURES = 3
"""Every head reads three features (and, for a probe, a vector): see `meaning_features` and
`several_features`."""

# Where one request may end and another begin. "and" alone joins most single requests ("a
# flight and a hotel"), so the head weighs it against the stronger joins ("and also", "plus").
_JOINS = re.compile(
    r"(?:,|;|\.|\?|!)?\s*\b(?:and also|and then|and another thing|also|plus|as well as|and|then|oh and|"
    r"while i'?m at it|one more thing|on top of that|besides that|after that)\b|[;.?!]\s+",
    re.I,
)
_STRONG_JOINS = re.compile(r"\b(also|another thing|one more thing|while i'?m at it|on top of that|besides that|as well as)\b", re.I)
MIN_SIDE_WORDS = 3
NEAR = 0.8
"""How alike a turn and one of a flow's own signal sentences must be (cosine of the router's
sentence vectors) for the flow's word to decide: near-paraphrases, not the same topic."""
ANNOUNCED = 0.7
"""The several-requests score of a turn that says so ("I've got two questions", "and another
thing") whatever its splits look like."""


@dataclass(frozen=True)
class Head:
    """p = sigmoid(w . features + v . vector + b): the features above, and for a head fitted
    as a probe, the turn's own sentence vector (`vector` weights, one per dimension)."""

    weights: tuple[float, ...]
    bias: float
    vector: tuple[float, ...] = ()

    def __call__(self, features: Sequence[float], vec: np.ndarray | None = None) -> float:
        t = self.bias + sum(w * f for w, f in zip(self.weights, features, strict=True))
        if self.vector and vec is not None and len(self.vector) == len(vec):
            t += float(np.dot(np.asarray(self.vector, dtype=np.float32), vec))
        return sigmoid(t)


# Before a fit: honest about direction (closer to the signal than to calm raises it), not level.
_DEFAULT_HEADS = {
    "upset": Head((12.0, -12.0, 1.5), -0.5),
    "complaint": Head((12.0, -12.0, 0.0), -0.5),
    "policy_question": Head((12.0, -12.0, 0.0), -0.5),
    # per split: (strong join, similarity of the sides, words on the shorter side / 10)
    "multiple_requests": Head((3.0, -2.0, 1.0), -2.5),
    # (statements beside an ask, those that tell what happened, the turn asks)
    "story_question": Head((0.6, 1.5, -1.5), -3.0),
}


def load_examples(path: str | Path = EXAMPLES_FILE) -> dict[str, list[str]]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    missing = [k for k in (*MEANING, "calm") if not data.get(k)]
    if missing:
        raise ValueError(f"{path}: no examples for {', '.join(missing)}")
    return {k: [str(x) for x in v] for k, v in data.items()}


def load_heads(path: str | Path = HEADS_FILE, embedder_name: str | None = None,
               dim: int | None = None) -> tuple[dict[str, Head], dict]:
    """The fitted heads and what they were fitted on; the defaults where the file is absent.

    A probe head (one with `vector` weights) reads one embedder's space only: unless the
    embedder is the one it was fitted with, by name and by dimension, that head is left at its
    default (its other weights were fitted with the vector and mean nothing without it)."""
    heads = dict(_DEFAULT_HEADS)
    path = Path(path)
    if not path.exists():
        return heads, {"source": "defaults"}
    try:
        data = json.loads(path.read_text())
        provenance = dict(data.get("provenance", {}))
        specs = dict(data.get("heads", {}))
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{path}: not a heads file ({exc})") from None
    fitted_with = provenance.get("embedder")
    for name, spec in specs.items():
        if name not in heads:
            continue
        try:
            weights, bias = [float(w) for w in spec["weights"]], float(spec["bias"])
            vector = tuple(float(v) for v in spec.get("vector", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: the {name} head is malformed ({exc!r})") from None
        if len(weights) != N_FEATURES:
            raise ValueError(f"{path}: the {name} head has {len(weights)} weights, {N_FEATURES} expected")
        if vector and not (embedder_name and embedder_name == fitted_with and dim in (None, len(vector) // _vector_parts(name))):
            provenance.setdefault("defaults_for", []).append(name)
            continue
        heads[name] = Head(tuple(weights), bias, vector)
    return heads, provenance


def _vector_parts(name: str) -> int:
    """How many sentence vectors a head's vector weights span: a several-requests split's pair
    is three (a*b, |a-b|, a+b), a turn one."""
    return 3 if name == "multiple_requests" else 1


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def _without_self(sims: np.ndarray, leave_out: bool) -> np.ndarray:
    return sims[sims < 0.9999] if leave_out else sims


def _top_mean(sims: np.ndarray, k: int = TOP_K) -> float:
    k = min(k, sims.shape[-1])
    return float(np.sort(sims)[-k:].mean()) if k else 0.0


def splits(text: str) -> list[tuple[str, str, bool]]:
    """Each place the words could hold two requests: (left, right, strong join), both sides at
    least MIN_SIDE_WORDS words."""
    out = []
    for m in _JOINS.finditer(text):
        left, right = text[: m.start()].strip(" ,;."), text[m.end():].strip(" ,;.")
        if len(left.split()) >= MIN_SIDE_WORDS and len(right.split()) >= MIN_SIDE_WORDS:
            out.append((left, right, bool(_STRONG_JOINS.search(m.group(0)))))
    return out


class SignalScorer:
    """Scores a turn for every signal in SIGNALS, each 0..1 (calibrated where a head was fitted:
    not policy_question)."""

    def __init__(self, embedder, examples: Mapping[str, Sequence[str]] | None = None,
                 heads: Mapping[str, Head] | None = None):
        self.embedder = embedder
        self.examples = dict(examples) if examples is not None else load_examples()
        if heads is None:
            info = getattr(embedder, "info", None)
            heads, self.provenance = load_heads(embedder_name=getattr(info, "name", None),
                                                dim=getattr(embedder, "dim", None) or None)
        else:
            self.provenance = {"source": "given"}
        self.heads = dict(heads)
        kinds = list(self.examples)
        texts = [t for k in kinds for t in self.examples[k]]
        labels = np.asarray([i for i, k in enumerate(kinds) for _ in self.examples[k]])
        raw = _unit(np.asarray(embedder.encode(texts), dtype=np.float32))
        self._mu = raw.mean(axis=0)
        vecs = _unit(raw - self._mu)
        self._by_kind = {k: vecs[labels == i] for i, k in enumerate(kinds)}
        self._negatives = {name: np.vstack([self._by_kind[k] for k in _NEGATIVES[name]]) for name in MEANING}

    def meaning_features(self, q: np.ndarray, text: str, leave_out: bool = False) -> dict[str, tuple[float, ...]]:
        """`leave_out`: the turn is one of the exemplars (a head's fit counts them): its own
        likeness (1.0) is left out, as no turn at run time is its own neighbour."""
        cues = cue_counts(text)
        out = {}
        for name in MEANING:
            pos = _top_mean(_without_self(self._by_kind[name] @ q, leave_out))
            neg = _top_mean(_without_self(self._negatives[name] @ q, leave_out))
            out[name] = (pos, neg, float(min(cues.get(name, 0), 2)))
        return out

    def several_features(self, text: str) -> list[tuple[tuple[float, ...], np.ndarray]]:
        """For each place the turn could hold two requests: (strong join, how alike the sides
        are, words on the shorter side / 10) and the pair's vector (a*b, |a-b|, a+b of the
        sides' sentence vectors, what the probe head reads)."""
        candidates = splits(text)
        if not candidates:
            return []
        sides = _unit(np.asarray(self.embedder.encode([s for left, right, _ in candidates for s in (left, right)]),
                                 dtype=np.float32))
        out = []
        for i, (left, right, strong) in enumerate(candidates):
            a, b = sides[2 * i], sides[2 * i + 1]
            shorter = min(len(left.split()), len(right.split())) / 10
            out.append(((float(strong), float(a @ b), shorter), np.concatenate([a * b, np.abs(a - b), a + b])))
        return out

    def features(self, text: str, leave_out: bool = False) -> tuple[dict[str, tuple[float, ...]], np.ndarray]:
        """The meaning signals' features, and the turn's sentence vector (for the probe heads)."""
        raw = _unit(np.asarray(self.embedder.encode([text]), dtype=np.float32))[0]
        return self.meaning_features(_unit(raw - self._mu), text, leave_out), raw

    def several(self, text: str) -> float:
        """How likely the turn holds two requests: its likeliest split, or an announcement
        ("I have two questions")."""
        head = self.heads["multiple_requests"]
        best = max((head(f, pair) for f, pair in self.several_features(text)), default=0.0)
        return max(best, ANNOUNCED if announces_several(text) else 0.0)

    def embed_examples(self, examples) -> dict[str, np.ndarray]:
        """A flow's own sentences (ivr.nlu.understanding.SignalExamples) as unit vectors, by kind."""
        out = {}
        for kind in (*MEANING, "calm"):
            texts = list(getattr(examples, kind, ()) or ())
            if texts:
                out[kind] = _unit(np.asarray(self.embedder.encode(texts), dtype=np.float32))
        return out

    def score(self, text: str, flow: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """`flow`: the flow's own sentences (`embed_examples`), which decide for a turn that says
        nearly the same (`nearest_override`)."""
        if not text.strip():
            return {name: 0.0 for name in SIGNALS}
        features, vec = self.features(text)
        scores = {name: self.heads[name](f, vec) for name, f in features.items()}
        scores["multiple_requests"] = self.several(text)
        scores["story_question"] = self.heads["story_question"](story_features(text), vec)
        return nearest_override(scores, vec, flow) if flow else scores


def nearest_override(scores: Mapping[str, float], vec: np.ndarray, flow: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The designer's word for a turn nearly the same as one of their sentences: near a flow's
    upset (complaint, policy) sentence, that signal scores at least the likeness (0.8 and up);
    near one of its calm sentences (and nearer than to any signal sentence), the meaning signals
    score at most 1 - the likeness (0.2 and down). Not calibrated: the designer decides."""
    near = {kind: float((v @ vec).max()) for kind, v in flow.items() if len(v)}
    calm = near.get("calm", -1.0)
    out = dict(scores)
    for name in MEANING:
        own = near.get(name, -1.0)
        if own >= NEAR and own >= calm:
            out[name] = max(out[name], own)
        elif calm >= NEAR and calm > own:
            out[name] = min(out[name], 1.0 - calm)
    return out
