"""Words that say where a value belongs, shared by the parsers' placement (`ivr.nlu.extract`),
the rules for places (`ivr.nlu.places`) and the small model's extraction (`ivr.nlu.slm_extract`).

Each set is small and general to how English speakers give values on the phone; none lists a
flow's or a benchmark's values. A flow teaches its own words through its slots' names and
descriptions (`slot_words`), which every rule reads.
"""

from __future__ import annotations

import re

from ivr.nlu.understanding import SlotSpec

#: A word of the caller's, as said: letters of any script, digits, and the marks inside names
#: ("O'Hare", "AT&T", "St.", "Zürich").
WORD = re.compile(r"[^\W_][\w'&.-]*")

#: Words that carry no value of their own: function words and the verbs of asking.
COMMON = frozenset("""
a about above after again all also am an and any anything are around as at available be been
before being below between both but by can could day did do does doing done for from get getting
give go going good got had has have having hello help hey hi how i i'd i'll i'm i've if in into is
it it's its just know last let like looking make me might more most my need needs new next no not
now of off on one only or other our out over please really right say see she should so some
something somewhere soon than thank thanks that that's the their them then there these they thing
think this those time to today too try up us use very want wanted wants was way we we're well were
what when where which while who why will with would yeah yes you you're your book booking find
reserve reservation check tell show search looking look place places please sure okay ok also
im id ive wanna gonna gotta listen locate provide arrange schedule recommend suggest assist
""".split())

#: Ways of saying how many people, whatever a flow calls them (guests, passengers, riders): next
#: to a count, each stands for all the others.
PEOPLE = frozenset("""person persons people guest guests passenger passengers traveler travelers traveller
travellers rider riders adult adults attendee attendees participant participants individual individuals
pax party""".split())
#: Words that stand for each other next to a count ("one person" for "number of people").
SAME = {**{w: "people" for w in PEOPLE}, "child": "children", "kid": "kids", "ticket": "tickets",
        "night": "nights", "room": "rooms", "seat": "seats"}

#: Units a number measures rather than counts: "in 15 *minutes*" is no party of fifteen, unless
#: a slot's own words name the unit ("number of nights").
UNITS = frozenset("""second seconds sec secs minute minutes min mins hour hours hr hrs day days night nights
week weeks month months year years mile miles km kilometer kilometers kilometre kilometres meter meters
metre metres foot feet inch inches pound pounds lb lbs kg kilo kilos percent degrees times""".split())

#: Street words: a house number, names, then one of these ("379 Gellert Boulevard").
STREET = frozenset("""street st avenue ave boulevard blvd road rd drive dr lane ln way court ct place pl
parkway pkwy highway hwy terrace circle square plaza alley crescent""".split())
#: Words before a number that make it a label, not a quantity ("suite 109", "gate 12").
LABELS = frozenset("suite apt unit floor gate terminal platform flight route exit".split())

#: The caller's words before a value that say which end of a trip or a range it is: where it
#: starts ("from the 3rd", "leaving at 9") or where it ends ("until the 10th", "arriving at 5");
#: "to" counts only right before the value ("to the 7th", not "want to leave at 9").
START_CUES = frozenset("from leave leaves leaving depart departs departing pick pickup".split())
END_CUES = frozenset("""until till til through thru ending end drop dropoff off checkout arrive arrives arriving
land lands landing""".split())
#: ... and the ones that say it is the way back ("*back* on Sunday", "the *return* flight").
RETURN_CUES = frozenset("return returning returned back inbound".split())
#: Of those, the ones a trip has, not any range (a stay's "arriving Friday" is its check-in).
TRIP_CUES = frozenset("leave leaves leaving depart departs departing arrive arrives arriving land lands landing".split())

#: Words of a slot's name or description that make it one end of a trip (or of a transfer).
SLOT_STARTS = frozenset("from origin starting start departure departing depart leaving leave pickup pick source".split())
SLOT_ENDS = frozenset("to destination ending end arrival arriving arrive going dropoff drop towards recipient".split())

#: Words of a slot that make it a place's whereabouts (a city, an area).
WHERE = frozenset("city town area location neighborhood neighbourhood region country state suburb district".split())
#: Words of a slot that make its name a place's: a name slot without one (a caller's name, a
#: film's) is not where a place after "at" goes.
PLACE_NOUNS = frozenset("""restaurant hotel salon theatre theater cinema shop store venue clinic office bar
cafe gym spa airport station apartment property location place stadium arena museum hospital pharmacy
branch garage dealership school church club pub motel inn resort""".split())
#: Capitalised words that follow "in" or "at" and are no place: languages and holidays.
NOT_PLACES = frozenset("""english spanish french german italian portuguese chinese mandarin cantonese japanese
korean arabic hindi russian vietnamese tagalog polish dutch christmas easter thanksgiving halloween
hanukkah ramadan diwali""".split())


def words_of(name: str, description: str = "") -> list[str]:
    """The words of a slot's name and description, lowercased, in order."""
    return re.findall(r"[a-z]+", f"{name.replace('_', ' ')} {description}".lower())


def slot_words(spec: SlotSpec) -> list[str]:
    """The words of a slot's name and description, lowercased, in order."""
    return words_of(spec.name, spec.description)


ADDRESS_WORDS = frozenset({"address", "street"})
"""A text slot named or described with one of these holds a street address."""


def cased(text: str) -> bool:
    """Whether capitals in the caller's words mean anything: not when every word is capitalised
    (a transcript in capitals or title case), where no capital marks a name."""
    return any(w[:1].islower() for w in WORD.findall(text))
