"""Values said in passing, found by the parsers as spans and placed in the right slots."""

from datetime import date

import pytest

from ivr.nlu.extract import find_values
from ivr.nlu.slm_extract import answer_text, likely_carries_values, words_of
from ivr.nlu.understanding import SlotSpec

TODAY = date(2026, 12, 6)  # a Sunday
TABLE = [SlotSpec("party_size", "number", "How many people"), SlotSpec("day", "date"), SlotSpec("at", "time")]
CAR = [SlotSpec("pickup_date", "date", "Date the rental starts"), SlotSpec("dropoff_date", "date", "Date the car is returned")]
BILL = [SlotSpec("payee", "enum", choices=(("electricity", ("electric", "power")), ("water", ()))),
        SlotSpec("amount", "money"), SlotSpec("account", "digits", length=6)]


def found(text, specs):
    return {v.slot: v.value for v in find_values(text, specs, today=TODAY)}


@pytest.mark.parametrize("text, expected", [
    ("I need a table for four tomorrow at seven thirty", {"party_size": 4, "day": "2026-12-07", "at": "19:30"}),
    ("four people at seven", {"party_size": 4, "at": "19:00"}),
    ("a table for two on Friday at 8pm", {"party_size": 2, "day": "2026-12-11", "at": "20:00"}),
    ("at seven please", {"at": "19:00"}),  # "at" makes it a time, never a party of seven
    ("the 3rd, and it's for two people", {"party_size": 2, "day": "2027-01-03"}),
    ("I'd like a new one", {}),  # "one" is a value only next to the slot's own words
    ("just one person tonight", {"party_size": 1, "day": "2026-12-06"}),
    ("book a table", {}),
])
def test_several_values_in_one_turn_land_in_their_slots(text, expected):
    assert found(text, TABLE) == expected


def test_two_dates_go_in_the_order_said_and_the_second_follows_the_first():
    assert found("a car in Denver from the 3rd to the 7th", CAR) == {"pickup_date": "2027-01-03", "dropoff_date": "2027-01-07"}
    assert found("from March 3rd until March 7th", CAR) == {"pickup_date": "2027-03-03", "dropoff_date": "2027-03-07"}


def test_the_slots_own_words_place_a_value():
    assert found("I'll return it on the 9th", CAR) == {"dropoff_date": "2026-12-09"}


def test_money_digits_and_choices_together():
    assert found("I'd like to pay my electric bill, it's eighty two fifty", BILL) == {"payee": "electricity", "amount": "82.50"}
    assert found("pay $82.50 to water from account 123456", BILL) == {"payee": "water", "amount": "82.50", "account": "123456"}
    assert found("pay forty dollars", BILL) == {"amount": "40.00"}


def test_spans_are_the_callers_words():
    values = find_values("a table for four tomorrow at 7:30 pm", TABLE, today=TODAY)
    text = "a table for four tomorrow at 7:30 pm"
    for v in values:
        assert text[v.start:v.start + len(v.said)] == v.said
    assert {v.said for v in values} == {"four", "tomorrow", "7:30"}  # "pm" changes nothing here
    assert all(v.source == "parser" for v in values)


def test_text_slots_are_left_to_the_model():
    assert find_values("a hotel in Denver", [SlotSpec("city", "text")], today=TODAY) == []


def test_a_yes_no_slot_named_for_a_feature_is_set_when_the_feature_is_named():
    specs = [SlotSpec("has_wifi", "yes_no"), SlotSpec("pets_allowed", "yes_no"), SlotSpec("shared_ride", "yes_no")]
    assert found("a room with WiFi, and no pets please", specs) == {"has_wifi": True, "pets_allowed": False}
    assert found("I need a ride downtown", specs) == {}  # "ride" alone is not a shared ride
    assert found("a shared ride please", specs) == {"shared_ride": True}


def test_a_value_after_until_is_the_end_of_the_range():
    assert found("I need a car until the 10th", CAR) == {"dropoff_date": "2026-12-10"}


def test_the_counted_word_next_to_a_number_decides_its_slot():
    specs = [SlotSpec("number_of_days", "number", "Number of days for the reservation"),
             SlotSpec("number_of_rooms", "number", "Number of rooms in the reservation")]
    assert found("a hotel reservation for 2 rooms", specs) == {"number_of_rooms": 2}
    assert found("3 rooms for four days", specs) == {"number_of_rooms": 3, "number_of_days": 4}


def test_the_gate_ignores_common_and_request_words_and_placed_values():
    request = words_of(["I want to book a table", "reserve a table for dinner"])
    assert not likely_carries_values("I'd like to book a table please", request, [])
    assert likely_carries_values("a table at Nopa please", request, [])
    text = "a table for four tomorrow"
    assert not likely_carries_values(text, request, [(text.index("four"), len(text))])


def test_the_models_answer_format():
    specs = [SlotSpec("city", "text"), SlotSpec("cuisine", "text")]
    assert answer_text(specs, ()) == "none"
    assert answer_text(specs, (("cuisine", "Thai"), ("city", "San Jose"))) == "city: San Jose\ncuisine: Thai\n"


def test_a_numeral_glued_to_letters_is_a_name_not_a_count():
    specs = [SlotSpec("number_of_tickets", "number", "Number of tickets")]
    assert found("two tickets for the 3d showing", specs) == {"number_of_tickets": 2}
    assert found("a 4k tv", specs) == {}


FLAT = [SlotSpec("baths", "number", "Number of bathrooms in the flat"), SlotSpec("beds", "number", "Number of bedrooms")]
STAY = [SlotSpec("nights", "number", "How many nights the stay lasts"), SlotSpec("guests", "number", "Number of guests staying")]
TAXI = [SlotSpec("riders", "number", "Number of riders to call a taxi for"), SlotSpec("pickup", "time", "When to pick them up")]


@pytest.mark.parametrize("specs, text, expected", [
    # a count is of the noun after it, compounds and plurals included
    (FLAT, "a 3 bedroom flat with 2 bathrooms", {"beds": 3, "baths": 2}),
    (FLAT, "something with one bath and four bed rooms", {"baths": 1, "beds": 4}),
    (FLAT, "I want three bedrooms", {"beds": 3}),
    # however the flow names its people, "people", "adults" and "travellers" count them
    (STAY, "two nights for three adults", {"nights": 2, "guests": 3}),
    (STAY, "it's 4 people, 3 nights", {"guests": 4, "nights": 3}),
    # numbers that count nothing the slots count stay out of them
    (TAXI, "pick me up in 20 minutes please", {}),
    (TAXI, "I'm at 221 Baker Street, there are two of us", {"riders": 2}),
    (TAXI, "take me to 54 37th Avenue", {}),
    (TAXI, "can you call one for me at 5 pm", {"pickup": "17:00"}),  # "one" is a taxi, not a rider
    (TAXI, "a cab for one person at 5 pm", {"riders": 1, "pickup": "17:00"}),
])
def test_a_number_fills_the_slot_that_counts_what_it_counts(specs, text, expected):
    assert found(text, specs) == expected


def test_a_compound_is_placed_by_the_slot_name_it_holds():
    hotel = [SlotSpec("star_rating", "number", "Star rating of the hotel"), SlotSpec("rooms", "number", "Rooms to book")]
    assert found("just one hotel room please", hotel) == {"rooms": 1}
    assert found("a 4 star hotel, 2 rooms", hotel) == {"star_rating": 4, "rooms": 2}


def test_to_and_from_say_which_of_two_choices_of_one_kind():
    accounts = (("checking", ()), ("savings", ()))
    specs = [SlotSpec("account", "enum", "The caller's account", accounts),
             SlotSpec("recipient_account", "enum", "The account the money goes to", accounts)]
    assert found("move money from savings to my checking", specs) == {"account": "savings", "recipient_account": "checking"}
    assert found("send it to their savings account", specs) == {"recipient_account": "savings"}


def test_which_end_of_a_trip_a_slot_is():
    from ivr.nlu.extract import trip_end

    assert trip_end(SlotSpec("origin_city", "text", "Starting city for the trip")) == "start"
    assert trip_end(SlotSpec("to_location", "text", "City where the bus is going to")) == "end"
    assert trip_end(SlotSpec("from_station", "text", "Station the bus leaves from")) == "start"
    assert trip_end(SlotSpec("riders", "number", "Number of riders to call a taxi for")) is None
    assert trip_end(SlotSpec("cuisine", "text", "Kind of food")) is None


def test_the_word_before_a_place_says_which_slot_it_fills():
    from ivr.nlu.slm_extract import cued_slot, place_kind

    city = SlotSpec("city", "text", "City where the cinema is")
    name = SlotSpec("cinema_name", "text", "Name of the cinema")
    origin = SlotSpec("origin", "text", "City the trip starts from")
    dest = SlotSpec("destination", "text", "City the trip goes to")
    assert (place_kind(city), place_kind(name), place_kind(SlotSpec("genre", "text", "Kind of film"))) == ("where", "name", None)
    text = "a film in Petaluma at the Roxy Cinema, leaving from Oakland"
    assert cued_slot(name, [city], text, text.index("Petaluma")) == city
    assert cued_slot(city, [name], text, text.index("Roxy")) is None  # "the" is no cue
    assert cued_slot(city, [name], "a film at Roxy Cinema", len("a film at ")) == name
    assert cued_slot(dest, [origin], text, text.index("Oakland")) == origin
    assert cued_slot(origin, [dest], text, text.index("Oakland")) is None  # the model was right
    assert cued_slot(name, [], text, text.index("Petaluma")) is None  # nowhere else to put it


def test_a_name_may_start_with_a_house_number_and_hold_a_capitalised_common_word():
    from ivr.nlu.slm_extract import _spans

    names = {s.said for s in _spans("take me to 379 Gellert Boulevard in New York. Thanks", names_only=True)}
    assert {"379 Gellert Boulevard", "New York", "Gellert Boulevard"} <= names
    assert "York Thanks" not in names  # a name does not run on into the next sentence
