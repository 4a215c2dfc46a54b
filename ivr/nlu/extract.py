"""Values said in passing: every typed value one turn carries, found as spans and placed in slots.

"A table for four tomorrow at seven thirty" answers a menu and three questions the flow would
ask next. The parsers in `ivr.nlu.slots` read a whole answer as one value; here they read every
short window of the words around value-like tokens (numbers, months, weekdays, "tomorrow",
"pm", "dollars", an enum's synonyms), and keep the windows that say one value each:

1. candidates   each window that parses, for every type in play, that is *minimal*: no shorter
                window sharing its first or last word gives the same value ("the 3rd to the"
                gives what "3rd" gives, so it is not a value of its own; "seven thirty" is not
                "seven"). A window inside a longer one of the same type is dropped.
2. strength     how sure the words are about the type: "tomorrow", "March 3rd" and "at seven"
                (the word before counts, unless a word a count slot counts follows: "at two
                *star* hotels") are strong; a bare "four" could be a count, an amount or a
                time, and is weak for all three. A candidate weaker than another type's on the
                same words is dropped, so "at seven" never fills a party size.
3. placement    each candidate is scored for each slot of its type, with a bonus when words of
                the slot's name or description stand next to it ("four *people*", "2 *rooms*",
                plurals and compounds too: "3 *bedrooms*" for `number_of_beds`; right beside it
                counts most, the slot's name more than its description). Some values a slot
                must not take: a house number or a label ("379 Gellert Boulevard", "suite
                109", "Hisui 2"), and, for a count, one of something else said ("in 15
                *minutes*", "3 *bedrooms*" when a beds slot is ahead of the baths). With two
                slots of one type ahead, the words before a value say which (`_range_bonus`:
                the way back after "return", the far end after "until" or "to", the near end
                after "from"). The best pairs win, one value per slot and per span. Equal
                scores go in order: the first value said to the first slot the flow asks
                ("from the 3rd to the 7th").

A yes/no slot named for a feature (`has_wifi`, `live_music`) is true when the caller names the
feature, false after "no" or "without". Text slots are for the small model
(`ivr.nlu.slm_extract`); it is asked only about what is left here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Sequence

from ivr.nlu.places import return_leg, trip_end
from ivr.nlu.slots import (
    FILLERS,
    MONTHS,
    NUMBER_WORDS,
    ORDINALS,
    TOKEN_RE,
    WEEKDAYS,
    negated,
    normalise,
    parse_slot,
    phrase_key,
)
from ivr.nlu.understanding import SlotSpec, SlotValue
from ivr.nlu.vocabulary import END_CUES, LABELS, RETURN_CUES, SAME, START_CUES, STREET, TRIP_CUES, UNITS, cased, slot_words

#: Types whose values the parsers find anywhere in a sentence.
PARSED_TYPES = ("number", "money", "date", "time", "digits", "phone", "enum", "yes_no")
#: Types read on every turn that has any numeric slot ahead: they compete for the same words.
_NUMERIC = ("number", "money", "date", "time")

_DATE_WORDS = frozenset("today tomorrow tonight yesterday week weeks day days fortnight weekend now".split())
_TIME_WORDS = frozenset("am pm oclock o'clock clock noon midday midnight morning afternoon evening night".split())
_MONEY_WORDS = frozenset("dollar dollars buck bucks cent cents pound pounds quid euro euros $".split())
_DIGIT_WORDS = frozenset("double triple oh plus +".split())
_VALUE = (NUMBER_WORDS | frozenset(ORDINALS) | frozenset(MONTHS) | frozenset(WEEKDAYS) | _DATE_WORDS
          | _TIME_WORDS | _MONEY_WORDS | _DIGIT_WORDS)
#: Words that may sit inside or just before a value ("half past", "the 3rd", "next Tuesday").
_GLUE = frozenset("at on the of a an and next this coming in by around about half quarter past to from "
                  "till til until before after point p m".split())
_TIME_BEFORE = frozenset("at around by before after until till til from".split())
_TIME_CUES = _TIME_WORDS | {"half", "quarter", "past"}
_DATE_CUES = frozenset(MONTHS) | frozenset(WEEKDAYS) | _DATE_WORDS
_DATE_BEFORE = frozenset("the on of from until till by".split())
_MAX_WINDOW = 8

#: Words of a slot's name or description that say nothing about where its value stands.
_STOP = frozenset("""a an the of to for in on at by with from and or is are be this that which
what who whom where when how user user's caller caller's their his her its your you we they it
number value name type date time amount""".split())

STRONG, MEDIUM, WEAK = 3.0, 2.0, 1.0


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Candidate:
    """A value the words could be: a type (or, for digits/phone/enum, one slot's own reading)."""

    kind: str
    first: int  # token index
    last: int  # token index, inclusive
    value: object
    strength: float
    said: str
    start: int  # character offset


def tokens_of(text: str) -> list[_Token]:
    low = normalise(text)
    out = []
    for m in TOKEN_RE.finditer(low):
        tok = m.group(0)
        if tok in FILLERS:
            continue
        glued = re.match(r"[a-z]+", low[m.end():])
        if tok[:1].isdigit() and glued and glued.group(0) not in ("am", "pm", "a", "p"):
            tok = "#" + tok  # "3d", "4k", "5g": part of a name, not a number said ("8pm" is a time)
        out.append(_Token(tok, m.start(), m.end()))
    return out


def _numeral(tok: str) -> bool:
    return tok[:1].isdigit()


def _valueish(tok: str) -> bool:
    return _numeral(tok) or tok in _VALUE


def value_word(word: str) -> bool:
    """A word of the values the parsers read (a number, a month, a weekday, "tomorrow",
    "afternoon", "o'clock"): on its own it is no name, place or thing (ivr.nlu.slm_extract)."""
    return _valueish(word.lower().strip(".,!?'"))


def _windows(toks: list[_Token]) -> list[tuple[int, int]]:
    """(first, last) token windows worth parsing: value-like words with their glue, at most
    _MAX_WINDOW long, starting on a value or glue word and ending on a value word."""
    out = []
    n = len(toks)
    for i in range(n):
        if not (_valueish(toks[i].text) or toks[i].text in _GLUE):
            continue
        for j in range(i, min(n, i + _MAX_WINDOW)):
            t = toks[j].text
            if not (_valueish(t) or t in _GLUE):
                break
            if _valueish(t):
                out.append((i, j))
    return out


#: Words that read a digit (or repeat one) in a number said a digit at a time.
_DIGIT_RUN_WORDS = frozenset("zero oh o one two three four five six seven eight nine double triple".split())


def _digit_runs(text: str, toks: list[_Token]) -> list[tuple[int, int]]:
    """(first, last) token spans of three or more digits said one after another ("5, 5, 5, 1",
    "four one one one", "555 123 4567"), only commas, hyphens and spaces between them."""
    runs, start = [], None

    def digit(k: int) -> bool:
        t = toks[k].text
        return (t.isdigit() and len(t) <= 4) or t in _DIGIT_RUN_WORDS

    for k in range(len(toks) + 1):
        joined = (k < len(toks) and digit(k) and start is not None
                  and re.fullmatch(r"[\s,\-]*", text[toks[k - 1].end:toks[k].start]))
        if joined:
            continue
        if start is not None and k - 1 - start >= 2:
            runs.append((start, k - 1))
        start = k if k < len(toks) and digit(k) else None
    return runs


def _minimal(found: dict[tuple[int, int], object]) -> list[tuple[int, int]]:
    """Windows whose value no shorter window sharing an end gives, and that no longer window of
    the same kind contains."""
    keep = []
    for (i, j), value in found.items():
        if any(found.get((i, k)) == value for k in range(i, j)) or any(found.get((k, j)) == value for k in range(i + 1, j + 1)):
            continue
        keep.append((i, j))
    return [w for w in keep if not any(o != w and o[0] <= w[0] and w[1] <= o[1] for o in keep)]


_SLASHED = re.compile(r"\d\s*/\s*\d")  # a date as written: 3/3, 03/03/1965


def _strength(kind: str, toks: list[_Token], i: int, j: int, said: str, counted: bool = False) -> float:
    """How sure the words are of the type; `counted`: a word follows that a count slot ahead
    counts, or a unit ("two *star* hotels", "in 15 *minutes*")."""
    words = {t.text for t in toks[i:j + 1]}
    before = toks[i - 1].text if i > 0 else ""
    after = toks[j + 1].text if j + 1 < len(toks) else ""
    if words <= {"one", "a", "an"}:
        return WEAK / 2  # "a new one": a value only next to the slot's own words
    if kind == "date":
        if words & _DATE_CUES or before in _DATE_BEFORE or _SLASHED.search(said):
            return STRONG
        return WEAK  # a lone ordinal: "my first time"
    if kind == "time":
        if _SLASHED.search(said):
            return 0.0  # "03/03/1965" is a date, not 3:03
        numbers = sum(1 for t in toks[i:j + 1] if _numeral(t.text) or t.text in NUMBER_WORDS)
        hour_minutes = numbers >= 2 and not (_numeral(before) or before in NUMBER_WORDS)  # not "eighty [two fifty]"
        if ":" in said or words & _TIME_CUES or after in _TIME_CUES or hour_minutes:
            return STRONG
        if before in _TIME_BEFORE and not counted:  # "at seven", not "looking at two *star* hotels"
            return STRONG
        return WEAK * 0.75  # a bare "2" is a count before it is a time: only next to the slot's words
    if kind == "money":
        if words & _MONEY_WORDS or before == "$" or after in _MONEY_WORDS or "." in said:
            return STRONG
        return WEAK
    if kind == "number":
        return WEAK
    return MEDIUM  # digits and phone: runs of digits that fit the slot's length


def _after(value, previous: date | None, said: str, today: date | None):
    """A date said after another in the same breath is not before it: "from the 3rd to the 7th"
    is the 7th after the 3rd, even when the 7th of this month is nearer."""
    day = date.fromisoformat(value)
    if previous is not None and day < previous:
        again = parse_slot("date", said, today=previous, within=True)
        if again.ok and date.fromisoformat(again.value) >= previous:
            day = date.fromisoformat(again.value)
    return day.isoformat(), max(day, previous) if previous else day


def _parse_kind(kind: str, said: str, spec: SlotSpec | None, today: date | None):
    if spec is None:
        result = parse_slot(kind, said, today=today, within=True)
    else:
        result = parse_slot(spec.type, said, length=spec.length, min_length=spec.min_length,
                            max_length=spec.max_length, today=today, within=True)
    return result.value if result.ok else None


def candidates(text: str, specs: Sequence[SlotSpec], *, today: date | None = None) -> tuple[list[_Token], list[Candidate]]:
    """Every value-like span of `text` for the kinds the slots need (see the module doc)."""
    toks = tokens_of(text)
    kinds: dict[str, SlotSpec | None] = {}
    for spec in specs:
        if spec.type in _NUMERIC:
            kinds.update({k: None for k in _NUMERIC})
        elif spec.type in ("digits", "phone"):
            kinds[f"{spec.type}:{spec.name}"] = spec
    out: list[Candidate] = []
    windows = _windows(toks) if kinds else []
    runs = _digit_runs(text, toks) if kinds else []
    count_cues = _count_cues(specs)
    for kind, spec in kinds.items():
        found: dict[tuple[int, int], object] = {}
        reads_digits = spec is not None  # a digits or phone slot's own reading
        # A number read a digit at a time ("5, 5, 5, 1, 2, ...", as whisper writes it) is one
        # value as a whole: for a digits or phone slot, the whole run however long, never a
        # part of it ("555123" of a phone number is no account number); for a count, an
        # amount, a date or a time, no reading of any of it ("4, 5, 7" and "five five five"
        # are not 16:57 and 17:55, the "four" of "four five seven two" is no $4).
        kind_windows = (sorted(set(windows) | set(runs)) if reads_digits else windows)
        for i, j in kind_windows:
            if reads_digits and any(a <= i and j <= b and (a, b) != (i, j) for a, b in runs):
                continue
            if not reads_digits and any(i <= b and a <= j for a, b in runs):
                continue
            said = text[toks[i].start:toks[j].end]
            value = _parse_kind(kind.split(":")[0], said, spec, today)
            if value is not None:
                found[(i, j)] = value
        previous: date | None = None
        for i, j in sorted(_minimal(found)):
            said = text[toks[i].start:toks[j].end]
            if kind == "date":
                found[(i, j)], previous = _after(found[(i, j)], previous, said, today)
            if spec is not None and sum(ch.isdigit() for ch in str(found[(i, j)])) < min(3, spec.length or 3):
                continue  # "two" is not an account number said in passing
            counted = any(_is_cue(w, count_cues) or w in UNITS for w in _nouns_after(text, toks, j))
            out.append(Candidate(kind, i, j, found[(i, j)], _strength(kind.split(":")[0], toks, i, j, said, counted),
                                 said, toks[i].start))
    for spec in specs:
        if spec.type == "enum" and spec.choices:
            out += _enum_candidates(text, toks, spec)
        elif spec.type == "yes_no":
            out += _feature_candidates(text, toks, spec)
    return toks, _drop_outranked(out)


#: Words of a yes/no slot's name that say nothing of the feature ("has_wifi", "pets_allowed").
_FLAG_VERBS = frozenset("has have is are allowed allows serves serve with offers includes".split())
_NEGATIONS = frozenset("no not without don't doesn't dont never non".split())


def _feature_candidates(text: str, toks: list[_Token], spec: SlotSpec) -> list[Candidate]:
    """A yes/no slot named for a feature (`has_wifi`, `live_music`, `refundable`) is true when
    the caller names the feature ("a room with WiFi"), false after a negation ("no pets")."""
    feature = [w for w in spec.name.lower().split("_") if w and w not in _FLAG_VERBS]
    if not feature:
        return []
    words = [t.text for t in toks]
    out = []
    for i in range(len(words)):
        j = _feature_at(words, i, feature)
        if j is not None:
            before = words[max(0, i - 3):i]
            # "no pets", "not smoking"; but "I don't *mind* sharing" says yes
            negated = any(w in _NEGATIONS for w in before) and "mind" not in before
            out.append(Candidate(f"flag:{spec.name}", i, j, not negated, STRONG,
                                 text[toks[i].start:toks[j].end], toks[i].start))
    return out[:1]


def _feature_at(words: list[str], i: int, feature: list[str]) -> int | None:
    """The last word of the feature named from word `i` ("shared ride", "sharing a ride"), or
    None. A feature of two words may be said in another form of its verb ("sharing" for
    `shared_ride`); one of one word may not ("smoked salmon" says nothing of `smoking`)."""
    j = i
    for k, part in enumerate(feature):
        while k and j < len(words) and words[j] in ("a", "an", "the", "my", "our"):
            j += 1
        if j >= len(words) or not _stem_match(words[j], part, len(feature) > 1):
            return None
        j += 1
    return j - 1


def _stem_match(word: str, feature: str, forms: bool = False) -> bool:
    word = word.replace("-", "")
    return (word == feature or (len(feature) > 3 and word.startswith(feature[:-1]) and len(word) <= len(feature) + 2)
            or (forms and len(feature) > 4 and _root(word) == _root(feature)))  # "sharing" for `shared`


def _root(word: str) -> str:
    for suffix in ("ing", "ed", "es", "e", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[:-len(suffix)]
    return word


def _enum_candidates(text: str, toks: list[_Token], spec: SlotSpec) -> list[Candidate]:
    words = [t.text.lstrip("#") for t in toks]  # a choice may be a numeral glued to letters ("3d")
    out = []
    for key, synonyms in spec.choices:
        for phrase in (key, *synonyms):
            norm = phrase_key(str(phrase)).split()
            if not norm:
                continue
            for i in range(len(words) - len(norm) + 1):
                if words[i:i + len(norm)] == norm:
                    j = i + len(norm) - 1
                    out.append(Candidate(f"enum:{spec.name}", i, j, key, STRONG + 0.01 * len(norm),
                                         text[toks[i].start:toks[j].end], toks[i].start))
    # "technical support" holds "support": the longer synonym is what was said; and "not an
    # emergency" says what it is not.
    return [c for c in out if not any(o.first <= c.first and c.last <= o.last and (o.last - o.first) > (c.last - c.first)
                                      for o in out) and not negated(_clause_words_before(text, toks, c.first))]


def _clause_words_before(text: str, toks: list[_Token], first: int) -> str:
    """The words before token `first`, back to the last comma or full stop: the "no" of "no, the
    morning" negates nothing in it (it answers the read-back)."""
    out: list[str] = []
    for k in range(first - 1, -1, -1):
        if re.search(r"[,;.!?]", text[toks[k].end:toks[k + 1].start]):
            break
        out.append(toks[k].text)
    return " ".join(reversed(out))


def _overlap(a: Candidate, b: Candidate) -> bool:
    return a.first <= b.last and b.first <= a.last


def _inside(a: Candidate, b: Candidate) -> bool:
    return b.first <= a.first and a.last <= b.last and (b.last - b.first) > (a.last - a.first)


def _drop_outranked(cands: list[Candidate]) -> list[Candidate]:
    """A reading weaker than another type's reading of the same words is not what was meant,
    nor is one inside a longer reading at least as sure ("two fifty" in "eighty two fifty")."""
    return [c for c in cands
            if not any(o.kind != c.kind and not o.kind.startswith(("enum:", "flag:")) and _overlap(o, c)
                       and (o.strength > c.strength or (_inside(c, o) and o.strength >= c.strength))
                       for o in cands)]


@lru_cache(maxsize=1024)  # read for every candidate of every turn; a flow has few slots
def name_words(spec: SlotSpec) -> frozenset[str]:
    words = spec.name.lower().split("_")
    return frozenset(SAME.get(w, w) for w in words if w not in _STOP and len(w) > 2)


@lru_cache(maxsize=1024)
def cue_words(spec: SlotSpec) -> frozenset[str]:
    """The slot's own words: its name's parts and its description's content words."""
    return frozenset(SAME.get(w, w) for w in slot_words(spec) if w not in _STOP and len(w) > 2)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


#: Endings that make another form of a word, not a compound ("staying" is no "stay" + word).
_SUFFIXES = frozenset("ing ings ed er ers est ies es ly".split())


def _is_cue(word: str, cues: frozenset[str]) -> str | None:
    """The cue `word` stands for, if any: itself, its singular, the start of a longer cue
    ("travel" for "travelers"), or a compound that begins with one ("bedrooms" for "beds",
    "bathroom" for "baths")."""
    w = SAME.get(word, word)
    if w in cues:
        return w
    for cue in cues:
        stem = _stem(cue)
        if _stem(w) == stem or (len(w) > 4 and len(cue) > 4 and cue.startswith(w[:5])):
            return cue
        rest = w[len(stem):]
        if len(stem) >= 3 and w.startswith(stem) and len(rest) >= 3 and rest not in _SUFFIXES:
            return cue
    return None


def _cue_bonus(text: str, toks: list[_Token], c: Candidate, spec: SlotSpec, before: int = 4, after: int = 3) -> float:
    """How strongly the slot's own words stand next to the value: right beside it ("2 *rooms*",
    "*party of* four") counts most, and a word of the slot's name more than one of its
    description, wherever it stands ("one hotel *room*" is a number of rooms, not a star rating).
    A count is named by the noun after it or by the slot's name ("party of four"): before a
    count the description's words do not count, as its verbs ("riders to *call* a taxi for")
    stand before numbers that count nothing ("can you call one for me")."""
    cues, named = cue_words(spec), name_words(spec)
    before_cues = named if c.kind == "number" else cues
    best = 0.0
    for k in range(max(0, c.first - before), min(len(toks), c.last + 1 + after)):
        if c.first <= k <= c.last:
            continue
        gap = text[toks[k].end:toks[c.first].start] if k < c.first else text[toks[c.last].end:toks[k].start]
        if re.search(r"[.!?]", gap):
            continue  # another sentence's words say nothing of this value
        cue = _is_cue(toks[k].text, cues if k > c.last else before_cues)
        if cue:
            distance = c.first - k if k < c.first else k - c.last
            best = max(best, (1.5 if distance == 1 else 1.0) + (1.0 if cue in named else 0.0))
    return best


#: Words after a number that it does not count ("four *please*", "two *of* us", "five *tomorrow*").
_NOT_COUNTED = frozenset("""please thanks thank and or but so then too also only each total altogether
exactly just yes no okay ok right now under over into onto near during since through across behind
beside between among without within per via if when while because than was were will would can could
should shall may might must do does did has have had am not our my your me us them him her there
here""".split()) | _STOP | _GLUE | _VALUE


def _nouns_after(text: str, toks: list[_Token], last: int) -> list[str]:
    """The words right after a number ending at token `last` that it may count, in the same
    phrase ("3 *bedrooms*", "15 *minutes*", "one *hotel room*"): at most two, since a
    compound's head may be either ("a 2 *bedroom* apartment")."""
    out: list[str] = []
    k = last + 1
    while k < len(toks) and len(out) < 2:
        between = text[toks[k - 1].end:toks[k].start]
        word = toks[k].text
        if any(ch in between for ch in ".,;:!?") or not word.isalpha() or word in _NOT_COUNTED or len(word) < 3:
            break
        out.append(word)
        k += 1
    return out


def _said(text: str, tok: _Token) -> str:
    return text[tok.start:tok.end]


def _joined(text: str, a: _Token, b: _Token) -> bool:
    return not text[a.end:b.start].strip()


def _identifier(text: str, toks: list[_Token], c: Candidate, count_cues: frozenset[str]) -> bool:
    """A number that labels a thing: after "#" or a word like "suite" or "gate", or a numeral
    that ends a name ("Hisui 2", "Studio 54": right after a capitalised word, nothing between,
    that is neither a function word nor opens a sentence)."""
    if text[:toks[c.first].start].rstrip().endswith("#"):
        return True
    if c.first == 0 or not _joined(text, toks[c.first - 1], toks[c.first]):
        return False
    prev = toks[c.first - 1]
    if prev.text in LABELS:
        return True
    if c.kind != "number" or not _numeral(toks[c.first].text) or not cased(text):
        return False
    if any(_is_cue(w, count_cues) for w in _nouns_after(text, toks, c.last)):
        return False  # "at Nopa 4 *people*": a count after all
    opens = not text[:prev.start].strip() or text[:prev.start].rstrip()[-1] in ".!?"
    return (_said(text, prev)[:1].isupper() and prev.text not in ("i", "i'm") and not opens
            and prev.text not in _NOT_COUNTED and prev.text not in _VALUE)


def _in_address(text: str, toks: list[_Token], c: Candidate) -> bool:
    """Whether the value's words begin a street address: a numeral, one to three names or an
    ordinal ("54 37th Avenue"), then a street word, with nothing but spaces between. A street
    word before a capitalised name is a title ("Dr. Patel", "St. Louis"), and a function word
    on the way means the number is not a house's ("a cab for 2 to Main Street")."""
    if c.first != c.last or not _numeral(toks[c.first].text):
        return False
    for k in range(c.first + 1, min(len(toks), c.first + 5)):
        tok = toks[k]
        gap = text[toks[k - 1].end:tok.start]
        if gap.strip(" ."):
            return False
        if tok.text in STREET and k > c.first + 1:
            after = toks[k + 1] if k + 1 < len(toks) else None
            title = tok.text in ("dr", "st") and after is not None and _said(text, after)[:1].isupper()
            return not title
        ordinal = tok.text[:1].isdigit() and tok.text[-2:] in ("st", "nd", "rd", "th")
        name = tok.text.isalpha() and tok.text not in _NOT_COUNTED and (not cased(text) or _said(text, tok)[:1].isupper())
        if not (ordinal or name):
            return False
    return False


def _street_name(toks: list[_Token], c: Candidate) -> bool:
    """An ordinal that names a street ("on 5th Avenue", "West 42nd Street") or counts times
    ("the third time I'm calling"): no day."""
    last = toks[c.last].text
    ordinal = last in ORDINALS or (last[:1].isdigit() and last[-2:] in ("st", "nd", "rd", "th"))
    after = toks[c.last + 1].text if c.last + 1 < len(toks) else ""
    return ordinal and (after in STREET or after in ("time", "times"))


#: Determiners and possessives between "to" and a value ("to *their* checking account").
_DETERMINERS = frozenset("the my our their his her your".split())


def _clause_before(text: str, toks: list[_Token], first: int, most: int) -> list[_Token]:
    """Up to `most` tokens before token `first`, back to the start of its sentence."""
    out: list[_Token] = []
    for k in range(first - 1, max(-1, first - 1 - most), -1):
        if re.search(r"[.!?]", text[toks[k].end:toks[k + 1].start]):
            break
        out.insert(0, toks[k])
    return out


def _range_bonus(text: str, toks: list[_Token], c: Candidate, spec: SlotSpec, specs: Sequence[SlotSpec]) -> float:
    """With two slots of one type ahead (pick-up and drop-off dates, the caller's account and
    the recipient's, the flight out and the flight back), the words before a value say which:
    after "return" or "back" in the same sentence, the way back's (a slot named or described as
    `return` or `inbound`), else not the way back's; after "until" or "to" right before it, the
    far end's: the slot named or described as where things end (`trip_end`), else the second
    one, whatever the order it comes in; after "from", the near end's. "leaving" and "arriving"
    say so only of a trip's slots (a stay's "arriving Friday" is its check-in). Not for counts:
    "want *to* find a 2 bedroom" is no range."""
    same = [x for x in specs if x.type == spec.type]
    if len(same) < 2 or spec.type == "number":
        return 0.0
    lean = 0.0
    legs = [x.name for x in same if return_leg(x)]
    if legs and len(legs) < len(same):
        back = any(t.text in RETURN_CUES for t in _clause_before(text, toks, c.first, 8))
        if back:  # "the return flight needs to leave at 3:15": the way back's, and which of its ends
            lean = 1.0 if spec.name in legs else -1.0
        else:  # a time said plainly is for the way out
            lean = -0.5 if spec.name in legs else 0.0
    far = [x.name for x in same if trip_end(x) == "end"]
    ends = {trip_end(x) for x in same}

    def says(word: str) -> bool:  # "arriving" speaks only where a slot is where the trip ends
        if word in RETURN_CUES:  # "back on Sunday" with no slot for the way back: the far end
            return not legs
        if word not in END_CUES and word not in START_CUES:
            return False
        return word not in TRIP_CUES or ("start" if word in START_CUES else "end") in ends

    window = toks[max(0, c.first - 3):c.first]
    cue = next((t.text for t in reversed(window) if says(t.text)), None)
    near = [t.text for t in window if t.text not in _DETERMINERS and not t.text.endswith("'s")][-1:]
    if near == ["to"]:
        cue = "to"
    if cue is None:
        return lean
    sign = -1.0 if cue in START_CUES else 1.0  # "from savings": the near end's, whatever else is said
    if far:
        return lean + (sign if spec.name in far else -sign)
    return lean + (sign if spec.name != same[0].name else -sign)


def _kind_fits(c: Candidate, spec: SlotSpec) -> bool:
    if ":" in c.kind:
        return c.kind.split(":", 1)[1] == spec.name
    return c.kind == spec.type


def _count_cues(specs: Sequence[SlotSpec]) -> frozenset[str]:
    """The words of every count slot ahead: what some slot of the turn counts."""
    return frozenset(w for x in specs if x.type == "number" for w in cue_words(x))


def _counts_other(text: str, toks: list[_Token], c: Candidate, spec: SlotSpec, specs: Sequence[SlotSpec],
                  count_cues: frozenset[str]) -> bool:
    """A value this slot must not take: a house number or a label for any slot; for a count,
    one of something else, said: a unit this slot's words do not name ("in 15 *minutes*") or
    what another count slot ahead counts ("3 *bedrooms*" with beds and baths to fill). A word
    that is neither says nothing ("4 *friends*", "5 *instead*")."""
    if c.kind in _NUMERIC and (_in_address(text, toks, c) or _identifier(text, toks, c, count_cues)
                               or _street_name(toks, c)):
        return True
    if c.kind == "money":
        # "I called 3 *times*", "for 2 *people*": a bare number that counts something is no
        # amount ("50 dollars", "$50" and "82.50" say they are)
        marked = any(t.text in _MONEY_WORDS for t in toks[c.first:c.last + 2]) or "$" in text[max(0, c.start - 1):c.start + 1] \
            or "." in c.said
        return not marked and any(w in UNITS or _is_cue(w, count_cues) for w in _nouns_after(text, toks, c.last))
    if c.kind != "number":
        return False
    nouns = _nouns_after(text, toks, c.last)
    if not nouns or any(_is_cue(w, cue_words(spec)) for w in nouns):
        return False
    others = [x for x in specs if x.type == "number" and x.name != spec.name]
    return any(w in UNITS or any(_is_cue(w, cue_words(x)) for x in others) for w in nouns)


def place(text: str, toks: list[_Token], cands: Sequence[Candidate], specs: Sequence[SlotSpec]) -> list[SlotValue]:
    """Each slot its best candidate; no two slots share words (see the module doc, 3)."""
    pairs = []
    count_cues = _count_cues(specs)
    for order, spec in enumerate(specs):
        for c in cands:
            if _kind_fits(c, spec) and not _counts_other(text, toks, c, spec, specs, count_cues):
                score = c.strength + _cue_bonus(text, toks, c, spec) + _range_bonus(text, toks, c, spec, specs)
                if score >= WEAK:
                    pairs.append((-score, c.first, order, spec, c))
    pairs.sort(key=lambda p: p[:3])
    taken: list[Candidate] = []
    filled: dict[str, SlotValue] = {}
    for _, _, _, spec, c in pairs:
        if spec.name in filled or any(_overlap(c, t) for t in taken):
            continue
        filled[spec.name] = SlotValue(spec.name, c.value, c.said, "parser", c.start)
        taken.append(c)
    return [filled[s.name] for s in specs if s.name in filled]


def find_values(text: str, specs: Sequence[SlotSpec], *, today: date | None = None) -> list[SlotValue]:
    """The values `text` carries for `specs` (in the order the flow asks them), by the parsers."""
    specs = [s for s in specs if s.type in PARSED_TYPES]
    if not specs or not text.strip():
        return []
    toks, cands = candidates(text, specs, today=today)
    past = {s.name for s in specs if s.type == "date" and s.past}
    return [_dated(v, today) if v.slot in past else v for v in place(text, toks, cands, specs)]


def _dated(value: SlotValue, today: date | None) -> SlotValue:
    """A day for a past date slot (a birth, an accident) read looking back: "on Tuesday" is the
    last one. The candidates are read looking ahead, as most date slots are."""
    result = parse_slot("date", value.said, today=today, within=True, past=True)
    return replace(value, value=result.value) if result.ok else value


def claimed_spans(values: Sequence[SlotValue]) -> list[tuple[int, int]]:
    return [(v.start, v.start + len(v.said)) for v in values if v.start >= 0]
