"""What a turn says beyond its intent, for the escalation policy: the named signals and their
scores.

Two sources, merged by `detect`:
  * meaning: `ivr.nlu.signal_model.SignalScorer`, the embedder against labelled exemplars with a
    calibrated head per signal (upset, complaint, policy_question, multiple_requests). It runs
    on the NLU worker and its scores arrive with the turn's understanding;
  * words: pure patterns over the transcript (this module). They are features of the model's
    heads, the whole score where no model ran (`ivr chat --no-nlu`, tests with fakes), and the
    only source of `wants_person` ("a real person", "your manager").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

_FRUSTRATION = [
    r"\bridiculous\b", r"\buseless\b", r"\bstupid\b", r"\bterrible\b", r"\bawful\b", r"\bhorrible\b",
    r"\bfrustrat\w*", r"\bannoy\w*", r"\bangry\b", r"\bfurious\b", r"\bupset\b", r"\bfed up\b",
    r"\bsick of\b", r"\btired of\b", r"\bwaste of (my )?time\b", r"\bnot (listening|helping|working)\b",
    r"\b(you|this) (don't|doesn't|do not|does not|never) (understand|work|listen|help)\b",
    r"\bwhat the (hell|heck)\b", r"\bdamn\w*\b", r"\bcrap\b", r"\bf+u+c+k\w*", r"\bshit\w*",
    r"\bfor god'?s sake\b", r"\bunacceptable\b", r"\bcomplain\w*\b", r"\bcancel (my|the) account\b",
    r"\bi('ve| have) (already )?(told|said|asked) (you )?(that|this)?\b", r"\bagain\?*$",
    r"\bhow many times\b", r"\bthis is (a )?joke\b", r"\bunbelievable\b",
    r"\bthat'?s not what i (said|asked|meant|want\w*)\b", r"\bwrong again\b",
]
_PERSON = [
    r"\b(real|live|actual) (person|human|agent|people)\b", r"\b(speak|talk|speaking|talking) (to|with) (a |an |some|the )?"
    r"(person|human|agent|representative|operator|someone|somebody|manager|supervisor)\b",
    r"\b(representative|operator|supervisor|manager)\b", r"\bhuman\b", r"\bagent please\b",
]
_MULTI = [
    r"\b(and|also) (i )?(also )?(want|need|would like|wanna|have) to\b", r"\band also\b",
    r"\bas well as\b", r"\b(two|a couple of|several|few) (things|questions|issues)\b",
    r"\bplus i\b", r"\bthen i (also )?(want|need)\b", r"\band (another|one more) thing\b",
]
_ANNOUNCED = re.compile(r"\b(two|a couple of|several|few|some) (things|questions|issues|problems)\b|"
                        r"\band (another|one more) thing\b|\bwhile i'?m at it\b")
_REPEATS = re.compile(r"\b(\w+)( \1){2,}\b")  # "no no no": shouting, in words

CUE_WEIGHT = 0.25
"""Without the model, how much each upset word adds to the score: two words reach the default
`frustration` threshold (0.3), one does not."""
REPEATS_WEIGHT = 0.15


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


def _found(patterns: list[str], text: str) -> list[str]:
    return [m.group(0) for p in patterns for m in [re.search(p, text)] if m]


def cue_counts(text: str) -> dict[str, int]:
    """How many word cues each signal has in the text (the heads' word feature)."""
    lowered = _normal(text)
    return {"upset": len(_found(_FRUSTRATION, lowered)) + bool(_REPEATS.search(lowered)),
            "multiple_requests": len(_found(_MULTI, lowered))}


def upset_words(text: str) -> tuple[str, ...]:
    """The words in the text that say the caller is upset ("ridiculous", "no no no")."""
    lowered = _normal(text)
    repeats = _REPEATS.search(lowered)
    return tuple(_found(_FRUSTRATION, lowered)) + ((repeats.group(0),) if repeats else ())


def announces_several(text: str) -> bool:
    """The caller says they have more than one thing to ask ("I've got two questions")."""
    return bool(_ANNOUNCED.search(_normal(text)))


REPEATED = "said the same thing again"
"""The cue a turn carries when the caller said the previous turn again (ivr.handoff.policy)."""


@dataclass(frozen=True)
class Signals:
    frustration: float = 0.0
    """0..1: how likely the caller is upset, angry or distressed (the `upset` signal)."""
    wants_person: bool = False
    several: float = 0.0
    """0..1: how likely the turn holds more than one request."""
    complaint: float = 0.0
    """0..1: a dispute or complaint about what the company did."""
    policy_question: float = 0.0
    """0..1: a question about rules or terms."""
    story: float = 0.0
    """0..1: a story with a question in it (the `story_question` signal)."""
    cues: tuple[str, ...] = field(default_factory=tuple)
    """The words that raised a signal, and "said the same thing again"."""
    upset_cues: tuple[str, ...] = field(default_factory=tuple)
    """Of `cues`, those that speak of an upset caller: what a frustration reason quotes (not
    "and I need to", a cue of several requests)."""
    source: str = "words"
    """"model" when the scores are the calibrated heads', "words" when only the patterns ran."""

    @property
    def multiple_requests(self) -> bool:
        return self.several >= 0.5

    def score(self, name: str) -> float:
        return {"frustration": self.frustration, "multiple_requests": self.several,
                "complaint": self.complaint, "policy_question": self.policy_question,
                "story_question": self.story}[name]

    def as_dict(self) -> dict:
        return {"frustration": round(self.frustration, 2), "wants_person": self.wants_person,
                "multiple_requests": round(self.several, 2), "complaint": round(self.complaint, 2),
                "policy_question": round(self.policy_question, 2), "story_question": round(self.story, 2),
                "cues": list(self.cues),
                "source": self.source}


def detect(text: str, scores: Mapping[str, float] | None = None) -> Signals:
    """The turn's signals: the model's `scores` (SignalScorer.score) where it ran, else the
    words alone."""
    lowered = _normal(text)
    frustrated = _found(_FRUSTRATION, lowered)
    person = _found(_PERSON, lowered)
    multi = _found(_MULTI, lowered)
    repeats = _REPEATS.search(lowered)
    said_again = [repeats.group(0)] if repeats else []
    upset_cues = tuple(frustrated + said_again)
    cues = tuple(frustrated + person + multi + said_again)
    if scores:
        return Signals(frustration=scores.get("upset", 0.0), wants_person=bool(person),
                       several=scores.get("multiple_requests", 0.0), complaint=scores.get("complaint", 0.0),
                       policy_question=scores.get("policy_question", 0.0), story=scores.get("story_question", 0.0),
                       cues=cues, upset_cues=upset_cues, source="model")
    upset = min(1.0, CUE_WEIGHT * len(frustrated) + (REPEATS_WEIGHT if repeats else 0.0))
    return Signals(frustration=upset, wants_person=bool(person), several=1.0 if multi else 0.0, cues=cues,
                   upset_cues=upset_cues)
