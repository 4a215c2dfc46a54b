"""Which slot a place belongs to: the words of a slot say what kind of place it holds (one end
of a trip, a city or area, a name), and the word the caller says before a place says which
kind it is ("from Vancouver", "in Concord", "at the Roxy"). Pure functions of the flow's slot
specs and the caller's words; the parsers (`ivr.nlu.extract`) and the small model's extraction
(`ivr.nlu.slm_extract`) both use them.
"""

from __future__ import annotations

import re
from typing import Sequence

from ivr.nlu.understanding import SlotSpec

#: Words that say which end of a trip (or a transfer) a slot or a place is: where it starts, or
#: where it goes.
_STARTS = frozenset("from origin starting start departure departing depart leaving leave pickup pick source".split())
_ENDS = frozenset("to destination ending end arrival arriving arrive going dropoff drop towards recipient".split())


def trip_end(spec: SlotSpec) -> str | None:
    """"start" or "end" for a slot named or described as one end of a trip (`origin_city`,
    "City where bus is going to"), else None."""
    words = re.findall(r"[a-z]+", f"{spec.name.replace('_', ' ')} {spec.description}".lower())
    starts, ends = sum(w in _STARTS for w in words), sum(w in _ENDS for w in words if w != "to")
    ends += bool(words) and words[-1] == "to"  # "going to", not "riders to call a taxi for"
    if starts == ends:
        return None
    return "start" if starts > ends else "end"


#: Words before a place that make it where a trip starts ("from LA", "leaving Fresno").
_STARTS_A_TRIP = frozenset("from leaving departing leave depart".split())

#: Words of a slot that make it a place's whereabouts (a city, an area) rather than its name.
_WHERE = frozenset("city town area location neighborhood neighbourhood region country state suburb district".split())
#: The word before a place, and the kind of slot it says the place is for. Over the 2,800 first
#: turns of Schema-Guided Dialogue, a value after "in" is a city or area 228 times in 232, and
#: after "at" a name (a theatre, a salon) 53 times in 57 that are either.
_CUED = {"in": "where", "near": "where", "around": "where", "at": "name", "called": "name", "named": "name"}


def place_kind(spec: SlotSpec) -> str | None:
    """"name" for a slot that holds a place's name (`theater_name`, "Name of the salon"),
    "where" for its city or area, else None."""
    words = re.findall(r"[a-z]+", f"{spec.name.replace('_', ' ')} {spec.description}".lower())
    if "name" in spec.name.split("_") or "name" in words[:2]:
        return "name"
    return "where" if any(w in _WHERE for w in words) else None


def cued_slot(spec: SlotSpec, left: Sequence[SlotSpec], text: str, at: int) -> SlotSpec | None:
    """The slot the caller's preposition before a value says it belongs to, when the model put
    it in another: "from Vancouver" is where the trip starts, not where it ends; "in Concord"
    is the city, not the restaurant's name. The unfilled slot of the same type that the cue
    points to (the one whose name differs least), or None to keep the model's choice."""
    before = re.findall(r"[a-z]+", text[:at].lower())[-2:]
    last = before[-1] if before else ""
    mine, said, kind = trip_end(spec), None, trip_end
    if mine is not None:
        said = "start" if _STARTS_A_TRIP & set(before) else "end" if last in ("to", "towards", "into") else None
    else:
        mine, said, kind = place_kind(spec), _CUED.get(last), place_kind
    if mine is None or said is None or said == mine:
        return None
    twins = [x for x in left if x.type == spec.type and kind(x) == said]
    if not twins:
        return None
    mine_words = set(spec.name.split("_"))
    return max(twins, key=lambda x: len(mine_words & set(x.name.split("_"))))
