"""Signals in a caller's words that the escalation policy needs, beyond the intent.

Pure functions over the transcript: frustration/negative sentiment (words and phrasings that
callers use when a bot is failing them), an explicit request for a person, and several requests
in one turn ("check my balance and also report a lost card"), which a single-intent menu step
cannot serve. Cheap enough to run on every turn; the small LM can refine them later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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


def _count(patterns: list[str], text: str) -> list[str]:
    return [m.group(0) for p in patterns for m in [re.search(p, text)] if m]


@dataclass(frozen=True)
class Signals:
    frustration: float = 0.0
    """0..1: how strongly the words sound like an upset caller."""
    wants_person: bool = False
    multiple_requests: bool = False
    cues: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"frustration": round(self.frustration, 2), "wants_person": self.wants_person,
                "multiple_requests": self.multiple_requests, "cues": list(self.cues)}


def detect(text: str) -> Signals:
    lowered = " ".join(text.lower().replace("’", "'").split())
    frustrated = _count(_FRUSTRATION, lowered)
    person = _count(_PERSON, lowered)
    multi = _count(_MULTI, lowered)
    # Each cue raises the score; shouting-style repetition ("no no no") counts as one more.
    repeats = re.search(r"\b(\w+)( \1){2,}\b", lowered)
    score = min(1.0, 0.45 * len(frustrated) + (0.25 if repeats else 0.0))
    cues = tuple(frustrated + person + multi + ([repeats.group(0)] if repeats else []))
    return Signals(frustration=score, wants_person=bool(person), multiple_requests=bool(multi), cues=cues)
