"""A story with a question in it: the caller tells what happened, then asks.

"I ordered a jacket two weeks ago, it came in the wrong size, I sent it back and was told I'd
get a refund, but now there's a new charge on my card, can you reverse it?" A menu routes such a
turn on whichever words weigh most; the request needs the whole story read, by the language
model or a person. Pure text, no model: the turn is cut into clauses, each clause is a piece of
the story (something that happened or was said: past tense, a perfect, a time in the past) or an
ask (a question or a request), and the features are how many statements come with an ask and
how many of them tell what happened. `ivr.nlu.signal_model` turns them into the calibrated
`story_question` score with a head fitted on labelled turns (`ivr bench signals --fit`).
"""

from __future__ import annotations

import re

# Clause boundaries: punctuation (kept, so a clause knows it ended in "?"), and the words
# that join one event to the next. Whitespace is collapsed first: on long runs of it these
# patterns would backtrack quadratically.
_CLAUSE = re.compile(
    r"([,;:.!?]+)|\s(?=(?:and|but|so|then|because|since|when|after|although|though|until|which|"
    r"now|however|yet|while|whereas|before)\b)", re.I)

_LEAD = r"^(?:(?:please|ok|okay|well|now|so|and|but|then)\s+)*"
_WH = r"(?:what|why|how)"
_WH_RELATIVE = r"(?:when|where|which|who|whose)"
_AUX = (r"(?:can|could|would|will|won't|should|shall|may|might|is|are|was|were|do|does|did|don't|"
        r"doesn't|didn't|isn't|aren't|have|has|haven't|hasn't|am)")
_SUBJECT = r"(?:you|i|it|we|they|he|she|my|your|the|this|that|there|someone|anyone|somebody)"
# What, why and how open questions ("what happened to my money", "how long does it take");
# when, where, which and who ask only with a verb and its subject after them ("when will it
# come", "where's my card"), otherwise they open a clause of the story ("when I called they
# said", "..., which was a lie").
_WH_ASKS = re.compile(rf"{_LEAD}(?:{_WH}\b|{_WH_RELATIVE}(?:'s|'re|\s+{_AUX}\s+{_SUBJECT}\b))", re.I)
# A verb first asks when no joining word stands before it: "but was the wrong size" tells.
_AUX_ASKS = re.compile(rf"^(?:(?:please|ok|okay|well|now|so)\s+)*{_AUX}\s+{_SUBJECT}\b", re.I)
_REQUESTS = re.compile(
    r"\b(?:can|could|would|will) you\b|\bplease\b|\bhelp me\b|\btell me\b|\blet me know\b|"
    r"\b(?:i|we) (?:want|need|would like|wanna|have) to (?:know|find out|ask|check|understand)\b|"
    r"\b(?:i|we) (?:want|need|would like|expect)\b|\b(?:i|we)'d like\b|\b(?:i'm|i am|we're|we are) asking for\b|"
    r"\b(?:don't|do not) know what to do\b|\bis there\b|\bare there\b|"
    r"\bwhat (?:do|can|should) i do\b|\bany (?:idea|help|update)\b|\bi wonder\b|\bi was wondering\b|"
    r"\bhow come\b|\bis it possible\b|\bam i able\b|\bcan i\b", re.I)
_IRREGULAR_PAST = frozenset((
    "was were had did went got came said told paid bought sent made took gave saw left lost found "
    "began brought caught chose drove ate fell felt flew forgot froze gotten gone hung kept knew "
    "laid led lent let met put quit ran rang rode rose sold sat set shook shot shut slept spent "
    "spoke stole stood stuck struck swore swam taught tore thought threw understood woke wore won "
    "wrote broke become became been done seen taken given written spoken stolen broken driven "
    "eaten fallen forgotten frozen hidden known ridden risen shaken sworn torn thrown worn "
    "withdrew withdrawn overdrew"
).split())
_NOT_PAST = {"need", "speed", "seed", "feed", "bed", "red", "shed", "indeed", "hundred", "exceed",
             "proceed", "succeed", "bleed", "breed", "greed", "weed", "reed", "embed", "wed", "fed"}
_PAST_WORDS = re.compile(
    r"\b(?:ago|yesterday|last (?:night|week|month|year|time|monday|tuesday|wednesday|thursday|friday|saturday|"
    r"sunday|weekend)|earlier|this morning|the other day|previously|already|still|never|just now|recently)\b", re.I)
_WORD = re.compile(r"[a-z']+")


def _normal(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").split())


def _marked(text: str) -> list[tuple[str, bool]]:
    """The clauses, each with whether it ended in a question mark."""
    out: list[tuple[str, bool]] = []
    pieces = _CLAUSE.split(_normal(text))
    # split() alternates text and the captured punctuation (None at a joining word)
    for i in range(0, len(pieces), 2):
        clause = pieces[i].strip()
        mark = pieces[i + 1] if i + 1 < len(pieces) else None
        if clause and len(clause.split()) >= 2:
            out.append((clause, bool(mark and "?" in mark)))
    return out


def clauses(text: str) -> list[str]:
    return [c for c, _ in _marked(text)]


def asks(clause: str, question_mark: bool = False) -> bool:
    """The clause asks: a question or a request (`question_mark`: it ended in "?")."""
    clause = _normal(clause)
    return question_mark or bool(_WH_ASKS.search(clause) or _AUX_ASKS.search(clause) or _REQUESTS.search(clause))


_HAVE = {"have", "has", "'ve", "i've", "we've", "you've", "they've", "hasn't", "haven't"}
_BETWEEN = {"not", "never", "already", "just", "still", "now", "only", "also", "recently", "since"}


def _past(word: str) -> bool:
    return word in _IRREGULAR_PAST or (word.endswith("ed") and len(word) > 4 and word not in _NOT_PAST)


def tells(clause: str) -> bool:
    """The clause tells a piece of the story: a verb in the past (or a perfect: "have sent",
    "hasn't arrived"), or a time that has passed ("two weeks ago", "still", "already")."""
    words = _WORD.findall(_normal(clause).lower())
    for i, w in enumerate(words):
        if _past(w):
            return True
        if w in _HAVE:
            rest = [x for x in words[i + 1:i + 4] if x not in _BETWEEN]
            if rest and (_past(rest[0]) or rest[0].endswith("en")):
                return True
    return bool(_PAST_WORDS.search(clause))


def story_features(text: str) -> tuple[float, float, float]:
    """(statements that come with an ask, capped at 4; of them, those that tell what happened,
    capped at 4; 1.0 when the turn asks anything). A statement is a clause of three words or
    more that does not ask ("it still isn't there" is one, a state the story reached). A turn
    without an ask scores (0, 0, 0): a story alone is a complaint or a remark, other signals'
    business."""
    parts = _marked(text)
    asking = [asks(c, q) for c, q in parts]
    if not any(asking) and not text.rstrip().endswith("?"):
        return (0.0, 0.0, 0.0)
    statements = [c for (c, _), a in zip(parts, asking, strict=True) if not a and len(c.split()) >= 3]
    told = [c for c in statements if tells(c)]
    return (float(min(len(statements), 4)), float(min(len(told), 4)), 1.0)
