"""What callers say instead of an answer: asking the line to wait ("hang on, let me grab my
card") or saying they don't know or don't have it ("no idea, sorry"). Pure functions of the
caller's words.

A text slot takes any words, so without this "hold on a second" became a licence plate and "I
don't know the name" a medication. Only a whole answer counts: "I don't know, maybe Eliquis"
carries a value and is left to the slot.
"""

from __future__ import annotations

import re

HOLD = "hold"
UNKNOWN = "unknown"

# Words around the phrase that change nothing: "um, hang on a sec, sorry".
_AROUND = (r"(?:(?:um+|uh+|er+|oh|ok(?:ay)?|yeah|yes|sure|well|so|sorry|no|nope|nah|not yet|actually|hmm+|ah+|right)"
           r"[\s,.!]*)*")
_AFTER = (r"(?:[\s,.!]*(?:sorry|please|thanks|thank you|right now|at the moment|on me|with me|off ?hand|offhand|"
          r"honestly|to be honest|i'm afraid|real quick|quickly|for you))*")

_ONE_HOLD = (
    r"(?:(?:hang|hold) on(?: (?:a|one) (?:sec(?:ond)?|moment|minute|min))?"
    r"|(?:just |give me )?(?:a|one) (?:sec(?:ond)?|moment|minute|min)"
    r"|wait(?: a (?:sec(?:ond)?|moment|minute))?"
    r"|bear with me|just a moment"
    r"|let me (?:check|look|see|find it|find that|get it|grab it|get that|grab that|think|have a look|look it up)"
    r"(?: (?:a sec(?:ond)?|one sec(?:ond)?|a moment))?"
    r"|let me (?:get|grab|find|look for|dig out|pull up) (?:my|the|our|his|her) \w+(?: \w+)?"
    r"|let me (?:check|ask) (?:with )?(?:my|the|our) \w+"
    r"|i(?:'m| am) (?:looking|checking)(?: for it)?(?: now)?)"
)
_HOLD = re.compile(r"^" + _AROUND + _ONE_HOLD + _AFTER + r"(?:[\s,.!]+" + _AROUND + _ONE_HOLD + _AFTER + r")*[\s.!]*$",
                   re.IGNORECASE)

_UNKNOWN = re.compile(
    r"^" + _AROUND + r"(?:i )?(?:"
    r"(?:do not|don't|dont) (?:know|remember|recall|have (?:it|that|one|them|the \w+))(?: (?:it|that|the \w+))?"
    r"|(?:have )?no (?:idea|clue)"
    r"|(?:i'm |i am )?not (?:sure|certain)"
    r"|dunno|not a clue"
    r"|(?:can't|cannot|couldn't) (?:remember|recall|say|tell you|find it|see it)"
    r"|(?:didn't|did not) (?:get|see|notice) (?:it|one|the \w+)"  # "I didn't get that" asks to repeat
    r"|(?:wasn't|was not) able to (?:get|see) (?:it|that|one)"
    r"|(?:have|haven't) (?:no|not) (?:got )?(?:it|one)"
    r"|(?:not|never) (?:got|saw) (?:it|one)"
    r")" + _AFTER + r"[\s.!]*$",
    re.IGNORECASE)


def _tidy(text: str) -> str:
    return " ".join((text or "").replace("\u2019", "'").split())


def non_answer(text: str) -> str | None:
    """HOLD when the whole answer asks the line to wait, UNKNOWN when it only says the caller
    does not know or does not have it, else None."""
    said = _tidy(text)
    if not said:
        return None
    if _HOLD.match(said):
        return HOLD
    if _UNKNOWN.match(said):
        return UNKNOWN
    return None
