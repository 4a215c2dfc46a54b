"""Which slot a place belongs to. The words of a slot say what kind of place it holds (one end of
a trip, a city or area, a place's name), and the word the caller says right before a place says
which kind it is ("from Vancouver", "in Concord", "at the Roxy"). Pure functions of the flow's
slot specs and the caller's words: the parsers (`ivr.nlu.extract`) use the kinds to choose
between two slots of one type, the small model's extraction (`ivr.nlu.slm_extract`) has its
choice checked by `cued_slot`, and the turn step (`ivr.conversation.turn`) fills what the model
left with `places_said`.

Measured over the 2,800 first turns of Schema-Guided Dialogue (every service, not only the
benchmark's turns), for the values that are not times or numbers: a value said right after
"in", "near" or "around" is a city or area 256 times in 263; after "at", "called" or "named" a
place's name 70 in 75; after "from", "leaving" or "departing" where a trip starts 91 in 93;
after "to" where it goes 91 in 101. `places_said` alone, run on every turn for all of its
service's text slots with nothing else filled, is right 472 times in 528 (89%); in a flow the
parsers have taken months, times and choices first ("in Economy", "at seven").
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

from ivr.nlu.slots import MONTHS, NUMBER_WORDS, WEEKDAYS
from ivr.nlu.understanding import SlotSpec, SlotValue
from ivr.nlu.vocabulary import COMMON, NOT_PLACES, PLACE_NOUNS, SLOT_ENDS, SLOT_STARTS, STREET, WHERE, WORD, cased, slot_words

#: The caller's word right before a place (after "the", "a" or "an"), and the kind of slot it
#: says the place is for.
CUES = {"in": "where", "near": "where", "around": "where", "at": "name", "called": "name", "named": "name",
        "from": "start", "leaving": "start", "departing": "start", "to": "end", "towards": "end", "into": "end"}
_ARTICLES = frozenset(("the", "a", "an"))
#: Verbs before "to" that make what follows a person, not where a trip goes ("talk to John").
_TO_A_PERSON = frozenset("talk speak chat connect transfer put message write".split())
#: Abbreviations whose full stop does not end a name ("St. Louis", "Dr. Martin Luther King").
_ABBREVIATIONS = frozenset("st dr mt ft jr sr ave blvd rd ln ct pl hwy inc co ltd".split())
#: Words inside a name that are not capitalised: "Taste *of* Burma", "Rio *de* Janeiro".
_CONNECTORS = frozenset("of de del la le du da van von y & and on".split())
_NOT_NAMES = NOT_PLACES | frozenset(MONTHS) | frozenset(WEEKDAYS) | frozenset(NUMBER_WORDS)
#: A noun right after a name that makes the name say what kind of thing, or which one, not where.
_KINDS_OF_THING = re.compile(r"\s+(?:" + "|".join(sorted(PLACE_NOUNS | {"cuisine", "food", "style", "restaurants"}))
                             + r")\b")


def trip_end(spec: SlotSpec) -> str | None:
    """"start" or "end" for a slot named or described as one end of a trip (`origin_city`,
    "City where bus is going to"), else None."""
    words = slot_words(spec)
    starts, ends = sum(w in SLOT_STARTS for w in words), sum(w in SLOT_ENDS for w in words if w != "to")
    ends += bool(words) and words[-1] == "to"  # "going to", not "riders to call a taxi for"
    if starts == ends:
        return None
    return "start" if starts > ends else "end"


def return_leg(spec: SlotSpec) -> bool:
    """A slot for the way back (`return_date`, "Departure time for the return leg flight")."""
    return any(w.startswith("return") or w == "inbound" for w in slot_words(spec))


def place_kind(spec: SlotSpec) -> str | None:
    """"name" for a slot that holds a place's name (`theater_name`, "Name of the salon"), "where"
    for its city or area, else None (a person's name, a film's, an address)."""
    words = slot_words(spec)
    if "name" in spec.name.split("_") or "name" in words[:2]:
        return "name" if any(w in PLACE_NOUNS for w in words) else None
    return "where" if any(w in WHERE for w in words) else None


def kind_of(spec: SlotSpec, cue: str) -> str | None:
    """The slot's kind along the dimension a cue speaks of: its trip end for from/to, its place
    kind for in/at."""
    return trip_end(spec) if cue in ("start", "end") else place_kind(spec)


#: How `ivr validate --explain` says what the place rules read a slot as.
_READ_AS = {"start": "where a trip starts", "end": "where a trip ends", "where": "a city or area",
            "name": "a place's name"}


def read_as(spec: SlotSpec) -> str | None:
    """What the place rules take a text slot for, in words ("where a trip starts"), or None: so
    that a designer can check that a slot's name and description say what they mean."""
    if spec.type != "text":
        return None
    kind = trip_end(spec) or place_kind(spec)
    return _READ_AS.get(kind) if kind else None


def cue_before(text: str, at: int) -> str | None:
    """The kind of place the caller's word right before `at` says follows (`CUES`), if any."""
    before = [w.lower() for w in WORD.findall(text[:at])]
    return _cue_at(before, len(before))


def _cue_at(words: list[str], i: int) -> str | None:
    """`cue_before` for the place that starts at word `i` of the lowercased `words`."""
    k = i - 1
    while k >= 0 and words[k] in _ARTICLES and i - k <= 2:
        k -= 1
    if k < 0 or words[k] not in CUES:
        return None
    if words[k] == "to" and k > 0 and words[k - 1] in _TO_A_PERSON:
        return None
    return CUES[words[k]]


def cued_slot(spec: SlotSpec, left: Sequence[SlotSpec], text: str, at: int) -> SlotSpec | None:
    """The slot the caller's word right before a value says it belongs to, when the model put it
    in another: "from Vancouver" is where the trip starts, not where it ends; "in Concord" is the
    city, not the restaurant's name. The unfilled slot of the same type that the cue points to
    (the one whose name differs least), or None to keep the model's choice."""
    cue = cue_before(text, at)
    mine = kind_of(spec, cue) if cue else None
    if mine is None or mine == cue:
        return None
    twins = [x for x in left if x.type == spec.type and kind_of(x, cue) == cue]
    if not twins:
        return None
    mine_words = set(spec.name.split("_"))
    return max(twins, key=lambda x: len(mine_words & set(x.name.split("_"))))


def _name_run(text: str, words: list[re.Match], i: int) -> tuple[int, int] | None:
    """The place name that starts at word `i`: capitalised words (a common one too, where no
    sentence begins: "New York"), lowercase connectors between them ("Taste of Burma"), a house
    number before them and a number after them ("379 Gellert Boulevard", "Studio 54"); it ends
    at a comma or any other punctuation. (start, end) character offsets, or None."""
    def capital(k: int) -> bool:  # a cue word stands before the run: no sentence begins in it
        w = words[k].group(0).rstrip(".")
        return w[:1].isupper() and w.lower() not in _NOT_NAMES and not re.fullmatch(r"I(?:'[a-z]+)?", w)

    def joined(k: int) -> bool:  # nothing but a space between words k-1 and k, and no full stop
        before = words[k - 1].group(0)
        bare = before.rstrip(".").lower()
        stop = before.endswith(".") and len(bare) > 1 and bare not in _ABBREVIATIONS  # "Oakland." ends it; "St." does not
        return not stop and not text[words[k - 1].end():words[k].start()].strip()

    k = i
    if words[k].group(0)[:1].isdigit():  # a house number
        k += 1
        if k >= len(words) or not joined(k):
            return None
    if k >= len(words) or not capital(k):
        return None
    last = k
    j = k + 1
    while j < len(words) and j - i < 6 and joined(j):
        w = words[j].group(0)
        if capital(j):
            last = j
        elif (w.lower() in _CONNECTORS and j + 1 < len(words) and joined(j + 1) and capital(j + 1)
              and words[j + 1].group(0).lower() not in COMMON):
            pass  # "Taste of Burma", not "Toronto and I"
        elif w[:1].isdigit() and not w.isalpha():
            last = j  # "Studio 54", "Suite 109"
            break
        else:
            break
        j += 1
    return words[i].start(), words[last].end()


#: A region after a place: a state's two capitals ("Fresno, CA"), or capitalised words that end
#: the phrase ("Sydney, Australia?"): never "Denver, Friday to Sunday".
_REGION = re.compile(r",\s*(?:([A-Z]{2})\b(?!')|([A-Z][a-z]+(?:\s[A-Z][a-z]+)?)(?=\s*(?:[-.,;:!?]|$)))")


def with_region(text: str, value: SlotValue) -> SlotValue:
    """A place's value with the region said right after it ("Fresno" -> "Fresno, CA")."""
    if value.start < 0 or not isinstance(value.value, str) or not cased(text):
        return value
    m = _REGION.match(text, value.start + len(value.said))
    if not m or (m.group(2) and any(w.lower() in COMMON or w.lower() in _NOT_NAMES for w in m.group(2).split())):
        return value  # a state's capitals are never a common word ("Portland, OR")
    said = text[value.start:m.end()]
    return replace(value, value=said, said=said)


_UNIT = re.compile(r"[,.]?\s*(?:apartment|apt\.?|unit|suite|flat|#)\s*(?:number\s+)?[A-Za-z]?\d+[A-Za-z]?\b", re.IGNORECASE)


def with_unit(text: str, value: SlotValue) -> SlotValue:
    """A street address with the apartment or unit said right after it ("379 Gellert Boulevard,
    apartment 4"): a crew sent to the building without it knocks on every door."""
    if value.start < 0 or not isinstance(value.value, str) or not value.said:
        return value
    last = value.said.rstrip(".").split()[-1].lower().rstrip(".")
    m = _UNIT.match(text, value.start + len(value.said))
    if last not in STREET or not m:
        return value
    said = text[value.start:m.end()]
    return replace(value, value=said, said=said)


def _slot_for(cue: str, left: Sequence[SlotSpec]) -> SlotSpec | None:
    text_slots = [x for x in left if x.type == "text"]
    if cue == "where":  # where a trip starts is not said with "in"
        fits = [x for x in text_slots if place_kind(x) == "where" and trip_end(x) != "start"]
    else:
        fits = [x for x in text_slots if kind_of(x, cue) == cue]
    if cue == "name" and len(fits) != 1:  # "at the Roxy" with a cinema and a restaurant to fill
        return None
    return fits[0] if fits else None


def places_said(text: str, left: Sequence[SlotSpec], found: Sequence[SlotValue],
                claimed: Sequence[tuple[int, int]] = ()) -> list[SlotValue]:
    """The values found, with a place's region added to it ("Fresno" -> "Fresno, CA") and a
    street address its apartment ("..., apartment 4"), and a
    place the caller named right after a word that tells its slot (`CUES`), put in that slot when
    the small model left it empty (or was not asked): a city after "in", "near" or "around";
    where a trip starts after "from" or "leaving", where it goes after "to"; a place's name after
    "at", "called" or "named", when one slot of the kind is open (a cinema's name, not a film's)."""
    specs = {x.name: x for x in left}
    out = [with_region(text, v) if v.slot in specs and (place_kind(specs[v.slot]) == "where" or trip_end(specs[v.slot]))
           else v for v in found]
    out = [with_unit(text, v) if v.slot in specs and specs[v.slot].type == "text" else v for v in out]
    open_ = [x for x in left if all(v.slot != x.name for v in out)]
    if not open_ or not cased(text):
        return out
    taken = list(claimed) + [(v.start, v.start + len(v.said)) for v in out if v.start >= 0]
    words = list(WORD.finditer(text))
    lower = [w.group(0).lower() for w in words]
    for i in range(1, len(words)):
        cue = _cue_at(lower, i)
        slot = _slot_for(cue, open_) if cue else None
        span = _name_run(text, words, i) if slot else None
        if span is None or any(a < span[1] and span[0] < b for a, b in taken):
            continue
        if cue == "where" and _KINDS_OF_THING.match(text, span[1]):
            continue  # "in Singaporean cuisine", "in Dynasty restaurant": what kind, not where
        said = text[span[0]:span[1]].rstrip(".")
        out.append(with_region(text, SlotValue(slot.name, said, said, "parser", span[0])))
        taken.append((span[0], span[0] + len(out[-1].said)))
        open_ = [x for x in open_ if x.name != slot.name]
    return out
