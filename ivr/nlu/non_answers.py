"""What callers say instead of an answer: asking the line to wait ("hang on, let me grab my
card") or saying they don't know or don't have it ("no idea, sorry"). Pure functions of the
caller's words.

A text slot takes any words, so without this "hold on a second" became a licence plate and "I
don't know the name" a medication. Only a whole answer counts: "I don't know, maybe Eliquis"
carries a value and is left to the slot.

The answer is cut at its punctuation; each piece, less the words around it that say nothing
("um", "sorry", "right now"), must be one of the phrases (or two in a row) or nothing. Pieces
rather than one pattern over the whole answer: whisper repeats itself on noise ("hold on a
second, hold on a second, ..."), and a pattern with repeated optional parts took seconds to
reject such a turn.
"""

from __future__ import annotations

import re
from functools import lru_cache

HOLD = "hold"
UNKNOWN = "unknown"
_LONGEST = 160  # characters: a non-answer is short; longer words are an answer or a story

# Words at either end of a piece that change nothing: "um, hang on a sec, sorry".
_EMPTY = frozenset("""um umm uh uhh er erm oh ok okay yeah yes sure well so sorry hmm hm ah right actually
please thanks now quickly honestly""".split())
_EMPTY_PHRASES = ("thank you", "right now", "at the moment", "real quick", "with me", "on me", "for you",
                  "to be honest", "i'm afraid", "not yet", "just", "offhand", "off hand", "off the top of my head")
_NO = frozenset("no nope nah".split())  # "nope, didn't see it"; not before a hold: "no wait" corrects

_HOLD_PHRASE = (
    r"(?:can you |could you |please )?(?:hang|hold) on(?: please)?|hold please"
    r"|(?:just |give me |can you give me |could you give me |i need )?(?:a|one) (?:sec(?:ond)?|moment|minute|min)"
    r"|wait a (?:sec(?:ond)?|moment|minute)|wait|bear with me"
    r"|let me (?:check|look|see|find it|find that|get it|grab it|get that|grab that|think|have a look|look it up)"
    r"|let me (?:get|grab|find|look for|look at|dig out|pull up|check) (?:my|the|our|his|her) \w+(?: \w+)?"
    r"|(?:let me|i need to|i have to|i'll|i will|i gotta) (?:check with|ask) (?:my|the|our) \w+"
    r"|i(?:'m| am) (?:looking|checking)(?: for it)?|i(?:'m| am) driving"
)
_UNKNOWN_PHRASE = (
    r"(?:i )?(?:do not|don't|dont) (?:know|remember|recall)(?: (?:it|that|the \w+|his name|her name|their name))?"
    r"|(?:i )?(?:do not|don't|dont) have (?:it|that|one|them|the \w+|my \w+|a \w+(?: number)?|that information)"
    r"|(?:i )?(?:have )?no (?:idea|clue)|not a clue|dunno|(?:i )?forgot"
    r"|(?:i'm |i am )?not (?:sure|certain)"
    r"|(?:i )?(?:can't|cannot|couldn't) (?:remember|recall|say|tell you|find it|see it)"
    r"|(?:i )?(?:didn't|did not) (?:get|see|notice) (?:it|one|the \w+)"  # "I didn't get that" asks to repeat
    r"|(?:i )?(?:wasn't|was not) able to (?:get|see) (?:it|that|one)"
    r"|(?:i )?(?:not|never) (?:got|saw) (?:it|one)"
)
_HOLD = re.compile(rf"(?:{_HOLD_PHRASE})(?: (?:{_HOLD_PHRASE}))?")
_UNKNOWN = re.compile(rf"(?:{_UNKNOWN_PHRASE})")


def _readings(piece: str, empty: frozenset[str]) -> list[str]:
    """The piece, and the piece less each further word or phrase at its ends that says nothing
    ("sorry, no idea": the words may hold one of those too: "bear with me", "I'm not sure")."""
    words = piece.split()
    out = [" ".join(words)]
    changed = True
    while words and changed:
        changed = False
        if words[0] in empty:
            words, changed = words[1:], True
        elif words[-1] in empty:
            words, changed = words[:-1], True
        else:
            for phrase in _EMPTY_PHRASES:
                n = len(phrase.split())
                if words[-n:] == phrase.split():
                    words, changed = words[:-n], True
                    break
                if words[:n] == phrase.split():
                    words, changed = words[n:], True
                    break
        out.append(" ".join(words))
    return out


def _all(pieces: list[str], pattern: re.Pattern, empty: frozenset[str]) -> bool:
    """Every piece is the phrase or says nothing, and one is the phrase."""
    found = False
    for piece in pieces:
        readings = _readings(piece, empty)
        if any(r and pattern.fullmatch(r) for r in readings):
            found = True
        elif readings[-1]:
            return False
    return found


@lru_cache(maxsize=512)  # asked several times a turn (the signals, the engine, the text parser)
def non_answer(text: str) -> str | None:
    """HOLD when the whole answer asks the line to wait, UNKNOWN when it only says the caller
    does not know or does not have it, else None."""
    said = " ".join((text or "").replace("\u2019", "'").lower().split())
    if not said or len(said) > _LONGEST:
        return None
    pieces = [p.strip() for p in re.split(r"[,.!?;:]+", said)]
    if _all(pieces, _HOLD, _EMPTY):
        return HOLD
    if _all(pieces, _UNKNOWN, _EMPTY | _NO):
        return UNKNOWN
    return None
