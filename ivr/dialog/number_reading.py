"""A number read aloud over several turns: what the caller's words give of a digits or phone
slot, with the part heard before. Pure: the flow engine keeps the part and acts on the answer.

Callers read long numbers in groups and pause between them, and a phone line often hears only
the start ("I got 7 8 9": the rest was cut off or lost). A partial number is never taken as
whole: the line asks for the rest and adds the next answer to it. An answer that is a whole
number by itself replaces the part (the caller started over).
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.nlu.slots import ParseResult, spoken_number

from .schema import NUMBER_TYPES, SlotDef

#: Asking for the rest this many times in a row is enough: then the answer is not understood.
MAX_PARTS = 3


@dataclass(frozen=True)
class NumberAnswer:
    value: str | None = None
    """The whole number, when the words (with the part heard before) give it."""
    partial: str | None = None
    """The digits so far, when they are still fewer than the slot needs."""
    unsure: bool = False
    """Put together from parts, said among other words, or heard with the recogniser unsure of
    its words: worth a read-back."""


def digits_needed(slot: SlotDef) -> int:
    """The fewest digits a whole number of this slot has."""
    if slot.length:
        return slot.length
    if slot.min_length:
        return slot.min_length
    return 7 if slot.type == "phone" else 1  # phone: the shortest local numbers (ivr.nlu.slots.parse_phone)


def more_digits(first: str, second: str) -> bool:
    """Whether the words `second` give more digits of a number than `first`."""
    a, b = spoken_number(first), spoken_number(second)
    return b is not None and (a is None or len(b.digits) > len(a.digits))


def reads_numbers(slot: SlotDef | None) -> bool:
    return slot is not None and slot.type in NUMBER_TYPES


def read_number(slot: SlotDef, text: str, parsed: ParseResult, held: str | None, *,
                asr_unsure: bool = False) -> NumberAnswer | None:
    """What `text` gives of `slot`'s number, `parsed` being `text` parsed as the slot and `held`
    the digits heard before (None: none). None when it gives no part of the number."""
    said = spoken_number(text)
    unsure = asr_unsure or (said is not None and said.among_words)
    if held and said is not None:
        # After "what comes next?" the answer is the rest: added to the start, even when it is a
        # number by itself ("123 4567" after "555" is a phone number, and so is the whole). Only
        # when the two make too many digits is it the whole number read again. Either way the
        # number came in parts: worth a read-back (a caller who heard a wrong start reads it all
        # again, and a part of that added to the start is a wrong number, `ivr bench digits`).
        joined = slot.parse(held + said.digits)
        if joined.ok:
            return NumberAnswer(value=joined.value, unsure=True)
        if parsed.ok:
            return NumberAnswer(value=parsed.value, unsure=True)
    elif parsed.ok:
        return NumberAnswer(value=parsed.value, unsure=unsure)
    if said is None or said.among_words:
        return None  # "I've called 3 times" is not the start of an account number
    digits = (held or "") + said.digits
    if len(digits) < digits_needed(slot):
        return NumberAnswer(partial=digits, unsure=unsure)
    return None  # too many digits, or a number the slot refuses: not understood
