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


@pytest.mark.parametrize("answer", ["three", "tomorrow afternoon", "three o'clock", "midday", "ten in the morning",
                                    "March 3rd 2027", "monday morning", "2 30"])
def test_words_of_values_are_no_name_place_or_thing(answer):
    """An answer to a time or date question leaves nothing for a text slot ahead (a patient's
    name), even where its own parser, not the in-passing one, read it."""
    assert not likely_carries_values(answer, frozenset(), [])


@pytest.mark.parametrize("answer", ["Maria Lopez", "at Seven Hills", "Route 66", "a cleaning tomorrow at three"])
def test_a_value_with_a_word_of_its_own_still_asks_the_model(answer):
    assert likely_carries_values(answer, frozenset(), [])


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


def test_a_name_may_start_with_a_house_number_and_hold_a_capitalised_common_word():
    from ivr.nlu.slm_extract import _spans

    names = {s.said for s in _spans("take me to 379 Gellert Boulevard in New York. Thanks", names_only=True)}
    assert {"379 Gellert Boulevard", "New York", "Gellert Boulevard"} <= names
    assert "York Thanks" not in names  # a name does not run on into the next sentence


def test_a_number_that_labels_something_counts_nothing():
    assert found("take us to 555 Knowles Drive Suite 109, three of us", TAXI) == {"riders": 3}
    assert found("I'm at gate 12 with 2 people", TAXI) == {"riders": 2}
    assert found("go to apartment #107", TAXI) == {}


def test_at_before_a_number_that_counts_a_noun_is_no_time():
    hotel = [SlotSpec("star_rating", "number", "Star rating of the hotel"), SlotSpec("check_in", "time", "Check-in time")]
    assert found("I'm looking at three star hotels", hotel) == {"star_rating": 3}
    assert found("check in at three please", hotel) == {"check_in": "15:00"}


FLIGHT = [SlotSpec("outbound_departure_time", "time", "Departure time for the outbound leg flight"),
          SlotSpec("outbound_arrival_time", "time", "Arrival time for the outbound leg flight"),
          SlotSpec("inbound_arrival_time", "time", "Arrival time for the return leg flight"),
          SlotSpec("inbound_departure_time", "time", "Departure time for the return leg flight")]


@pytest.mark.parametrize("text, expected", [
    ("I'd like to leave at 12:45", {"outbound_departure_time": "12:45"}),  # "to" of "like to" is no range
    ("arriving at 5 pm at the latest", {"outbound_arrival_time": "17:00"}),
    ("the flight back should leave at 3:15 in the afternoon", {"inbound_departure_time": "15:15"}),
    ("out at 9 am. The return flight can leave at 6 pm", {"outbound_departure_time": "09:00", "inbound_departure_time": "18:00"}),
])
def test_the_way_out_the_way_back_and_which_end(text, expected):
    assert found(text, FLIGHT) == expected


def test_a_feature_is_named_with_an_article_between_or_another_ending():
    ride = [SlotSpec("shared_ride", "yes_no", "Whether the ride is shared")]
    assert found("I'm happy sharing a ride", ride) == {"shared_ride": True}
    assert found("share the ride please", ride) == {"shared_ride": True}
    assert found("no shared ride", ride) == {"shared_ride": False}
    assert found("I'll ride alone", ride) == {}


def test_a_numeral_after_a_name_is_part_of_it():
    assert found("a table at Hisui 2 for four", TABLE) == {"party_size": 4}
    assert found("Studio 54 please, 3 people", TABLE) == {"party_size": 3}
    assert found("on December 9 for 2", TABLE) == {"day": "2026-12-09", "party_size": 2}  # a month is no name


def test_a_choice_glued_to_a_numeral():
    show = [SlotSpec("show_type", "enum", choices=(("3d", ()), ("imax", ()), ("regular", ())))]
    assert found("a 3d movie please", show) == {"show_type": "3d"}


APPOINTMENT = [SlotSpec("date", "date", "Day of the appointment"), SlotSpec("time", "time", "Time of the appointment")]


@pytest.mark.parametrize("specs, text, expected", [
    # a word after a number that no slot counts and no unit says nothing: the value stands
    (APPOINTMENT, "Friday at 3 works", {"date": "2026-12-11", "time": "15:00"}),
    (APPOINTMENT, "can we do Thursday at 2 instead", {"date": "2026-12-10", "time": "14:00"}),
    (APPOINTMENT, "I'd like Friday at 3 with Dr. Patel", {"date": "2026-12-11", "time": "15:00"}),  # a title, no street
    (TABLE, "for 4 friends", {"party_size": 4}),
    (TABLE, "make it 5 instead", {"party_size": 5}),
    (TABLE, "no, at 8 instead", {"at": "08:00"}),
    # a count before a street is no house number when words come between
    (TAXI, "a cab for 2 to Main Street", {"riders": 2}),
    (TAXI, "pick me up at 7 at Main St", {"pickup": "19:00"}),
    # a name and a number with a comma or a full stop between, or a count noun after, is no "Studio 54"
    (TABLE, "Hi this is John, 4 people at 7", {"party_size": 4, "at": "19:00"}),
    (TABLE, "It's Bob. 4 people", {"party_size": 4}),
    (TABLE, "at Nopa 4 people", {"party_size": 4}),
    (TABLE, "TABLE FOR 4 PEOPLE AT 7", {"party_size": 4, "at": "19:00"}),  # capitals that mean nothing
    (TABLE, "damage to my car on 5th Avenue", {}),  # a street, no day
    (TABLE, "it's the third time I'm calling about this", {}),  # a count of times, no day
    (TABLE, "we're on West 42nd Street, two of us", {"party_size": 2}),
    (TABLE, "on the 5th at 3", {"day": "2027-01-05", "at": "15:00"}),
])
def test_what_the_rules_must_not_take_away(specs, text, expected):
    assert found(text, specs) == expected


def test_a_stay_is_not_a_trip():
    stay = [SlotSpec("check_in_date", "date", "Day the guest arrives"),
            SlotSpec("check_out_date", "date", "Day the guest leaves")]
    assert found("arriving Friday, leaving Sunday", stay) == {"check_in_date": "2026-12-11", "check_out_date": "2026-12-13"}


def test_features_said_in_other_forms_only_where_two_words_name_them():
    ride = [SlotSpec("shared_ride", "yes_no", "Whether the ride is shared")]
    smoke = [SlotSpec("smoking", "yes_no", "Whether smoking is allowed")]
    assert found("I don't mind sharing a ride", ride) == {"shared_ride": True}
    assert found("I'd like the smoked salmon", smoke) == {}


def test_back_is_the_far_end_where_no_slot_is_the_way_back():
    days = [SlotSpec("start_date", "date", "First day"), SlotSpec("end_date", "date", "Last day")]
    assert found("back on Sunday", days) == {"end_date": "2026-12-13"}
    assert found("from Friday to Sunday", days) == {"start_date": "2026-12-11", "end_date": "2026-12-13"}


ACCOUNT_AND_CALL = [SlotSpec("phone", "phone"), SlotSpec("day", "date"), SlotSpec("at", "time"),
                    SlotSpec("account", "digits", length=6)]


@pytest.mark.parametrize("text, values", [
    # whisper writes a number read a digit at a time with commas
    ("my account is 4, 5, 7, 2, 1, 9 and I want to pay", {"account": "457219"}),  # was a time, 16:57
    ("my number is 5, 5, 5, 1, 2, 3, 4, 5, 6, 7", {"phone": "5551234567"}),  # was 8 digits of it
    ("my number is five five five one two three four five six seven", {"phone": "5551234567"}),  # was 17:55
    ("move it to tuesday at 3, my number is 555 123 4567", {"phone": "5551234567", "day": "2026-12-08", "at": "15:00"}),
    ("at 4, please", {"at": "16:00"}),
    ("at five fifty five", {"at": "17:55"}),
])
def test_a_number_read_a_digit_at_a_time_is_one_value_in_passing(text, values):
    assert found(text, ACCOUNT_AND_CALL) == values


def test_part_of_a_longer_number_is_not_a_shorter_one():
    """Six of a phone number's ten digits are no account number."""
    assert found("my number is 5, 5, 5, 1, 2, 3, 4, 5, 6, 7", [SlotSpec("account", "digits", length=6)]) == {}


def test_a_choice_said_after_a_negation_is_not_taken_in_passing():
    urgency = [SlotSpec("urgency", "enum", choices=(("emergency", ("flooding",)), ("whenever", ("no rush",))))]
    assert found("there's a leak but it's not an emergency", urgency) == {}
    assert found("there's a leak, no rush", urgency) == {"urgency": "whenever"}


@pytest.mark.parametrize("text", ["four five seven two", "one nine three three", "4, 5, 7, 2"])
def test_no_digit_of_a_number_being_read_is_an_amount_ahead(text):
    """The start of an account number, read a digit at a time, fills no amount slot ahead."""
    assert found(text, [SlotSpec("account", "digits", length=8), SlotSpec("amount", "money")]) == {}


@pytest.mark.parametrize("text, values", [
    ("hi, I called 3 times last week about my bill, I want to pay it, account 45721933", {"account": "45721933"}),
    ("I want to pay 50 dollars on account 45721933", {"account": "45721933", "amount": "50.00"}),
    ("pay $40 for 2 months", {"amount": "40.00"}),
    ("I want to pay 40 please", {"amount": "40.00"}),
])
def test_a_number_that_counts_something_is_no_amount(text, values):
    assert found(text, [SlotSpec("account", "digits", length=8), SlotSpec("amount", "money")]) == values


def test_an_address_in_passing_has_a_number_or_a_street_in_it():
    from ivr.nlu.slm_extract import SlotExtractor

    address = SlotSpec("address", "text", "the street address to deliver to")
    assert SlotExtractor._validated(address, "RX") is None  # of "RX 1234567"
    assert SlotExtractor._validated(address, "379 Gellert Boulevard") == "379 Gellert Boulevard"
    assert SlotExtractor._validated(address, "Main Street") == "Main Street"
    assert SlotExtractor._validated(SlotSpec("pharmacy", "text"), "CVS") == "CVS"
