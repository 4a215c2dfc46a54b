"""Example-similarity intent router, calibrated per menu from the designer's own examples.

For one menu (a node's intents) the router keeps the designer's example embeddings. A caller's
utterance is scored against each intent as a blend of its nearest example and the intent's
centroid, in a space centred on the mean of the menu's examples and a generic background set
(centring removes the direction every sentence of the domain shares, which sharpens both the
choice between intents and the out-of-scope test).

The router's *conf* for the best intent is its score plus `beta` times its margin over the
runner-up. Whether that is high enough is decided against a threshold `tau` calibrated on the
menu itself, not a global constant (docs/architecture.md, "Routing intents": a fixed threshold does not carry from
one menu to another): leave each designer example out in turn, score it against the rest, and
take a low quantile of the conf its own intent gets. A built-in background set of generic
out-of-scope phrases (weather, sports, jokes, other businesses) bounds tau from below, and an
utterance closer to a background phrase than to any designer example is out of scope; a
background phrase the menu handles itself ("I want to order a pizza" on a pizza line) is left
out of that menu's background (`in_menu`).

What reviewers marked out of scope on a menu (its own out-of-scope examples, near misses by
nature: "pay my bill at the shop" on a bank's bill menu) is weighed differently: such a turn
near the caller's words lowers the conf by how much nearer it is than the nearest designer
example (`own_weight`, from `own_margin` below that), instead of vetoing the intent outright
and raising the menu's threshold. Measured with `ivr bench review` (docs/nlu.md): after one
review the next batch's in-menu accuracy gains more, and out-of-scope recall stays above the
line before the review.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

# Generic things callers say that no business menu routes: used to centre the space, to bound
# the threshold from below and as an out-of-scope neighbour set. Deliberately domain-free (no
# banking, no telecom): a menu's own near-misses must be judged by its calibration, not by a
# list tuned to one benchmark.
BACKGROUND_OOS: tuple[str, ...] = (
    # weather, time, news
    "what's the weather like today", "is it going to rain tomorrow", "how hot is it outside",
    "what time is it", "what's the date today", "what's the news today",
    "will it snow this weekend",
    # sports, entertainment
    "who won the game last night", "what's the score of the football match",
    "when do the lakers play next", "recommend me a good movie", "what's on tv tonight",
    "play some music", "who sings this song", "what's your favorite band",
    # jokes, chit-chat, the assistant itself
    "tell me a joke", "how are you doing today", "what's your name", "are you a robot",
    "do you like pizza", "I'm bored", "what's the meaning of life", "sing me a song",
    "how old are you", "where do you live", "do you have a girlfriend", "you're funny",
    "nice to meet you", "what are you wearing", "can you keep a secret",
    # general knowledge, trivia
    "what's the capital of france", "how far is the moon", "how many legs does a spider have",
    "who is the president", "how do you spell necessary", "what's two plus two",
    "translate hello into spanish", "who invented the light bulb",
    # other businesses and errands
    "I want to order a pizza", "book me a table for two at eight", "I need a taxi to the airport",
    "can I book a flight to london", "I'd like to make a doctor's appointment",
    "what time does the pharmacy close", "I want to reserve a hotel room",
    "is my package from amazon delivered", "my internet is down", "I need a plumber",
    "how much is a haircut", "do you sell shoes", "I want to return a sweater I bought",
    "what's the price of gas", "where is the nearest gas station", "my car broke down",
    "I want to renew my driver's license", "when is garbage pickup", "my phone screen is cracked",
    "I want to adopt a dog", "can you fix my laptop", "recipe for chocolate cake",
    "find me a dentist nearby", "schedule a cable installation", "how do I get to the zoo",
    # random, fragments, noise the recogniser produces
    "purple monkey dishwasher", "the cat sat on the mat", "banana", "blah blah blah",
    "I like turtles", "my grandmother's birthday is next week", "I'm just driving home",
    "sorry wrong number", "hang on my kid is talking to me", "testing testing one two three",
)


def humanize(name: str) -> str:
    """`lost_card` -> `lost card`: an intent's name as a phrase."""
    return name.replace("_", " ").replace("-", " ").strip()


def _alike(rows: np.ndarray) -> float | None:
    """Mean cosine between distinct unit rows (None for fewer than two)."""
    n = len(rows)
    if n < 2:
        return None
    sims = rows @ rows.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.clip(n, 1e-12, None)


@dataclass
class RouterScore:
    ranked: list[tuple[str, float]]  # every intent with its blended score, best first
    best: str
    conf: float  # best score + beta * margin, compared with the best intent's tau
    tau: float  # the threshold that applies to this best intent
    margin: float
    background: bool  # nearer a background phrase than any designer example
    raw_best: float  # plain cosine to the nearest designer example


@dataclass
class RouterIndex:
    """One menu's examples, embedded and calibrated."""

    names: list[str]
    examples: np.ndarray  # centred, unit rows
    labels: np.ndarray  # intent index of each example row
    raw_examples: np.ndarray  # unit rows, not centred
    centroids: np.ndarray  # unit rows, one per intent
    mu: np.ndarray
    tau: float  # the menu-wide threshold
    spread: float  # scale of conf around tau (std of the leave-one-out conf)
    intent_tau: np.ndarray | None = None  # per-intent thresholds (tau shifted per intent)
    calibration: dict = field(default_factory=dict)
    background: np.ndarray | None = None
    """The built-in background set, unit rows, not centred."""
    own_oos: np.ndarray | None = None
    """This menu's own out-of-scope examples (what reviewers marked as truly out of scope on
    it), unit rows, not centred."""


class ExampleRouter:
    """Nearest-example router with per-menu calibration.

    Tuning (defaults measured with `python -m ivr.bench.nlu_quick` on two Banking77 menus):
      w_max:          weight of the nearest example against the intent centroid (0.5)
      beta:           weight of the margin over the runner-up in conf (0.5)
      loo_quantile:   quantile of the leave-one-out conf that sets tau (0.12)
      default_tau:    tau used when a menu has too few examples to calibrate (0.55)
      prior_weight:   how many pseudo-observations default_tau counts as (4)
      bg_quantile:    tau is at least this quantile of the background set's conf (0.95)
      intent_weight:  how far each intent's threshold follows its own leave-one-out median
                      (0: one threshold for the menu; 1: fully per intent) (0.5)
      own_weight:     how much conf a menu's own out-of-scope example takes away per unit of
                      similarity it has over the nearest designer example (1.0)
      own_margin:     ... counted from this far below that example's similarity (0.1)
    (own_weight and own_margin measured with `ivr bench review` on two Banking77 menus and
    three seeds, then checked on two other menus and three other seeds.)
    """

    def __init__(
        self,
        embedder,
        *,
        w_max: float = 0.5,
        beta: float = 0.5,
        loo_quantile: float = 0.12,
        default_tau: float = 0.55,
        prior_weight: float = 4.0,
        bg_quantile: float = 0.95,
        intent_weight: float = 0.5,
        own_weight: float = 1.0,
        own_margin: float = 0.1,
        bg_in_menu_quantile: float | None = 0.25,
        background: Sequence[str] = BACKGROUND_OOS,
    ):
        self.embedder = embedder
        self.w_max = w_max
        self.beta = beta
        self.loo_quantile = loo_quantile
        self.default_tau = default_tau
        self.prior_weight = prior_weight
        self.bg_quantile = bg_quantile
        self.intent_weight = intent_weight
        self.own_weight = own_weight
        self.own_margin = own_margin
        self.bg_in_menu_quantile = None if bg_in_menu_quantile is None else float(bg_in_menu_quantile)
        self.background = tuple(background)
        self._bg_raw: np.ndarray | None = None

    # -- building ---------------------------------------------------------------------------
    def background_vectors(self) -> np.ndarray:
        if self._bg_raw is None:
            self._bg_raw = (
                _unit(np.asarray(self.embedder.encode(list(self.background)), dtype=np.float32))
                if self.background
                else np.zeros((0, 1), dtype=np.float32)
            )
        return self._bg_raw

    def build(self, intents, out_of_scope: Sequence[str] = ()) -> RouterIndex:
        """`out_of_scope`: what callers said on this menu that it must not route (reviewed
        turns): they centre the space with the background, and near a caller's words they lower
        the conf (`own_weight`); they are not in the threshold."""
        names = [i.name for i in intents]
        if not names:
            raise ValueError("a menu needs at least one intent")
        texts: list[str] = []
        labels: list[int] = []
        for k, intent in enumerate(intents):
            exs = [e for e in intent.examples if e and e.strip()]
            if not exs:  # no examples: the name (and description) stand in for them
                exs = [humanize(intent.name)] + ([intent.description] if intent.description else [])
            texts.extend(exs)
            labels.extend([k] * len(exs))
        raw = _unit(np.asarray(self.embedder.encode(texts), dtype=np.float32))
        lab = np.asarray(labels)
        own = [t for t in out_of_scope if t and t.strip()]
        mine = _unit(np.asarray(self.embedder.encode(own), dtype=np.float32)) if own else None
        bg = self.background_vectors()
        index = self._index(names, raw, lab, bg, mine)
        in_menu = self.in_menu(index)
        if in_menu.any():
            index = self._index(names, raw, lab, bg[~in_menu], mine)
        index.calibration["background_in_menu"] = [t for t, m in zip(self.background, in_menu, strict=True) if m]
        return index

    def _index(self, names, raw, lab, bg, mine) -> RouterIndex:
        pool = [raw] + ([bg] if len(bg) else []) + ([mine] if mine is not None else [])
        mu = np.vstack(pool).mean(axis=0)
        ex = _unit(raw - mu)
        cents = _unit(np.stack([ex[lab == k].mean(axis=0) for k in range(len(names))]))
        index = RouterIndex(names, ex, lab, raw, cents, mu, self.default_tau, 0.1, background=bg, own_oos=mine)
        self._calibrate(index)
        return index

    def in_menu(self, index: RouterIndex) -> np.ndarray:
        """Which built-in background phrases this menu handles itself ("I want to reserve a
        hotel room" on a hotel's menu): those it would route past its own threshold that are
        also as near a designer example as that example's intent keeps its examples to each
        other (`bg_in_menu_quantile` of the examples' nearest-sibling similarity). Such a
        phrase is the business's own request, not a stranger's errand: left in the background
        it would turn away every caller who words the request its way, and raise the threshold.
        Both tests, because either alone lets in strangers: the threshold passes near-domain
        errands ("what time does the pharmacy close" on a shop's hours), nearness alone passes
        chit-chat when an intent's examples are far apart."""
        bg = index.background if index.background is not None else np.zeros((0, 1), dtype=np.float32)
        out = np.zeros(len(bg), dtype=bool)
        if not len(bg) or self.bg_in_menu_quantile is None:
            return out
        raw, lab = index.raw_examples, index.labels
        sims = raw @ raw.T
        np.fill_diagonal(sims, -np.inf)
        sibling = np.asarray([sims[i, lab == lab[i]].max() for i in range(len(lab))])
        near = bg @ raw.T  # (background, examples)
        s = self._scores(index, bg)
        k = s.argmax(axis=1)
        passes = self._conf(s, k) >= index.intent_tau[k]
        for b in np.nonzero(passes)[0]:
            mates = np.isfinite(sibling) & (lab == k[b])
            if not mates.any():  # one example: nothing to measure nearness by, the threshold decides
                out[b] = True
                continue
            level = float(np.quantile(sibling[mates], self.bg_in_menu_quantile))
            out[b] = float(near[b, lab == k[b]].max()) >= level
        return out

    def _scores(self, index: RouterIndex, raw_q: np.ndarray, exclude: int | None = None):
        """(n, n_intents) blended scores for unit query rows; optionally leave one example out."""
        q = _unit(raw_q - index.mu)
        sims = q @ index.examples.T
        lab = index.labels
        keep = np.ones(len(lab), dtype=bool)
        if exclude is not None:
            keep[exclude] = False
        n = len(index.names)
        out = np.full((len(q), n), -1.0, dtype=np.float32)
        for k in range(n):
            m = keep & (lab == k)
            if not m.any():
                continue
            nearest = sims[:, m].max(axis=1)
            if exclude is not None and lab[exclude] == k:
                cent = _unit(index.examples[m].mean(axis=0))
            else:
                cent = index.centroids[k]
            out[:, k] = self.w_max * nearest + (1.0 - self.w_max) * (q @ cent)
        return out

    def _conf(self, scores: np.ndarray, k: np.ndarray) -> np.ndarray:
        rows = np.arange(len(scores))
        top = scores[rows, k]
        other = scores.copy()
        other[rows, k] = -np.inf
        runner = other.max(axis=1) if scores.shape[1] > 1 else np.full(len(scores), -1.0)
        runner = np.where(np.isfinite(runner), runner, -1.0)
        return top + self.beta * (top - runner)

    def _calibrate(self, index: RouterIndex) -> None:
        lab = index.labels
        loo: list[float] = []
        loo_lab: list[int] = []
        loo_correct = 0
        for i in range(len(lab)):
            if (lab == lab[i]).sum() < 2:
                continue
            s = self._scores(index, index.raw_examples[i : i + 1], exclude=i)
            loo.append(float(self._conf(s, np.asarray([lab[i]]))[0]))
            loo_lab.append(int(lab[i]))
            loo_correct += int(s[0].argmax() == lab[i])
        loo_arr = np.asarray(loo, dtype=np.float64)
        loo_lab_arr = np.asarray(loo_lab)
        bg = index.background if index.background is not None else self.background_vectors()
        bg_conf = np.zeros(0)
        if len(bg):
            s = self._scores(index, bg)
            bg_conf = self._conf(s, s.argmax(axis=1))
        n = len(loo_arr)
        if n:
            tau_loo = float(np.quantile(loo_arr, self.loo_quantile))
            tau = (n * tau_loo + self.prior_weight * self.default_tau) / (n + self.prior_weight)
            spread = float(max(np.std(loo_arr), 0.05)) if n > 2 else 0.1
        else:
            tau_loo, tau, spread = float("nan"), self.default_tau, 0.1
        tau_bg = float(np.quantile(bg_conf, self.bg_quantile)) if len(bg_conf) else -1.0
        index.tau = float(max(tau, tau_bg))
        index.spread = spread
        # Per intent: an intent whose examples are far apart (e.g. "agent", "a real person")
        # gets a lower threshold than one whose examples are near-paraphrases, shifted by how
        # its leave-one-out median sits against the menu's, and never below the background.
        per = np.full(len(index.names), index.tau, dtype=np.float64)
        if n >= 3 and self.intent_weight > 0:
            med = float(np.median(loo_arr))
            for k in range(len(index.names)):
                own = loo_arr[loo_lab_arr == k]
                if len(own) >= 2:
                    shift = float(np.median(own)) - med
                    # shrink towards the menu-wide value by the number of examples behind it
                    w = self.intent_weight * len(own) / (len(own) + 1.0)
                    per[k] = max(index.tau + w * shift, tau_bg)
        index.intent_tau = per
        index.calibration = {
            "tau": index.tau,
            "tau_leave_one_out": tau_loo,
            "tau_background": tau_bg,
            "spread": spread,
            "examples": int(len(lab)),
            "leave_one_out_n": n,
            "leave_one_out_accuracy": (loo_correct / n) if n else None,
            "leave_one_out_conf_median": float(np.median(loo_arr)) if n else None,
            "background_conf_median": float(np.median(bg_conf)) if len(bg_conf) else None,
            # designer examples the router itself would send elsewhere or reject: worth a look
            "weak_examples": int((loo_arr < per[loo_lab_arr]).sum()) if n else 0,
            "intent_tau": {name: float(t) for name, t in zip(index.names, per)},
            # what a designer can act on (ivr/nlu/example_advice.py): how many examples each
            # intent has, and how alike they are (mean cosine between them)
            "intent_examples": {name: int((lab == k).sum()) for k, name in enumerate(index.names)},
            "intent_alike": {name: _alike(index.raw_examples[lab == k]) for k, name in enumerate(index.names)},
        }

    # -- scoring ----------------------------------------------------------------------------
    def score(self, index: RouterIndex, raw_q: np.ndarray) -> RouterScore:
        raw_q = _unit(np.asarray(raw_q, dtype=np.float32).reshape(1, -1))
        s = self._scores(index, raw_q)[0]
        order = np.argsort(-s)
        k = int(order[0])
        conf = float(self._conf(s[None, :], np.asarray([k]))[0])
        margin = float(s[k] - s[order[1]]) if len(order) > 1 else float(s[k] + 1.0)
        raw_sims = raw_q @ index.raw_examples.T
        raw_best = float(raw_sims.max())
        bg = index.background if index.background is not None else self.background_vectors()
        background = bool(len(bg) and float((raw_q @ bg.T).max()) > raw_best)
        if index.own_oos is not None and len(index.own_oos):
            # a reviewed out-of-scope turn as near as the nearest example (or nearer) takes
            # conf away in proportion; not a veto: it is one neighbour, and a near miss
            nearer = float((raw_q @ index.own_oos.T).max()) - raw_best + self.own_margin
            conf -= self.own_weight * max(nearer, 0.0)
        ranked = [(index.names[j], float(s[j])) for j in order]
        tau = float(index.intent_tau[k]) if index.intent_tau is not None else index.tau
        return RouterScore(ranked, index.names[k], conf, tau, margin, background, raw_best)

    def probability(self, index: RouterIndex, score: RouterScore) -> float:
        """Confidence in 0..1 that the best intent is right: 0.5 at its threshold."""
        z = (score.conf - score.tau) / max(index.spread, 1e-3)
        return float(1.0 / (1.0 + np.exp(-2.0 * z)))
