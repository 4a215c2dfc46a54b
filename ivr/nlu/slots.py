"""Turn what a caller said (or keyed) into typed slot values.

Input comes from a phone call: an 8 kHz line transcribed by whisper, or keypad digits. That shapes
every rule in this module:

* Callers don't talk like forms. They say "um, my number is four five, uh, seven two", "forty two
  fifty" for $42.50, "half past two", "the fifth of March", "j o h n at gmail dot com". Fillers and
  lead-ins ("it's", "my number is") are dropped rather than treated as errors.
* Whisper writes the same speech many ways: "four five seven two", "4572", "4-5-7-2", "45 72",
  "forty-five seventy-two", "Four, five, seven, two." It also writes digits as homophones ("for",
  "to", "won", "ate") and zero as "oh"/"O". Homophones only count as digits next to real digits, so
  "I'd like to pay for 45" is "45", not "2445".
* A wrong value costs more than a re-prompt: a caller who is asked again just repeats themselves,
  a caller whose account number was silently mangled gets the wrong account. So ambiguous input
  ("four five, sorry, four six", "billing or support", "I'm not sure") is rejected with a
  plain-language `reason` the flow can use to re-prompt, instead of being guessed at. The one
  deliberate exception is yes/no, where any negation wins: "yeah, no" means no.

Everything here is a pure function of its arguments (no I/O, no models), so it is cheap to call
on every transcript and the rules can be tested exhaustively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Callable

from ivr.nlu.non_answers import non_answer

__all__ = [
    "SLOT_TYPES",
    "ParseResult",
    "DateSpan",
    "parse_slot",
    "parse_digits",
    "parse_yes_no",
    "parse_number",
    "parse_money",
    "parse_date",
    "parse_time",
    "parse_phone",
    "parse_email",
    "parse_text",
    "parse_enum",
]

SLOT_TYPES = ("digits", "yes_no", "number", "money", "date", "time", "phone", "email", "text", "enum")


@dataclass(frozen=True)
class ParseResult:
    ok: bool
    value: Any = None  # JSON-serialisable: str, bool, int, float
    reason: str | None = None  # plain-language reason when not ok, e.g. "expected 8 digits, heard 7"
    span: "DateSpan | None" = None  # a date said as days, not a day: the days, and `reason` asks which


def _ok(value: Any) -> ParseResult:
    return ParseResult(True, value)


def _fail(reason: str) -> ParseResult:
    return ParseResult(False, None, reason)


# --------------------------------------------------------------------------------------------
# Words and tokens
# --------------------------------------------------------------------------------------------

# Hesitation sounds whisper keeps in the transcript; they never carry meaning.
_FILLERS = frozenset("uh uhh um umm uhm er erm ah ahh eh hmm hm mm mmm".split())

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    # Phone/radio variants of digit names.
    "nought": 0, "naught": 0, "nil": 0, "niner": 9,
}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
    "fourty": 40, "ninty": 90,  # misspellings whisper occasionally produces
}
_BIG = {"thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}

# Words that sound like digits. Whisper picks them when a digit is spoken without context
# ("for five six" for "four five six"), so they count only next to real digits (see _digit_runs).
_HOMOPHONES = {"oh": 0, "o": 0, "for": 4, "fore": 4, "to": 2, "too": 2, "won": 1, "ate": 8}

_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "nineth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "twelth": 12,
    "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17,
    "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}

_NUMBER_WORDS = frozenset(_UNITS) | frozenset(_TEENS) | frozenset(_TENS) | {"hundred"} | frozenset(_BIG)

_TOKEN_RE = re.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?|[a-z]+(?:'[a-z]+)*|[$+@]")
_NUMERAL_RE = re.compile(r"\d+(?:,\d+)*")


def _normalise(text: str) -> str:
    s = (text or "").lower().replace("\u2019", "'").replace("\u2018", "'")
    # "first thing tomorrow" is early tomorrow, not the 1st of next month ("early": the same
    # length, so character offsets into the caller's words still hold)
    return _FIRST_THING.sub("early", s)


_FIRST_THING = re.compile(r"\bfirst(?=\s+thing\b)")


def _tokens(text: str) -> list[str]:
    """Lower-case word/numeral tokens; punctuation and hyphens split ("forty-five" -> forty, five)."""
    return [t for t in _TOKEN_RE.findall(_normalise(text)) if t not in _FILLERS]


def _is_numeral(tok: str) -> bool:
    return bool(_NUMERAL_RE.fullmatch(tok))


def _words(tokens: list[str]) -> str:
    """Tokens as a space-padded string, so phrases can be found with `" phrase " in ...`."""
    return " " + " ".join(tokens) + " "


# --------------------------------------------------------------------------------------------
# Number-word grammar
#
# A run of number words is split into "groups", each a number as a person would say it:
# "forty five sixty seven" -> 45, 67; "one hundred and five" -> 105; "nineteen eighty four" ->
# 19, 84; "one two three" -> 1, 2, 3. Digit strings concatenate the groups, numbers need exactly
# one, money reads "forty two fifty" (two groups) as 42.50.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Item:
    kind: str  # unit, teen, tens, hundred, big, lit, and, a
    value: int = 0
    text: str = ""


@dataclass(frozen=True)
class _Group:
    value: int
    kind: str  # unit, teen, tens, compound, lit
    text: str  # the digits as spoken: keeps the leading zeros of "007"

    @property
    def two_digit_words(self) -> bool:
        """Spoken like a pair of digits ("fifty", "twenty five", "nineteen", or "50" written)."""
        if self.kind == "lit":
            return len(self.text) == 2
        return self.kind in ("teen", "tens") and self.value >= 10


def _item(tok: str) -> _Item | None:
    if _is_numeral(tok):
        digits = tok.replace(",", "")
        return _Item("lit", int(digits), digits)
    if tok in _UNITS:
        return _Item("unit", _UNITS[tok])
    if tok in _TEENS:
        return _Item("teen", _TEENS[tok])
    if tok in _TENS:
        return _Item("tens", _TENS[tok])
    if tok == "hundred":
        return _Item("hundred", 100)
    if tok in _BIG:
        return _Item("big", _BIG[tok])
    if tok == "and":
        return _Item("and")
    if tok == "a":
        return _Item("a")
    return None


def _at(items: list[_Item], i: int, *kinds: str) -> bool:
    return i < len(items) and items[i].kind in kinds


def _small(items: list[_Item], i: int) -> tuple[int, str, int] | None:
    """1-99 said as words: "seven", "fifteen", "forty", "forty five". Returns (value, kind, next i)."""
    if i >= len(items):
        return None
    it = items[i]
    if it.kind == "tens":
        if _at(items, i + 1, "unit") and items[i + 1].value > 0:
            return it.value + items[i + 1].value, "tens", i + 2
        return it.value, "tens", i + 1
    if it.kind == "teen" or (it.kind == "unit" and it.value > 0):
        return it.value, it.kind, i + 1
    return None


def _below_thousand(items: list[_Item], i: int) -> tuple[int, str, int] | None:
    """[1-99] [hundred [and] [1-99]], e.g. "a hundred and twelve", "twelve hundred", "5 hundred"."""
    if _at(items, i, "a") and _at(items, i + 1, "hundred", "big"):
        value, kind, i = 1, "unit", i + 1
    elif _at(items, i, "lit") and _at(items, i + 1, "hundred", "big") and items[i].value > 0:
        value, kind, i = items[i].value, "lit", i + 1
    elif _at(items, i, "hundred", "big"):
        value, kind = 1, "unit"  # a bare "hundred" or "thousand" means one of them
    else:
        small = _small(items, i)
        if small is None:
            return None
        value, kind, i = small
    if _at(items, i, "hundred") and value < 100:
        value, kind, i = value * 100, "compound", i + 1
        if _at(items, i, "and") and _small(items, i + 1):
            i += 1
        small = _small(items, i)
        # "eight hundred five five five" is 800 then digits, not 805 then digits.
        if small and not (small[1] == "unit" and _at(items, small[2], "unit", "lit")):
            value, i = value + small[0], small[2]
    return value, kind, i


def _group(items: list[_Item], i: int) -> tuple[_Group | None, int]:
    """The longest single number starting at items[i], and the index after it."""
    it = items[i]
    if it.kind == "and" or (it.kind == "a" and not _at(items, i + 1, "hundred", "big")):
        return None, i + 1  # a connector between groups ("one two three and four")
    if it.kind == "unit" and it.value == 0:
        return _Group(0, "unit", "0"), i + 1
    if it.kind == "lit" and not _at(items, i + 1, "hundred", "big"):
        return _Group(it.value, "lit", it.text), i + 1
    head = _below_thousand(items, i)
    if head is None:  # e.g. a stray "thousand"
        return None, i + 1
    value, kind, i = head
    total, last_scale = 0, None
    while _at(items, i, "big") and value > 0 and (last_scale is None or items[i].value < last_scale):
        last_scale = items[i].value
        total, value, kind, i = total + value * last_scale, 0, "compound", i + 1
        if _at(items, i, "and") and _small(items, i + 1):
            i += 1
        rest = _below_thousand(items, i)
        if rest:
            value, _, i = rest
    total += value
    return _Group(total, kind, str(total)), i


def _groups(items: list[_Item]) -> list[_Group]:
    groups, i = [], 0
    while i < len(items):
        group, i = _group(items, i)
        if group is not None:
            groups.append(group)
    return groups


def _concat(groups: list[_Group]) -> str:
    return "".join(g.text for g in groups)


def _words_to_groups(tokens: list[str]) -> list[_Group] | None:
    """Groups for tokens that are all number words/numerals; None if any token is not."""
    items = [_item(t) for t in tokens]
    if any(it is None for it in items):
        return None
    return _groups(items)  # type: ignore[arg-type]


def _single_number(tokens: list[str]) -> int | None:
    """The value of number words that say exactly one number ("twenty five", "3"), else None."""
    groups = _words_to_groups(tokens)
    if not groups or len(groups) != 1:
        return None
    return groups[0].value


# --------------------------------------------------------------------------------------------
# Finding the spoken digits in a sentence (digits, phone, time)
# --------------------------------------------------------------------------------------------

# Words around a number that don't make "for"/"to"/"oh" at its edge any less likely to be a digit:
# "my number is for five six" is 456 after whisper misheard "four".
_LEAD_INS = frozenset(
    """it's its it is was my the number code pin phone account card id reference that's thats
    okay ok yes yeah yep sure so well right alright please thanks oh and i think
    believe er that sorry""".split()
)
# Spoken between chunks of one number ("five five five, dash, one two three four").
_CONNECTORS = frozenset({"and", "then", "dash", "hyphen", "space", "comma"})


def _run_kind(tokens: list[str], i: int, homophones: bool) -> str | None:
    """How tokens[i] takes part in a spoken number: strong, weak, mult, join, or None (a word)."""
    tok = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if _is_numeral(tok) or tok in _NUMBER_WORDS:
        return "strong"
    if homophones and tok in _HOMOPHONES:
        return "weak"
    if tok in ("double", "triple") and (nxt in _UNITS or nxt in ("oh", "o") or (nxt.isdigit() and len(nxt) == 1)):
        return "mult"
    if tok == "a" and nxt in ("hundred", "thousand", "million"):
        return "strong"
    if tok in _CONNECTORS:
        return "join"
    return None


def _digit_runs(tokens: list[str], homophones: bool = True) -> list[list[str]]:
    """Maximal runs of spoken-number tokens, trimmed of homophones that are ordinary words.

    A homophone at the edge of a run stays a digit only if nothing but lead-in words stands
    between it and the start (or end) of the utterance.
    """
    kinds = [_run_kind(tokens, i, homophones) for i in range(len(tokens))]
    runs: list[tuple[int, int]] = []
    start = None
    for i, kind in enumerate(kinds + [None]):
        if kind is not None and start is None:
            start = i
        elif kind is None and start is not None:
            runs.append((start, i))
            start = None

    result = []
    for start, end in runs:
        while start < end and kinds[start] == "join":
            start += 1
        while end > start and kinds[end - 1] in ("join", "mult"):
            end -= 1
        if not all(t in _LEAD_INS for t in tokens[:start]):
            while start < end and kinds[start] == "weak":
                start += 1
        if not all(t in _LEAD_INS for t in tokens[end:]):
            while end > start and kinds[end - 1] == "weak":
                end -= 1
        if any(kinds[j] == "strong" for j in range(start, end)):
            result.append(tokens[start:end])
    return result


def _run_digits(run: list[str]) -> str:
    """Digits of one run: homophones mapped, "double five" expanded, groups concatenated."""
    items: list[_Item] = []
    repeat = 1
    for tok in run:
        if tok in ("double", "triple"):
            repeat = 2 if tok == "double" else 3
            continue
        if tok in _CONNECTORS and tok != "and":
            continue
        item = _Item("unit", _HOMOPHONES[tok]) if tok in _HOMOPHONES else _item(tok)
        if item is None:
            continue
        items.extend([item] * repeat)
        repeat = 1
    return _concat(_groups(items))


_DIGIT_POINT = re.compile(r"(?<=\d)\.(?=\d)")


def _spoken_digits(text: str, within: bool = False) -> tuple[str | None, str | None]:
    """(digits, None) for the one number in `text`, or (None, reason). `within`: the words are
    part of a longer sentence, where "129.99" is a price, not a number read with a pause."""
    if not within:
        # A number read aloud has no decimals: whisper's "0.75983" is 0 75983 read with a pause.
        text = _DIGIT_POINT.sub(" ", text)
    runs = _digit_runs(_tokens(text))
    if not runs:
        return None, "didn't hear any digits"
    found = [_run_digits(r) for r in runs]
    found = [d for d in found if d]
    if len(found) > 1:
        return None, "heard more than one number (" + ", ".join(found) + ")"
    if not found:
        return None, "didn't hear any digits"
    return found[0], None


def _check_count(n: int, length: int | None, min_length: int | None, max_length: int | None) -> str | None:
    if length is not None and n != length:
        return f"expected {length} digits, heard {n}"
    if min_length is not None and n < min_length:
        return f"expected at least {min_length} digits, heard {n}"
    if max_length is not None and n > max_length:
        return f"expected at most {max_length} digits, heard {n}"
    return None


def parse_digits(text: str, *, length: int | None = None, min_length: int | None = None,
                 max_length: int | None = None, within: bool = False) -> ParseResult:
    """A digit string (account number, PIN, keypad entry): "four five seven two" -> "4572"."""
    digits, reason = _spoken_digits(text, within)
    if digits is None:
        return _fail(reason or "didn't hear any digits")
    reason = _check_count(len(digits), length, min_length, max_length)
    return _fail(reason) if reason else _ok(digits)


# Words callers say around a number that say nothing about it ("I said, it is ...").
_BESIDES_A_NUMBER = frozenset("said is here have got a an um uh".split())


@dataclass(frozen=True)
class SpokenNumber:
    """The one number in a caller's words, digit by digit, and whether other words came with it
    ("I think it's four five" has none that matter; "I ate four when nine" has)."""

    digits: str
    among_words: bool


def spoken_number(text: str) -> SpokenNumber | None:
    """The digits of the one number said in `text` (None for no number, or more than one)."""
    digits, _reason = _spoken_digits(text)
    if digits is None:
        return None
    tokens = _tokens(_DIGIT_POINT.sub(" ", text))
    in_runs = sum(len(r) for r in _digit_runs(tokens))
    others = [t for t in tokens if t not in _LEAD_INS and t not in _CONNECTORS and t not in _BESIDES_A_NUMBER]
    return SpokenNumber(digits, among_words=len(others) > in_runs)


def parse_phone(text: str, *, length: int | None = None, min_length: int | None = None,
                max_length: int | None = None, within: bool = False) -> ParseResult:
    """A phone number as digits, with "+" kept when the caller said "plus" or whisper wrote one."""
    tokens = _tokens(text)
    digits, reason = _spoken_digits(text, within)
    if digits is None:
        return _fail(reason or "didn't hear a phone number")
    first_digit = next((i for i in range(len(tokens)) if _run_kind(tokens, i, False) == "strong"), len(tokens))
    plus = any(t in ("plus", "+") for t in tokens[:first_digit])
    if length is None and min_length is None and max_length is None:
        min_length, max_length = 7, 15  # shortest local numbers .. E.164's maximum
        if not min_length <= len(digits) <= max_length:
            return _fail(f"expected a phone number of {min_length} to {max_length} digits, heard {len(digits)}")
    reason = _check_count(len(digits), length, min_length, max_length)
    if reason:
        return _fail(reason)
    return _ok(("+" if plus else "") + digits)


# --------------------------------------------------------------------------------------------
# yes / no
# --------------------------------------------------------------------------------------------

_YES = (
    "yes", "yeah", "yea", "yah", "ya", "yep", "yup", "yes please", "sure", "sure thing", "correct",
    "right", "that's right", "absolutely", "of course", "affirmative", "please do", "uh huh",
    "mm hmm", "mhm", "mmhmm", "ok", "okay", "alright", "all right", "definitely", "certainly",
    "indeed", "exactly", "go ahead", "sounds good", "true", "i do", "it is", "that is right",
    "that is correct", "that's correct",
    "i think so", "i guess so", "yes sir", "yes ma'am", "you bet", "totally",
)
_NO = (
    "no", "nope", "nah", "naw", "not", "don't", "dont", "do not", "isn't", "is not", "wasn't",
    "doesn't", "didn't", "never", "wrong", "incorrect", "negative", "uh uh", "nuh uh", "false",
    "no thanks", "no thank you", "not really", "that's wrong", "absolutely not", "no way",
    "cancel that",
)
# "not sure" contains "not" and "sure": checked first so it is neither a yes nor a no.
_UNSURE = (
    "not sure", "i don't know", "don't know", "dont know", "dunno", "maybe", "no idea", "unsure",
    "perhaps", "possibly", "not certain", "pardon", "repeat", "say that again",
    "can't remember", "don't remember",
)
# Idioms containing "no" that don't answer the question; removed so "yes no problem" is a yes.
_NEUTRAL = ("no problem", "no worries", "not a problem")
_KEYPAD_YES_NO = {"1": True, "2": False}


def _has_phrase(padded: str, phrases: tuple[str, ...]) -> bool:
    return any(f" {p} " in padded for p in phrases)


# A "no" that answers the question, rather than one inside what the caller goes on to tell.
_FLAT_NO = ("no", "nope", "nah", "naw", "wrong", "incorrect", "negative", "not right", "not correct", "no way",
            "cancel that", "absolutely not", "not really", "uh uh", "nuh uh", "not quite", "not exactly")


def _yes_then_a_story(text: str) -> bool:
    """ "yeah I already did that, it didn't help", "yes, but it still doesn't work": a yes first,
    then what happened, whose "didn't" answers nothing. Not "yeah, no" or "yes, that's wrong"."""
    clauses = [c for c in re.split(r"[,.;!?]+|\bbut\b", _normalise(text)) if c.strip()]
    if len(clauses) < 2:
        return False
    first = _words(_TOKEN_RE.findall(clauses[0]))
    rest = _words(_TOKEN_RE.findall(" ".join(clauses[1:])))
    return (_has_phrase(first, _YES) and not _has_phrase(first, _NO) and not _has_phrase(rest, _FLAT_NO)
            and not _has_phrase(rest, _UNSURE))


def parse_yes_no(text: str) -> ParseResult:
    """True/False. Any negation wins ("no that's not right", "not correct", "yeah no"), except
    one in what a caller tells after a yes ("yeah I did, it didn't help")."""
    stripped = (text or "").strip().strip(".#* ")
    if stripped in _KEYPAD_YES_NO:
        return _ok(_KEYPAD_YES_NO[stripped])
    # Fillers are kept here: "uh huh" is a yes and "uh uh" a no.
    padded = _words(_TOKEN_RE.findall(_normalise(text)))
    padded = re.sub(r" (mm|m) (hmm|hm) ", " mm hmm ", padded)
    agreeable = _has_phrase(padded, _NEUTRAL)
    for phrase in sorted(_NEUTRAL, key=len, reverse=True):
        padded = padded.replace(f" {phrase} ", " ")
    if agreeable and set(padded.split()) <= {"thanks", "thank", "you", "at", "all"}:
        return _ok(True)  # "no problem" on its own agrees: "Is that right?" "No problem."
    if _has_phrase(padded, _UNSURE):
        return _fail("caller wasn't sure")
    if _yes_then_a_story(text):
        return _ok(True)
    if _has_phrase(padded, _NO):
        return _ok(False)
    if _has_phrase(padded, _YES):
        return _ok(True)
    return _fail("didn't hear a yes or a no")


# --------------------------------------------------------------------------------------------
# Numbers and money
# --------------------------------------------------------------------------------------------

# Spoken fractions rewritten as decimals before tokenising, so one decimal rule covers them.
_FRACTIONS = (
    (r"\band (?:a )?half\b", " point five "),
    (r"\band a quarter\b", " point two five "),
    (r"\band three quarters\b", " point seven five "),
    (r"\bhalf a dozen\b", " six "),
    (r"\ba dozen\b", " twelve "),
    (r"^\s*(?:a )?half\s*$", " point five "),
)
_DECIMAL_RE = re.compile(r"\d+(?:,\d{3})*\.\d+|\d*\.\d+")


def _prepare_amount_text(text: str) -> str:
    s = _normalise(text)
    for pattern, repl in _FRACTIONS:
        s = re.sub(pattern, repl, s)
    # Written decimals ("3.5", "$42.50") become "3 point 5 0" so they share the spoken rule.
    return _DECIMAL_RE.sub(lambda m: " " + m.group().replace(",", "").replace(".", " point ", 1) + " ", s)


def _fraction_digits(tokens: list[str]) -> str | None:
    """Digits after "point": "five" -> "5", "two five" / "twenty five" -> "25", "oh five" -> "05"."""
    out = ""
    for tok in tokens:
        if tok in ("oh", "o"):
            out += "0"
        elif _is_numeral(tok):
            out += tok.replace(",", "")
        else:
            groups = _words_to_groups([tok])
            if not groups:
                return None
            out += _concat(groups)
    return out


@dataclass(frozen=True)
class _Amount:
    groups: list[_Group]  # the whole-number part as spoken
    fraction: str | None  # digits after "point", if any
    negative: bool


def _amount_runs(tokens: list[str]) -> list[tuple[int, int]]:
    """Spans of tokens that make up spoken amounts ("a hundred and twelve", "three point five")."""
    def part(i: int) -> bool:
        tok = tokens[i]
        if _is_numeral(tok) or tok in _NUMBER_WORDS or tok == "point":
            return True
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        prev = tokens[i - 1] if i > 0 else ""
        if tok == "a":
            return nxt in ("hundred", "thousand", "million")
        if tok == "and":  # only inside an amount: "a hundred and five", not "two and three"
            return prev in ("hundred", "thousand", "million") and (nxt in _NUMBER_WORDS or _is_numeral(nxt))
        if tok in ("oh", "o"):  # "point oh five", "ten oh five" (dollars and cents)
            return "point" in tokens[max(0, i - 3):i] or (prev in _NUMBER_WORDS and nxt in _UNITS)
        return False

    spans, start = [], None
    for i in range(len(tokens) + 1):
        inside = i < len(tokens) and part(i)
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _amount(tokens: list[str], start: int, end: int) -> _Amount | None:
    run = tokens[start:end]
    negative = start > 0 and tokens[start - 1] in ("minus", "negative")
    if run.count("point") > 1:
        return None
    if "point" in run:
        p = run.index("point")
        whole, frac = run[:p], run[p + 1:]
        fraction = _fraction_digits(frac)
        if not fraction:
            return None
    else:
        whole, fraction = run, None
    groups = _words_to_groups(["zero" if t in ("oh", "o") else t for t in whole]) if whole else []
    if groups is None or (whole and not groups):
        return None
    return _Amount(groups, fraction, negative)


def _single_amount(tokens: list[str]) -> tuple[_Amount | None, str | None]:
    spans = _amount_runs(tokens)
    if not spans:
        return None, "didn't hear a number"
    if len(spans) > 1:
        return None, "heard more than one number"
    amount = _amount(tokens, *spans[0])
    if amount is None:
        return None, "couldn't make sense of the number"
    return amount, None


def parse_number(text: str) -> ParseResult:
    """An int, or a float when a fraction was said ("three point five", "two and a half")."""
    amount, reason = _single_amount(_tokens(_prepare_amount_text(text)))
    if amount is None:
        return _fail(reason or "didn't hear a number")
    if len(amount.groups) > 1:
        # "two three" is more likely a correction than 23; ask rather than guess.
        return _fail("heard more than one number (" + ", ".join(g.text for g in amount.groups) + ")")
    whole = amount.groups[0].value if amount.groups else 0
    sign = -1 if amount.negative else 1
    if amount.fraction is None:
        return _ok(sign * whole)
    return _ok(sign * float(Decimal(f"{whole}.{amount.fraction}")))


_MAJOR_UNITS = frozenset("dollar dollars buck bucks pound pounds quid euro euros".split())
_MINOR_UNITS = frozenset("cent cents penny pennies pence".split())


def _money_text(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _decimal(amount: _Amount) -> Decimal | None:
    if len(amount.groups) > 1:
        return None
    whole = amount.groups[0].value if amount.groups else 0
    return Decimal(f"{whole}.{amount.fraction}") if amount.fraction else Decimal(whole)


def _cents_part(tokens: list[str]) -> tuple[int | None, str | None]:
    """The cents after "dollars": "and fifty cents", "fifty", "" -> (cents, reason)."""
    tokens = [t for t in tokens if t not in _MINOR_UNITS and t != "and"]
    if not _amount_runs(tokens):
        return 0, None  # "fifty dollars even", "ten bucks please"
    amount, reason = _single_amount(tokens)
    if amount is None or amount.fraction is not None or len(amount.groups) != 1:
        return None, reason or "couldn't make sense of the cents"
    cents = amount.groups[0].value
    if cents > 99:
        return None, f"{cents} cents is more than a dollar"
    return cents, None


_DOLLAR_SIGN_RE = re.compile(r"\$\s?(\d[\d,]*(?:\.\d+)?)")


def parse_money(text: str) -> ParseResult:
    """An amount as a string with two decimals: "forty two fifty" -> "42.50"."""
    # Whisper writes "twelve dollars and fifty cents" as "$12 and 50 cents": the "$" is the
    # major unit, said after the number.
    text = _DOLLAR_SIGN_RE.sub(r"\1 dollars ", text)
    tokens = [t for t in _tokens(_prepare_amount_text(text)) if t != "$"]
    tokens = ["thousand" if t == "grand" else t for t in tokens]
    # "a dollar fifty", "a buck twenty": the article is the amount.
    tokens = ["one" if t in ("a", "an") and i + 1 < len(tokens) and tokens[i + 1] in _MAJOR_UNITS else t
              for i, t in enumerate(tokens)]
    major = next((i for i, t in enumerate(tokens) if t in _MAJOR_UNITS), None)

    if major is not None:
        amount, reason = _single_amount(tokens[:major])
        if amount is None:
            return _fail(reason or "didn't hear an amount")
        dollars = _decimal(amount)
        if dollars is None:
            return _fail("heard more than one amount")
        cents, reason = _cents_part(tokens[major + 1:])
        if cents is None:
            return _fail(reason or "couldn't make sense of the cents")
        if amount.negative:
            return _fail("amount can't be negative")
        if cents and amount.fraction:
            return _fail("heard cents twice")
        return _checked_money(dollars + Decimal(cents) / 100)

    amount, reason = _single_amount(tokens)
    if amount is None:
        return _fail(reason or "didn't hear an amount")
    if amount.negative:
        return _fail("amount can't be negative")
    if any(t in _MINOR_UNITS for t in tokens):
        if amount.fraction is not None or len(amount.groups) != 1:
            return _fail("couldn't make sense of the cents")
        return _checked_money(Decimal(amount.groups[0].value) / 100)
    value = _decimal(amount)
    if value is None:
        value = _dollars_and_cents(amount.groups)
    if value is None:
        return _fail("couldn't tell the dollars from the cents")
    return _checked_money(value)


def _dollars_and_cents(groups: list[_Group]) -> Decimal | None:
    """ "forty two fifty" -> 42.50, "nineteen ninety nine" -> 19.99, "ten oh five" -> 10.05.

    Callers read prices the way they are printed, so "one fifty" is 1.50 as well; $150 is said
    "a hundred fifty" or "a hundred and fifty dollars".
    """
    head, rest = groups[0], groups[1:]
    if len(rest) == 1 and rest[0].two_digit_words:
        return Decimal(head.value) + Decimal(rest[0].value) / 100
    if len(rest) == 2 and rest[0].text == "0" and rest[1].kind in ("unit", "lit") and len(rest[1].text) == 1:
        return Decimal(head.value) + Decimal(int(rest[1].text)) / 100
    return None


def _checked_money(value: Decimal) -> ParseResult:
    if value != value.quantize(Decimal("0.01")):
        return _fail("amount has more than two decimal places")
    return _ok(_money_text(value))


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12,
    "dec": 12,
}
# Also verbs/modals ("may I book", "march in"): months only next to a day number.
_AMBIGUOUS_MONTHS = frozenset({"may", "march", "mar", "jan", "sep", "dec"})
# No three-letter forms: "sat", "sun", "wed" are ordinary words far more often than weekdays.
_WEEKDAYS = {
    "monday": 0, "tuesday": 1, "tues": 1, "wednesday": 2, "weds": 2, "thursday": 3, "thurs": 3,
    "friday": 4, "saturday": 5, "sunday": 6,
}
_MONTH_NAMES = ("january february march april may june july august september october november "
                "december").split()
_ORDINAL_NUMERAL_RE = re.compile(r"(\d{1,2})(st|nd|rd|th)")


def _day_at(tokens: list[str], i: int, ordinal_only: bool = False) -> tuple[int, int] | None:
    """A day of the month at tokens[i]: "5", "5th", "fifth", "twenty first", "twenty one".

    Returns (day, tokens used). `ordinal_only` accepts only "5th"/"fifth" forms, for a day said
    without a month, where a bare "five" is more likely something else.
    """
    if i >= len(tokens):
        return None
    tok = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    m = _ORDINAL_NUMERAL_RE.fullmatch(tok)
    if m:
        return int(m.group(1)), 1
    if tok.isdigit() and not ordinal_only and len(tok) <= 2:
        return int(tok), 1
    if tok in _ORDINALS:
        return _ORDINALS[tok], 1
    if tok in ("twenty", "thirty"):
        if nxt in _ORDINALS and _ORDINALS[nxt] < 10:
            return _TENS[tok] + _ORDINALS[nxt], 2
        if ordinal_only:
            return None
        if nxt in _UNITS and 0 < _UNITS[nxt] < 10:
            return _TENS[tok] + _UNITS[nxt], 2
        return _TENS[tok], 1
    if not ordinal_only and (tok in _TEENS or (tok in _UNITS and _UNITS[tok] > 0)):
        return _TEENS.get(tok) or _UNITS[tok], 1
    return None


def _year_at(tokens: list[str], i: int, two_digits: date | None = None) -> tuple[int, int] | None:
    """A year after the day: "2025", "twenty twenty five", "two thousand and twenty five"; with
    `two_digits` (today, for a date in the past), "65" and "sixty five" too (1965)."""
    if i < len(tokens) and re.fullmatch(r"(19|20)\d\d", tokens[i]):
        return int(tokens[i]), 1
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    clock = nxt in ("am", "pm", "oclock", "o'clock", "o") or (  # "10 am", "12 30"
        i < len(tokens) and _is_numeral(tokens[i]) and (_is_numeral(nxt) or nxt in _NUMBER_WORDS))
    if two_digits is not None and i < len(tokens) and not clock:
        if re.fullmatch(r"\d\d", tokens[i]):
            return _full_year(int(tokens[i]), two_digits, True), 1
        if tokens[i] in _TENS:
            unit = tokens[i + 1] if i + 1 < len(tokens) else ""
            ones = _UNITS.get(unit, 0) if unit in _UNITS and 0 < _UNITS[unit] < 10 else 0
            longer = _year_at(tokens, i)  # "nineteen sixty five" is read whole below
            if longer is None:
                return _full_year(_TENS[tokens[i]] + ones, two_digits, True), 1 + bool(ones)
    end = i
    while end < len(tokens) and (tokens[end] in _NUMBER_WORDS or tokens[end] in ("and", "oh")):
        end += 1
    for stop in range(end, i, -1):
        groups = _words_to_groups(["zero" if t == "oh" else t for t in tokens[i:stop]])
        if not groups:
            continue
        text = str(groups[0].value) if len(groups) == 1 else _concat(groups)
        if len(text) == 4 and 1900 <= int(text) <= 2199:
            return int(text), stop - i
    return None


def _year_before(tokens: list[str], i: int) -> tuple[int, int] | None:
    """A four-digit year said right before tokens[i]: "1965, March 3rd", "nineteen sixty five,
    March third"."""
    for start in range(max(0, i - 4), i):
        found = _year_at(tokens, start)
        if found and start + found[1] == i:
            return found
    return None


def _valid_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _next_date(today: date, month: int, day: int, past: bool = False) -> date | None:
    """The first `month`/`day` on or after today (callers are booking ahead, not looking back);
    `past`: the last one on or before today (a birth, an accident)."""
    years = range(today.year, today.year - 9, -1) if past else range(today.year, today.year + 9)
    for year in years:  # Feb 29 can be up to 8 years away
        d = _valid_date(year, month, day)
        if d and (d <= today if past else d >= today):
            return d
    return None


def _full_year(two_digits: int, today: date, past: bool = False) -> int:
    """A two-digit year: one up to ten years ahead (`past`: none ahead), else the last century
    ("65" is 1965; a birth in "30" is 1930)."""
    return two_digits + (2000 if two_digits <= today.year % 100 + (0 if past else 10) else 1900)


def _month_name(month: int) -> str:
    return _MONTH_NAMES[month - 1].capitalize()


def _explicit_date(today: date, month: int, day: int, year: int | None, past: bool = False) -> ParseResult:
    if year is not None:
        d = _valid_date(year, month, day)
    else:
        d = _next_date(today, month, day, past) if _valid_date(2000, month, day) else None
    if d is None:
        return _fail(f"{_month_name(month)} {day} isn't a real date")
    return _ok(d.isoformat())


def _numeric_date(text: str, today: date, past: bool = False) -> ParseResult | None:
    """Dates whisper wrote as numbers: ISO "2025-03-05", US "3/5", "3/5/25", "3-5-2025" and
    "3.5.25" (month first)."""
    m = re.search(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b", text)
    if m:
        y, mo, d = map(int, m.groups())
        return _ok(date(y, mo, d).isoformat()) if _valid_date(y, mo, d) else _fail("that isn't a real date")
    m = re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2}|\d{4}))?\b", text)
    dashed = re.search(r"\b(\d{1,2})([.-])(\d{1,2})\2(\d{2}|\d{4})\b", text)  # "3-3-1965", "3.3.65": with a year only
    if m:
        month, day, year = m.groups()
    elif dashed:
        month, _, day, year = dashed.groups()
    else:
        return None
    mo, d = int(month), int(day)
    if not 1 <= mo <= 12:
        return _fail("that isn't a real date")
    y = None if year is None else int(year) if len(year) == 4 else _full_year(int(year), today, past)
    return _explicit_date(today, mo, d, y, past)


def _date_read_as_digits(text: str, today: date, past: bool = False) -> ParseResult | None:
    """A date read as a number, month first as on US forms: "oh three fifteen" (0315), "three
    one five", "twelve twenty five", "oh four one two nineteen eighty" (04121980), "0 4 1 2 8 0"."""
    said = spoken_number(text)
    if said is None or said.among_words or not 3 <= len(said.digits) <= 8:
        return None
    digits = said.digits
    month_digits = 2 if len(digits) in (4, 6, 8) else 1
    month, day = int(digits[:month_digits]), int(digits[month_digits:month_digits + 2])
    rest = digits[month_digits + 2:]
    if not 1 <= month <= 12 or len(rest) not in (0, 2, 4):
        return None
    year = int(rest) if rest else None
    if rest and len(rest) == 2:  # a two-digit year: a birth year or one ahead, whichever is nearer
        year = _full_year(year, today, past)
    return _explicit_date(today, month, day, year, past)


_PERIOD_DAYS = {"day": 1, "days": 1, "week": 7, "weeks": 7, "fortnight": 14, "fortnights": 14}
_COUNT_WORDS = frozenset({"a", "an", "of", "about", "just", "couple"})


def _offset_days(tokens: list[str]) -> int | None:
    """ "in three days", "3 days from now", "in a couple of weeks", "a week from today" -> days;
    "three days ago", "a week ago" -> minus days."""
    for k, tok in enumerate(tokens):
        if tok not in _PERIOD_DAYS:
            continue
        start = k
        while start > 0 and (tokens[start - 1] in _NUMBER_WORDS or _is_numeral(tokens[start - 1])
                             or tokens[start - 1] in _COUNT_WORDS):
            start -= 1
        if start == k and k > 0 and tokens[k - 1] not in ("in", "within"):
            return None  # "a few days ago", "several weeks from now": how many is not said
        after = tokens[k + 1:k + 3]
        ago = after[:1] == ["ago"]
        ahead = (start > 0 and tokens[start - 1] in ("in", "within")) or after in (["from", "now"], ["from", "today"])
        if not (ago or ahead):
            continue  # "the day after tomorrow", "next week": not an offset from today
        count = [t for t in tokens[start:k] if t not in ("a", "an", "of", "about", "just")]
        if not count:
            n = 1  # "in a week"
        elif count == ["couple"]:
            n = 2
        else:
            n = _single_number(count) if all(t in _NUMBER_WORDS or _is_numeral(t) for t in count) else None
            if n is None:
                return None
        return -n * _PERIOD_DAYS[tok] if ago else n * _PERIOD_DAYS[tok]
    return None


_DAY_PHRASES = (("day after tomorrow", 2), ("day before yesterday", -2), ("tomorrow", 1), ("today", 0),
                ("tonight", 0), ("this morning", 0), ("this afternoon", 0), ("this evening", 0),
                ("yesterday", -1), ("last night", -1))
# The first day the line can offer, for a caller who wants it soon rather than on a day.
_SOONEST = re.compile(r" (as soon as (possible|you can)|asap|a s a p|earliest|soonest|first (available|opening)|"
                      r"next available|whenever is soonest) ")


def _offset_date(tokens: list[str], today: date, past: bool = False) -> ParseResult | None:
    offset = _offset_days(tokens)
    return None if offset is None else _ok((today + timedelta(days=offset)).isoformat())


def _relative_date(tokens: list[str], today: date, past: bool = False) -> ParseResult | None:
    """ "tomorrow", "last night", "as soon as possible": read after the days named, so that "I
    called this morning, can I move it to Friday" is Friday and "the next available Tuesday" a
    Tuesday."""
    padded = _words(tokens)
    for phrase, offset in _DAY_PHRASES:
        if f" {phrase} " in padded:
            return _ok((today + timedelta(days=offset)).isoformat())
    if not past and _SOONEST.search(padded):
        return _ok(today.isoformat())
    return None


def _month_day(tokens: list[str], today: date, past: bool = False) -> ParseResult | None:
    """ "march 5th", "march the fifth", "the fifth of march", "5 march 2025", "december twenty first".
    A month without a day is a span of days (`_date_span`)."""
    words = [t for t in tokens if t not in ("the", "of", "on")]
    for i, tok in enumerate(words):
        if tok not in _MONTHS:
            continue
        month = _MONTHS[tok]
        after = _day_at(words, i + 1)
        before = None
        for back in (2, 1):
            if i - back >= 0:
                found = _day_at(words, i - back)
                if found and found[1] == back:
                    before = found
                    break
        two_digits = today if past else None  # "March 3rd, sixty five": a birth's year
        if after and (after[0] > 31 or (before and _year_at(words, i + 1, two_digits))):
            # "the twelfth of April twenty twenty seven": the day came first, what follows the
            # month is the year, not "April 20"
            after = None
        if after:
            day, used = after
            year = _year_at(words, i + 1 + used, two_digits)
        elif before:
            day = before[0]
            year = _year_at(words, i + 1, two_digits)
        else:
            continue
        if year is None:
            year = _year_before(words, i - (before[1] if before and not after else 0))
        return _explicit_date(today, month, day, year[0] if year else None, past)
    return None


def _day_of_month(tokens: list[str], today: date, past: bool = False) -> ParseResult | None:
    """ "on the 12th": this month, or next month once the 12th has passed (`past`: this month,
    or last month while the 12th is still to come)."""
    for i, tok in enumerate(tokens):
        found = _day_at(tokens, i, ordinal_only=True)
        # A spelled ordinal needs "the" or to open the answer: "wait a second" is not the 2nd;
        # nor is "the third time I'm calling".
        if not found or (tok.isalpha() and i > 0 and tokens[i - 1] not in ("the", "on")) or \
                tokens[i + found[1]:i + found[1] + 1] in (["time"], ["times"]):
            continue
        day = found[0]
        if not 1 <= day <= 31:
            return _fail(f"there's no day {day} in a month")
        year, month = today.year, today.month
        for _ in range(13):
            d = _valid_date(year, month, day)
            if d and (d <= today if past else d >= today):
                return _ok(d.isoformat())
            if past:
                year, month = (year - 1, 12) if month == 1 else (year, month - 1)
            else:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _weekday(tokens: list[str], today: date, past: bool = False) -> ParseResult | None:
    """ "tuesday", "this tuesday", "next tuesday", "tuesday next week", "last tuesday" (`past`: a
    bare "tuesday" is the last one)."""
    padded = _words(tokens)
    monday = today - timedelta(days=today.weekday())
    for i, tok in enumerate(tokens):
        if tok not in _WEEKDAYS or (i > 0 and tokens[i - 1] in ("not", "except")):
            continue  # "not Monday, Tuesday"
        wd = _WEEKDAYS[tok]
        if " last week " in padded:
            return _ok((monday - timedelta(days=7 - wd)).isoformat())
        if " next week " in padded or " week after next " in padded:
            weeks = 2 if " week after next " in padded else 1
            return _ok((monday + timedelta(days=wd + 7 * weeks)).isoformat())
        prev = tokens[i - 1] if i > 0 else ""
        if past or prev in ("last", "past"):
            back = (today.weekday() - wd) % 7
            if back == 0 and not (past and prev == "this"):
                back = 7  # "last tuesday" said on a Tuesday is a week ago
            return _ok((today - timedelta(days=back)).isoformat())
        ahead = (wd - today.weekday()) % 7
        if ahead == 0 and prev != "this":
            ahead = 7  # "tuesday" said on a Tuesday means next week; today would be "today"
        if prev in ("after", "from") and i >= 2 and tokens[i - 2] == "week":
            ahead += 7  # "a week from tuesday"
        return _ok((today + timedelta(days=ahead)).isoformat())
    return None


@dataclass(frozen=True)
class DateSpan:
    """Days a caller named without naming one ("next week", "in March", "the weekend"): the line
    asks `question`, and the answer ("Tuesday", "the 12th") is read as a day among them."""

    first: date
    last: date
    said: str
    """How the caller named them: "next week", "in March", "the weekend"."""

    @property
    def question(self) -> str:
        return "Saturday or Sunday?" if self.said == "the weekend" else f"Which day {self.said}?"

    def days(self) -> list[date]:
        return [self.first + timedelta(days=k) for k in range((self.last - self.first).days + 1)]

    @classmethod
    def month_of(cls, day: str) -> "DateSpan":
        """The month of an ISO date: what "the 4th" corrects in "March 3rd 1965, no, the 4th"."""
        d = date.fromisoformat(day)
        return cls(d.replace(day=1), _month_end(d.year, d.month), f"in {_month_name(d.month)}")


# Before an ambiguous month name ("may", "march"), words that make it the month.
_MONTH_BEFORE = frozenset("in of early mid late end beginning start sometime during until till through".split())


def _month_end(year: int, month: int) -> date:
    return (date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)) - timedelta(days=1)


def _span_of_month(tokens: list[str], today: date, past: bool, within: bool = False) -> tuple[date, date, str] | None:
    """The days of a month named ("in March", "next month"): (first, last, how it was said)."""
    padded = _words(tokens)
    first_of = today.replace(day=1)
    if " next month " in padded:
        start = _month_end(today.year, today.month) + timedelta(days=1)
        return start, _month_end(start.year, start.month), "next month"
    if " last month " in padded:
        start = (first_of - timedelta(days=1)).replace(day=1)
        return start, _month_end(start.year, start.month), "last month"
    if " later this month " in padded:
        return today, _month_end(today.year, today.month), "this month"
    if any(f" {p} " in padded for p in ("this month", "end of the month", "end of this month")):
        return first_of, _month_end(today.year, today.month), "this month"
    for i, tok in enumerate(tokens):
        cued = i > 0 and tokens[i - 1] in _MONTH_BEFORE
        # in a sentence, a month alone may be a name ("June Carter", "April Jones"): "in June" is not
        if tok not in _MONTHS or (not cued and (within or (tok in _AMBIGUOUS_MONTHS and len(tokens) > 1))):
            continue
        month = _MONTHS[tok]
        said = _year_at(tokens, i + 1)
        if said:
            year = said[0]
        elif past:
            year = today.year if month <= today.month else today.year - 1
        else:
            year = today.year if month >= today.month else today.year + 1
        return date(year, month, 1), _month_end(year, month), f"in {_month_name(month)}"
    return None


def _date_span(tokens: list[str], today: date, past: bool, within: bool = False) -> DateSpan | date | None:
    """The days meant by "next week", "this weekend", "in March", "next month" (`past`: "last
    week", or a month gone by); only those not yet gone (`past`: already gone). One day left is
    that day."""
    padded = _words(tokens)
    monday = today - timedelta(days=today.weekday())
    found: tuple[date, date, str] | None = None
    if " weekend " in padded:
        if " last weekend " in padded:
            saturday = monday - timedelta(days=2)
        elif " next weekend " in padded:
            saturday = monday + timedelta(days=12)
        else:
            saturday = monday + timedelta(days=5) if not past or today.weekday() >= 5 else monday - timedelta(days=2)
        found = (saturday, saturday + timedelta(days=1), "the weekend")
    else:
        for phrase, start, label in ((" week after next ", monday + timedelta(days=14), "the week after next"),
                                     (" next week ", monday + timedelta(days=7), "next week"),
                                     (" last week ", monday - timedelta(days=7), "last week"),
                                     (" later this week ", today, "this week"), (" this week ", monday, "this week"),
                                     (" end of the week ", monday, "this week")):
            if phrase in padded:
                found = (start, start + timedelta(days=6), label)
                break
        else:
            found = _span_of_month(tokens, today, past, within)
    if found is None:
        return None
    first, last, label = found
    # Only days not yet gone (`past`: already gone), unless the words say which: "last week".
    if last < today or (past and first <= today):
        last = min(last, today)
    else:
        first = max(first, today)
    if first > last:
        return None
    if first == last:
        return first
    return DateSpan(first, last, label)


_AROUND_A_DAY = frozenset("the on maybe say um uh how about let's lets make it probably please then i guess".split())


def _narrowed(tokens: list[str], span: DateSpan) -> date | ParseResult | None:
    """An answer to a span's question: a weekday among its days ("Tuesday", within a week), or a
    day of the month among them ("the 12th", "twelve"); a day of the month not among them is
    asked about again (a failed result)."""
    days = span.days()
    weekdays = {_WEEKDAYS[t] for t in tokens if t in _WEEKDAYS}
    if len(weekdays) == 1 and len(days) <= 7:
        return next((d for d in days if d.weekday() in weekdays), None)
    if any(t in _MONTHS for t in tokens):
        return None  # a month said again: the answer is read on its own
    words = [t for t in tokens if t not in _AROUND_A_DAY]
    found = _day_at(words, 0) if words else None
    if found is None or found[1] != len(words):
        return None
    matches = [d for d in days if d.day == found[0]]
    if len(matches) != 1:  # "the 30th" asked which day in February, "the 5th" once it has gone
        return ParseResult(False, None, span.question, span)
    return matches[0]


def parse_date(text: str, *, today: date | None = None, within: bool = False, past: bool = False,
               span: DateSpan | None = None) -> ParseResult:
    """An ISO date. Bare weekdays and month-days resolve to the next one, because callers book
    ahead; `past` (a birth, an accident), to the last one. `within`: the words are part of a longer
    sentence, where "125" is not January 25th. Days named without one ("next week", "in March")
    are no date: the result's `span` holds them and its `reason` the question that narrows them,
    and the answer to it is parsed with that `span`."""
    today = today or date.today()
    numeric = _numeric_date(_normalise(text), today, past)
    if numeric is not None:
        return numeric
    tokens = _tokens(text)
    if span is not None and (day := _narrowed(tokens, span)) is not None:
        return _ok(day.isoformat()) if isinstance(day, date) else day
    if span is not None and len(span.days()) > 7 and any(t in _WEEKDAYS for t in tokens) and not any(
            t in _MONTHS for t in tokens):
        # "Tuesday", asked which day in March: one of four
        return ParseResult(False, None, f"Which date {span.said}?", span)
    for matcher in (_offset_date, _month_day, _day_of_month, _weekday, _relative_date):
        result = matcher(tokens, today, past)
        if result is not None:
            return result
    found = _date_span(tokens, today, past, within)
    if isinstance(found, date):
        return _ok(found.isoformat())
    if found is not None:
        return ParseResult(False, None, found.question, found)
    return (None if within else _date_read_as_digits(text, today, past)) or _fail("didn't hear a date")


# --------------------------------------------------------------------------------------------
# Times
#
# Without "am"/"pm" or "in the morning", an hour is read as business hours: 1-7 -> afternoon or
# evening (13:00-19:00), 8-11 -> morning, 12 -> noon. Callers booking "at three" mean 15:00,
# nobody means 3 a.m. The hour that is *named* decides: "quarter to eight" is 07:45 (8 is a
# morning hour), "quarter past seven" is 19:15. 0 and 13-23 are already 24-hour.
# --------------------------------------------------------------------------------------------

_AM_WORDS = frozenset({"morning"})
_PM_WORDS = frozenset({"afternoon", "evening"})
_NIGHT_WORDS = frozenset({"night", "tonight"})
_RELATIVE_AFTER = frozenset({"past", "after"})
_RELATIVE_BEFORE = frozenset({"to", "till", "til", "before", "of"})


# A house number and its street ("outside my house at 12 Oak Lane"): no time in it.
_STREET_ADDRESS = re.compile(
    r"\b\d+\s+(?!(?:on|at|in|by|to|for|and|or|the|a|pm|am|oclock|o'clock|thirty|fifteen|forty|o)\b)[a-z]+"
    r"(?:\s+[a-z]+){0,2}\s+(?:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|"
    r"parkway|pkwy|highway|hwy|terrace|circle|square)\b")


def _prepare_time_text(text: str) -> str:
    s = _STREET_ADDRESS.sub(" ", _normalise(text))
    s = re.sub(r"\b([ap])\s*\.?\s*m\b\.?", r" \1m ", s)  # "p.m.", "p m", "PM" -> "pm"
    s = re.sub(r"(\d)([ap]m)\b", r"\1 \2", s)  # "7pm" -> "7 pm"
    s = re.sub(r"\bo\s*'?\s*clock\b", " oclock ", s)
    return s


def _without_years(tokens: list[str]) -> list[str]:
    """The tokens less a date's year: "March 3rd 2027" carries no time (not 20:27)."""
    def dated(i: int) -> bool:
        return any(t in _MONTHS or t in _ORDINALS or _ORDINAL_NUMERAL_RE.fullmatch(t) for t in tokens[max(0, i - 2):i])

    return [t for i, t in enumerate(tokens) if not (re.fullmatch(r"(?:19|20)\d\d", t) and dated(i))]


def _period(tokens: list[str]) -> tuple[str | None, str | None]:
    """(period, reason): am/pm said after a number, or the part of the day named."""
    found = set()
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i > 0 else ""
        if tok in ("am", "pm") and (_is_numeral(prev) or prev in _NUMBER_WORDS or prev in ("oclock", "o")):
            found.add(tok)
        elif tok in _AM_WORDS:
            found.add("am")
        elif tok in _PM_WORDS:
            found.add("pm")
        elif tok in _NIGHT_WORDS:
            found.add("night")
    if len(found) > 1:
        return None, "heard both morning and afternoon"
    return (found.pop() if found else None), None


def _to_24h(hour: int, period: str | None) -> int | None:
    if hour == 24 and period is None:
        return 0
    if hour < 0 or hour > 23:
        return None
    if period is None:
        if 1 <= hour <= 7:
            return hour + 12
        return hour
    if hour == 0 or hour > 12:
        return hour if period != "am" else None
    if period == "am":
        return 0 if hour == 12 else hour
    if period == "pm":
        return 12 if hour == 12 else hour + 12
    return 0 if hour == 12 else (hour + 12 if hour >= 6 else hour)  # "at night": 11 pm, 2 am


def _hhmm(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


def _relative_time(tokens: list[str], period: str | None) -> ParseResult | None:
    """ "half past two", "quarter to five", "ten after six", "twenty five minutes to three"."""
    for j, tok in enumerate(tokens):
        if tok not in _RELATIVE_AFTER and tok not in _RELATIVE_BEFORE:
            continue
        left = tokens[:j]
        while left and left[-1] in ("minutes", "minute"):
            left = left[:-1]
        said_minutes = len(left) < j
        if left and left[-1] in ("half", "quarter"):
            minutes = 30 if left[-1] == "half" else 15
        else:
            k = len(left)
            while k > 0 and (left[k - 1] in _NUMBER_WORDS or _is_numeral(left[k - 1])):
                k -= 1
            minutes = _single_number(left[k:]) if k < len(left) else None
            # "two to three" is a range, not 2:58; real "N to" times are round or say "minutes".
            if minutes is None or not 1 <= minutes <= 59 or (minutes % 5 and not said_minutes):
                continue
        right, k = tokens[j + 1:], 0
        while k < len(right) and (right[k] in _NUMBER_WORDS or _is_numeral(right[k])):
            k += 1
        hour = _single_number(right[:k]) if k else None
        if hour is None:
            continue
        sign = 1 if tok in _RELATIVE_AFTER else -1
        if period is not None and sign < 0 and 1 <= hour <= 12:
            # "quarter to twelve in the morning" is 11:45 am: the period belongs to the time
            # said, which lies in the hour before the one named.
            before = 12 if hour == 1 else hour - 1
            hour24 = _to_24h(before, period)
            if hour24 is None:
                return _fail(f"{hour} {period} isn't a time")
            return _ok(_hhmm(hour24, 60 - minutes))
        hour24 = _to_24h(hour, period)
        if hour24 is None:
            return _fail(f"{hour} {period} isn't a time")
        total = (hour24 * 60 + sign * minutes) % (24 * 60)
        return _ok(_hhmm(total // 60, total % 60))
    return None


def _clock_time(hour: int, minute: int, period: str | None, explicit_24h: bool = False) -> ParseResult:
    if not 0 <= minute <= 59:
        return _fail(f"{minute} isn't a valid minute")
    hour24 = hour if explicit_24h and 0 <= hour <= 23 else _to_24h(hour, period)
    if hour24 is None:
        return _fail(f"{hour} {period or ''} isn't a valid hour".replace("  ", " "))
    return _ok(_hhmm(hour24, minute))


def _spoken_time(tokens: list[str], period: str | None) -> ParseResult | None:
    """ "three thirty", "ten oh five", "fourteen hundred (hours)", "1530", "3 30", "at 9"."""
    def numberish(t: str) -> bool:
        return t in _NUMBER_WORDS or _is_numeral(t)

    # "oh" is zero only beside a number: "ten oh five", "oh nine hundred".
    tokens = ["zero" if t in ("oh", "o") and (numberish(tokens[i - 1] if i else "")
                                              or numberish(tokens[i + 1] if i + 1 < len(tokens) else ""))
              else t for i, t in enumerate(tokens)]
    runs = _digit_runs(tokens, homophones=False)
    if not runs:
        return None
    if len(runs) > 1:
        return _fail("heard more than one time")
    run = runs[0]
    groups = _groups([it for it in map(_item, run) if it is not None])
    if not groups:
        return None
    hours_said = " hours " in _words(tokens)  # "seven hundred hours" is the 24-hour clock
    if len(groups) == 1:
        return _one_number_time(groups[0], period, hours_said)
    if groups[0].text == "0":  # "oh nine hundred", "zero nine thirty"
        digits = _concat(groups)
        if len(digits) != 4:
            return _fail("didn't hear a time")
        return _clock_time(int(digits[:2]), int(digits[2:]), period, explicit_24h=True)
    minutes = _concat(groups[1:])
    if len(minutes) != 2:
        return _fail("didn't hear a time")
    return _clock_time(groups[0].value, int(minutes), period, explicit_24h=hours_said)


def _one_number_time(group: _Group, period: str | None, hours_said: bool) -> ParseResult:
    """ "at 9", "fourteen hundred", "1530", "0930"."""
    digits = group.text
    if len(digits) <= 2:
        return _clock_time(group.value, 0, period)
    if len(digits) > 4:
        return _fail("didn't hear a time")
    hour, minute = int(digits[:-2]), int(digits[-2:])
    # A leading zero or an hour past 12 means the caller is already on the 24-hour clock.
    explicit = hours_said or digits.startswith("0") or hour > 12
    return _clock_time(hour, minute, period, explicit_24h=explicit)


def parse_time(text: str) -> ParseResult:
    """ "HH:MM" on a 24-hour clock; see the business-hours rule above for hours said without am/pm."""
    s = _prepare_time_text(text)
    tokens = _without_years(_tokens(s))
    words = _words(tokens)
    period, reason = _period(tokens)
    if reason:
        return _fail(reason)
    if " midnight " in words:
        return _ok("00:00")
    other_numbers = [t for t in tokens if (t in _NUMBER_WORDS or _is_numeral(t)) and t not in ("twelve", "12")]
    if re.search(r" (noon|midday) ", words) and not other_numbers:
        return _ok("12:00")  # "noon", "twelve noon"
    m = re.search(r"\b(\d{1,2})[:.](\d{2})\b", s)
    if m:
        # Whisper writes "07:00" only when the caller said a 24-hour time.
        return _clock_time(int(m.group(1)), int(m.group(2)), period, explicit_24h=m.group(1).startswith("0"))
    m = re.search(r" half (\S+) ", words)
    if m and " past " not in words and (m.group(1) in _NUMBER_WORDS or _is_numeral(m.group(1))):
        hour = _single_number([m.group(1)])
        if hour is not None and hour <= 12:
            hour24 = _to_24h(hour, period)  # British "half ten" is 10:30
            if hour24 is not None:
                return _ok(_hhmm(hour24, 30))
    relative = _relative_time(tokens, period)
    if relative is not None:
        return relative
    spoken = _spoken_time(tokens, period)
    if spoken is not None:
        return spoken
    return _fail("didn't hear a time")


# --------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------

_EMAIL_LEAD_IN = re.compile(
    r"^(?:(?:uh|um|er|so|yeah|yes|sure|okay|ok|oh|well|it's|it is|its|my|email|e-mail|e mail|"
    r"address|is|that's|that is|it'll be|it would be)\b[\s,.:]*)+"
)
_EMAIL_TRAILER = re.compile(r"(?:[\s,.]+(?:thank you|thanks|please|cheers))+[\s.!]*$")
# Instructions callers add while spelling; they are not part of the address.
_EMAIL_NOISE = re.compile(
    r"\b(?:all (?:in )?lower ?case|lower ?case|upper ?case|all one word|one word|no spaces|"
    r"capital|small letter)\b"
)
_EMAIL_SYMBOLS = {
    "dot": ".", "period": ".", "point": ".", "underscore": "_", "dash": "-", "hyphen": "-",
    "plus": "+",
}
_EMAIL_PHRASES = (
    (r"at the rate(?: of)?", " at "),  # how the @ is said in Indian English
    (r"at (?:sign|symbol)", " at "),
    (r"full stop", " dot "),
    (r"under score", " underscore "),
    (r"double[- ]?(?:you|u)", " w "),  # the letter w, not "uu"
)
# Letter names whisper writes when a caller spells ("jay oh aitch en"); only read as letters
# next to other single letters, so "are" or "you" inside an ordinary address stay words.
_LETTER_NAMES = {
    "ay": "a", "bee": "b", "be": "b", "see": "c", "sea": "c", "cee": "c", "dee": "d", "ee": "e",
    "eff": "f", "ef": "f", "gee": "g", "aitch": "h", "eye": "i", "jay": "j", "kay": "k", "el": "l",
    "ell": "l", "em": "m", "en": "n", "pee": "p", "pea": "p", "cue": "q", "queue": "q", "are": "r",
    "ar": "r", "ess": "s", "es": "s", "tee": "t", "tea": "t", "you": "u", "vee": "v", "ex": "x",
    "why": "y", "zee": "z", "zed": "z",
}
_DOMAIN_ALIASES = {"g-mail": "gmail", "hot-mail": "hotmail", "e-mail": "email"}
_EMAIL_RE = re.compile(r"[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")


def _email_tokens(text: str) -> list[str]:
    s = _normalise(text).strip()
    s = _EMAIL_LEAD_IN.sub("", s)
    s = _EMAIL_TRAILER.sub("", s)
    s = _EMAIL_NOISE.sub(" ", s)
    for phrase, repl in _EMAIL_PHRASES:
        s = re.sub(rf"\b{phrase}\b", repl, s)
    tokens = []
    for raw in re.split(r"[\s,;:!?\"()<>]+", s):
        tok = raw.strip(".'")  # sentence punctuation whisper puts around words
        if not tok:
            continue
        tok = _DOMAIN_ALIASES.get(tok, tok)
        parts = tok.split("-")
        if len(parts) > 1 and all(len(p) == 1 for p in parts):
            tok = "".join(parts)  # spelled out "J-O-H-N"
        tokens.append(tok)
    return tokens


def _is_spelled(tokens: list[str], i: int) -> bool:
    def letterish(j: int) -> bool:
        if not 0 <= j < len(tokens):
            return False
        tok = tokens[j]
        return (len(tok) == 1 and tok.isalpha()) or tok in _LETTER_NAMES or tok == "oh"
    return letterish(i - 1) or letterish(i + 1)


def parse_email(text: str) -> ParseResult:
    """A lower-case address from "john dot smith at gmail dot com" or a spelled-out one."""
    tokens = _email_tokens(text)
    # "as in": "b as in boy" spells b; drop the example word.
    i, cleaned = 0, []
    while i < len(tokens):
        if tokens[i] == "as" and i + 2 < len(tokens) and tokens[i + 1] == "in":
            i += 3
            continue
        cleaned.append(tokens[i])
        i += 1
    tokens = cleaned
    has_at_symbol = any("@" in t for t in tokens)
    at_positions = [i for i, t in enumerate(tokens) if t == "at"]
    at_index = at_positions[-1] if at_positions and not has_at_symbol else None

    pieces: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if i == at_index:
            pieces.append("@")
        elif tok in _EMAIL_SYMBOLS:
            pieces.append(_EMAIL_SYMBOLS[tok])
        elif tok in ("double", "triple") and nxt:
            letter = _LETTER_NAMES.get(nxt, nxt)
            if nxt in _UNITS:
                letter = str(_UNITS[nxt])
            pieces.append(letter * (2 if tok == "double" else 3))
            i += 1
        elif tok == "oh":
            near_digit = any(t in _UNITS or t.isdigit() for t in (tokens[i - 1] if i else "", nxt))
            pieces.append("0" if near_digit else "o")
        elif tok in _NUMBER_WORDS:
            j = i
            while j < len(tokens) and tokens[j] in _NUMBER_WORDS:
                j += 1
            pieces.append(_concat(_words_to_groups(tokens[i:j]) or []))
            i = j
            continue
        elif tok in _LETTER_NAMES and _is_spelled(tokens, i):
            pieces.append(_LETTER_NAMES[tok])
        else:
            pieces.append(re.sub(r"[^a-z0-9._%+@-]", "", tok))
        i += 1
    address = "".join(pieces).strip(".")
    if "@" not in address:
        return _fail("didn't hear an '@' (say 'at')")
    local, _, domain = address.partition("@")
    if not local:
        return _fail("didn't hear the part before the 'at'")
    if "." not in domain:
        return _fail("the part after 'at' needs a domain, like gmail dot com")
    if ".." in address or not _EMAIL_RE.fullmatch(address) or local.startswith(".") or local.endswith("."):
        return _fail(f"'{address}' doesn't look like an email address")
    return _ok(address)


# --------------------------------------------------------------------------------------------
# Free text and choices
# --------------------------------------------------------------------------------------------

# Whisper's well-known hallucinations on silence or line noise; they are not something the caller said.
_SILENCE_HALLUCINATIONS = frozenset({
    "thanks for watching", "thank you for watching", "please subscribe",
    "subtitles by the amara org community", "you",
})


def parse_text(text: str, *, name: bool = False, address: bool = False) -> ParseResult:
    """The caller's words, whitespace-tidied; not ok only when nothing but fillers was said.
    `name`: the slot holds a name, so "my name is Maria Lopez, thanks" is "Maria Lopez";
    `address`: an address, so "it's 379 Gellert Boulevard, thanks" is "379 Gellert Boulevard"."""
    cleaned = " ".join((text or "").split())
    words = _tokens(cleaned)
    if not words or " ".join(words) in _SILENCE_HALLUCINATIONS:
        return _fail("didn't hear anything")
    if non_answer(cleaned):  # "hold on a second", "no idea, sorry": no plate, no medication
        return _fail("no answer")
    if name:
        bare = _NAME_TRAILER.sub("", _NAME_FOR.sub("", _NAME_LEAD_IN.sub("", cleaned))).strip(" ,.;:!?")
        # "it's for my daughter", "my name is", "for my son, I don't know", "for my son's appointment"
        if not _tokens(bare) or non_answer(bare) or bare.startswith("'"):
            return _fail("didn't hear a name")
        return _ok(bare)
    if address:
        bare = _ADDRESS_TRAILER.sub("", _ADDRESS_LEAD_IN.sub("", cleaned)).strip(" ,.;:!?")
        if _tokens(bare):
            return _ok(bare)
    return _ok(cleaned)


# What callers say around an address they are asked for.
_ADDRESS_LEAD_IN = re.compile(
    r"^(?:(?:uh|um|er|erm|so|yeah|yes|yep|sure|okay|ok|oh|well|right)\b[\s,.]*)*"
    r"(?:(?:(?:my|the|our|his|her|their)\s+)?(?:(?:home|delivery|street|mailing|billing|new)\s+)?address(?:'s|\s+is)?"
    r"|it's at|it is at|it's|it is|that's|that is|that'd be|i'm at|i am at|we're at|we are at|i live at|we live at"
    r"|(?:please\s+)?(?:send|deliver|bring|ship|mail) it to)\b[\s,.:]*",
    re.IGNORECASE)
_ADDRESS_TRAILER = re.compile(r"(?:[\s,.]+(?:thank you|thanks|please|cheers))+[\s.!]*$", re.IGNORECASE)


# What callers say around a name they are asked for; never part of it.
_NAME_LEAD_IN = re.compile(
    r"^(?:(?:uh|um|er|erm|so|yeah|yes|yep|sure|okay|ok|oh|well|right|hi|hello)\b[\s,.]*)*"
    r"(?:(?:(?:my|the|his|her|their|our|the patient's|the caller's)\s+)?(?:(?:full|first|last|sur)\s*)?name(?:'s|\s+is)?"
    r"|it's|it is|its|this is|i'm|i am|that's|that is|that'd be|it'd be|it would be|it'll be|call me)\b[\s,.:]*",
    re.IGNORECASE)
# "(it's) for my husband, Robert Chen", "I'm calling for my son, he's called Leo", "under my
# mom's name, Ana Diaz", "it's for me, John Smith"
_RELATIONS = (r"husband|wife|partner|spouse|son|daughter|child|kid|baby|mother|mom|mum|father|dad|parent|"
              r"grandmother|grandma|grandfather|grandpa|grandson|granddaughter|grandchild|brother|sister|aunt|"
              r"uncle|niece|nephew|friend|neighbou?r|roommate|boss|patient|client")
_NAME_FOR = re.compile(
    r"^(?:(?:i'm |i am )?calling (?:for|on behalf of)\s+|(?:for|under)\s+)"
    r"(?:(?:(?:my|our|the)\s+)?(?:" + _RELATIONS + r")(?:'s name\b|\s+name\b)?\b|me\b|myself\b)?[\s,.:]*"
    r"(?:(?:(?:his|her|their)\s+name(?:'s|\s+is)|he's(?:\s+called)?|she's(?:\s+called)?|he is|she is|named|called)\b[\s,.:]*)?",
    re.IGNORECASE)
# ", that's S M I T H", ", spelled J O N", ", thanks"
_NAME_TRAILER = re.compile(r"(?:[\s,.]+(?:(?:that's|that is|spelled|spelt)\b.*|thank you|thanks|please|cheers"
                           r"|(?:and )?(?:my|his|her|the) (?:phone |cell |call ?back )?(?:number|phone|date of birth|"
                           r"birthday|dob|address|email)\b.*))+[\s.!]*$",
                           re.IGNORECASE)


def _phrase_key(phrase: str) -> str:
    return " ".join(_TOKEN_RE.findall(_normalise(phrase).replace("_", " ")))


_NEGATIONS = frozenset("not no never isn't isnt wasn't wasnt without don't dont".split())
_ARTICLES = frozenset("a an the really very that too".split())


_CLAUSED_TOKEN_RE = re.compile(r"[,;.!?](?!\d)|" + _TOKEN_RE.pattern)


def negated(before: str) -> bool:
    """Whether the words just before a phrase, in its clause, negate it ("not an", "no", "isn't
    really"; not the "not" of "not unlimited | basic")."""
    words = [w for w in before.rsplit("|", 1)[-1].split() if w not in _ARTICLES]
    return any(w in _NEGATIONS for w in words[-2:])


AMBIGUOUS = "heard more than one option"


def parse_enum(text: str, *, choices: dict[str, list[str]] | None = None) -> ParseResult:
    """The key of `choices` whose synonym the caller said; the longest phrase wins, ties fail."""
    if not choices:
        raise ValueError("an enum slot needs choices (key: [synonyms])")
    # a clause break is kept as "|": no phrase spans it, and no negation reaches over it ("not
    # unlimited, basic" is basic)
    padded = _words(["|" if t in ",;.!?" else t for t in _CLAUSED_TOKEN_RE.findall(_normalise(text))])
    matches: list[tuple[int, int, int, str]] = []  # (start, end, words, key)
    for key, synonyms in choices.items():
        for phrase in [key, *synonyms]:
            norm = _phrase_key(str(phrase))
            if not norm:
                continue
            for m in re.finditer(re.escape(f" {norm} "), padded):
                # Positions in characters; the padding spaces are shared between neighbours.
                matches.append((m.start(), m.end() - 1, len(norm.split()), key))
    if not matches:
        return _fail("didn't hear one of the options")
    # "it's not an emergency", "not flooding, just dripping": a choice said after a negation
    # is what the caller's case is not (unless a longer synonym holds the negation: "not urgent").
    said = [m for m in matches if not negated(padded[:m[0]])
            or any(o[0] < m[0] and m[1] <= o[1] for o in matches)]
    if not said:
        return _fail("heard only what it is not (" + ", ".join(sorted({m[3] for m in matches})) + ")")
    matches = said
    # A match inside a longer one ("support" in "technical support") is not a separate mention.
    outer = [a for a in matches
             if not any(b[0] <= a[0] and a[1] <= b[1] and (b[1] - b[0]) > (a[1] - a[0]) for b in matches)]
    longest = max(m[2] for m in outer)
    keys = sorted({m[3] for m in outer if m[2] == longest})
    if len(keys) > 1:
        return _fail(f"{AMBIGUOUS} (" + ", ".join(keys) + ")")
    return _ok(keys[0])


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

def parse_slot(slot_type: str, text: str, *, length: int | None = None, min_length: int | None = None,
               max_length: int | None = None, choices: dict[str, list[str]] | None = None,
               today: date | None = None, within: bool = False, name: bool = False, address: bool = False,
               past: bool = False, span: DateSpan | None = None) -> ParseResult:
    """Parse `text` as `slot_type`. Length limits apply to digits and phone only (counts of digits).
    `within`: the words are a window of a longer sentence (ivr.nlu.extract), not an answer on its
    own, so readings only an answer can mean are off (a date read as a number, a pause as a point).
    `name`, `address`: a text slot that holds a name or an address (the words around it are
    dropped). `past` and
    `span`: dates only (`parse_date`)."""
    text = text or ""
    parsers: dict[str, Callable[[], ParseResult]] = {
        "digits": lambda: parse_digits(text, length=length, min_length=min_length, max_length=max_length,
                                       within=within),
        "yes_no": lambda: parse_yes_no(text),
        "number": lambda: parse_number(text),
        "money": lambda: parse_money(text),
        "date": lambda: parse_date(text, today=today, within=within, past=past, span=span),
        "time": lambda: parse_time(text),
        "phone": lambda: parse_phone(text, length=length, min_length=min_length, max_length=max_length,
                                     within=within),
        "email": lambda: parse_email(text),
        "text": lambda: parse_text(text, name=name, address=address),
        "enum": lambda: parse_enum(text, choices=choices),
    }
    if slot_type not in parsers:
        raise ValueError(f"unknown slot type '{slot_type}' (expected one of {', '.join(SLOT_TYPES)})")
    return parsers[slot_type]()


# --------------------------------------------------------------------------------------------
# The vocabulary, for finding values inside longer sentences (ivr.nlu.extract)
# --------------------------------------------------------------------------------------------

FILLERS = _FILLERS
NUMBER_WORDS = _NUMBER_WORDS
ORDINALS = frozenset(_ORDINALS)
MONTHS = frozenset(_MONTHS)
WEEKDAYS = frozenset(_WEEKDAYS)
TOKEN_RE = _TOKEN_RE
normalise = _normalise
phrase_key = _phrase_key
