"""Which slot a place belongs to, by the slot's words and the caller's word before it."""

from ivr.nlu.places import cued_slot, place_kind, trip_end
from ivr.nlu.understanding import SlotSpec


def test_which_end_of_a_trip_a_slot_is():
    assert trip_end(SlotSpec("origin_city", "text", "Starting city for the trip")) == "start"
    assert trip_end(SlotSpec("to_location", "text", "City where the bus is going to")) == "end"
    assert trip_end(SlotSpec("from_station", "text", "Station the bus leaves from")) == "start"
    assert trip_end(SlotSpec("riders", "number", "Number of riders to call a taxi for")) is None
    assert trip_end(SlotSpec("cuisine", "text", "Kind of food")) is None


def test_the_word_before_a_place_says_which_slot_it_fills():
    city = SlotSpec("city", "text", "City where the cinema is")
    name = SlotSpec("cinema_name", "text", "Name of the cinema")
    origin = SlotSpec("origin", "text", "City the trip starts from")
    dest = SlotSpec("destination", "text", "City the trip goes to")
    assert (place_kind(city), place_kind(name), place_kind(SlotSpec("genre", "text", "Kind of film"))) == ("where", "name", None)
    text = "a film in Petaluma at the Roxy Cinema, leaving from Oakland"
    assert cued_slot(name, [city], text, text.index("Petaluma")) == city
    assert cued_slot(city, [name], text, text.index("Roxy")) == name  # "at the": the article is skipped
    assert cued_slot(city, [name], "a film for Roxy", len("a film for ")) is None  # "for" is no cue
    assert cued_slot(city, [name], "a film at Roxy Cinema", len("a film at ")) == name
    assert cued_slot(dest, [origin], text, text.index("Oakland")) == origin
    assert cued_slot(origin, [dest], text, text.index("Oakland")) is None  # the model was right
    assert cued_slot(name, [], text, text.index("Petaluma")) is None  # nowhere else to put it


def test_a_city_after_in_fills_the_slot_for_where_things_are():
    from ivr.nlu.places import places_said
    from ivr.nlu.understanding import SlotValue

    hotel = [SlotSpec("destination", "text", "Location of the hotel"), SlotSpec("hotel_name", "text", "Name of the hotel")]
    text = "can you find me a room for tonight in Kuala Lumpur, Malaysia."
    (v,) = places_said(text, hotel, [])
    assert (v.slot, v.value, v.source, text[v.start:v.start + len(v.said)]) == (
        "destination", "Kuala Lumpur, Malaysia", "parser", "Kuala Lumpur, Malaysia")
    (v,) = places_said("a room at the Hilton Garden Inn, please", hotel, [])  # a name, not where
    assert (v.slot, v.value) == ("hotel_name", "Hilton Garden Inn")
    assert places_said("a room in town", hotel, []) == []  # no name said
    said = SlotValue("destination", "Oslo", "Oslo", "model", 11)
    assert places_said("a hotel in Oslo, Norway. Thanks", hotel, [said])[0].value == "Oslo, Norway"
    # the model's place stays; nothing said after "in" is added to a filled slot
    assert places_said("a hotel in Oslo", hotel, [SlotValue("destination", "Oslo", "Oslo", "model", 11)]) == [
        SlotValue("destination", "Oslo", "Oslo", "model", 11)]
    # a month the date parser took is not a city
    assert places_said("a hotel in March", hotel, [], claimed=[(11, 16)]) == []
    # where a trip starts is not said with "in"
    bus = [SlotSpec("from_city", "text", "City the bus leaves from")]
    assert places_said("a bus in Denver", bus, []) == []


def test_a_region_after_a_place_is_part_of_it():
    from ivr.nlu.places import with_region
    from ivr.nlu.understanding import SlotValue

    def region(text, place):
        return with_region(text, SlotValue("city", place, place, "model", text.index(place))).value

    assert region("a bus from Fresno, CA - can you help?", "Fresno") == "Fresno, CA"
    assert region("to Sydney, Australia.", "Sydney") == "Sydney, Australia"
    assert region("to Paris, and then home", "Paris") == "Paris"
    assert region("to Paris, Can you help", "Paris") == "Paris"  # a common word is no region


def test_an_apartment_after_a_street_address_is_part_of_it():
    """The crew needs 'apartment 4': the model gave the street only."""
    from ivr.nlu.places import with_unit
    from ivr.nlu.understanding import SlotValue

    def unit(text, address):
        return with_unit(text, SlotValue("address", address, address, "model", text.index(address))).value

    assert unit("water coming up at 379 Gellert Boulevard, apartment 4", "379 Gellert Boulevard") \
        == "379 Gellert Boulevard, apartment 4"
    assert unit("a leak at 5 Main St. unit 3B please", "5 Main St") == "5 Main St. unit 3B"
    assert unit("12 Oak Street, thanks", "12 Oak Street") == "12 Oak Street"
    assert unit("dinner at Nopa, suite 4", "Nopa") == "Nopa"  # not a street address


def test_from_and_to_fill_the_ends_of_a_trip_the_model_left():
    from ivr.nlu.places import places_said
    from ivr.nlu.understanding import SlotValue

    bus = [SlotSpec("origin", "text", "City the bus leaves from"), SlotSpec("destination", "text", "City the bus goes to")]
    values = places_said("a bus from SF to Sacramento, CA tomorrow", bus, [SlotValue("origin", "SF", "SF", "model", 11)])
    assert [(v.slot, v.value) for v in values] == [("origin", "SF"), ("destination", "Sacramento, CA")]
    assert [(v.slot, v.value) for v in places_said("I'm leaving Fresno today", bus, [])] == [("origin", "Fresno")]
    # a film's name is no place: "at" is the cinema's
    films = [SlotSpec("movie_name", "text", "Name of the film"), SlotSpec("theater_name", "text", "Name of the cinema")]
    assert [(v.slot, v.value) for v in places_said("something at the Roxy", films, [])] == [("theater_name", "Roxy")]
    # two places' names: "at" does not say which
    trip = [SlotSpec("hotel_name", "text", "Name of the hotel"), SlotSpec("restaurant_name", "text", "Name of the restaurant")]
    assert places_said("dinner at the Ritz", trip, []) == []


def test_what_a_cue_must_not_fill():
    from ivr.nlu.places import places_said, with_region
    from ivr.nlu.understanding import SlotValue

    def said(text, specs, found=()):
        return [(v.slot, v.value) for v in places_said(text, specs, list(found))]

    bus = [SlotSpec("origin", "text", "City the bus leaves from"), SlotSpec("destination", "text", "City the bus goes to")]
    assert said("a bus from SF to LA", bus) == [("origin", "SF"), ("destination", "LA")]  # each name stops at the next cue
    hotel = [SlotSpec("city", "text", "City of the hotel")]
    assert said("a hotel in Denver, Friday to Sunday", hotel) == [("city", "Denver")]  # a weekday is no region
    assert said("I'm in Toronto and I need a room", hotel) == [("city", "Toronto")]
    assert said("can we do this in Spanish", hotel) == []
    assert said("a room in Zürich please", hotel) == [("city", "Zürich")]
    assert said("in Oakland. Is there a room", hotel) == [("city", "Oakland")]
    assert said("something in Singaporean cuisine", [SlotSpec("city", "text", "City of the restaurant")]) == []
    taxi = [SlotSpec("destination", "text", "Where the taxi goes to"),
            SlotSpec("passenger_name", "text", "Name of the passenger")]
    assert said("pick me up at Union Square", taxi) == []  # a person's name is no place's
    assert said("can I talk to John", taxi) == []
    assert said("everything in lowercase to denver", taxi) == []  # no capitals, no names
    v = SlotValue("city", "Portland", "Portland", "model", 10)
    assert with_region("events in Portland, OR can you help", v).value == "Portland, OR"  # capitals, not "or"


def test_a_cue_is_the_word_right_before():
    trip = [SlotSpec("origin", "text", "City the trip starts from"), SlotSpec("destination", "text", "City the trip goes to")]
    text = "I am leaving for Denver on Friday"
    assert cued_slot(trip[1], [trip[0]], text, text.index("Denver")) is None


def test_what_validate_explain_says_a_slot_is_read_as():
    from ivr.nlu.places import read_as

    assert read_as(SlotSpec("origin", "text", "City the trip starts from")) == "where a trip starts"
    assert read_as(SlotSpec("destination", "text", "Where the taxi goes to")) == "where a trip ends"
    assert read_as(SlotSpec("city", "text", "City of the restaurant")) == "a city or area"
    assert read_as(SlotSpec("restaurant_name", "text", "Name of the restaurant")) == "a place's name"
    assert read_as(SlotSpec("caller_name", "text", "Name of the caller")) is None
    assert read_as(SlotSpec("party_size", "number", "How many people")) is None


RIDE_FLOW = """
flow: rides
start: menu
slots:
  pickup: {type: text, description: Where the rider is picked up from}
  destination: {type: text, description: Where the taxi goes to}
  riders: {type: number, description: How many riders}
nodes:
  menu:
    say: Where to?
    intents:
      book_ride:
        examples: [I need a cab, book me a taxi]
        goto: ask_pickup
  ask_pickup: {say: "Where from?", collect: pickup, next: ask_destination}
  ask_destination: {say: "Where to?", collect: destination, next: ask_riders}
  ask_riders: {say: "How many?", collect: riders, next: done}
  done: {say: Booked., hangup: true}
"""


def test_validate_explain_shows_how_a_place_slot_is_read(tmp_path, capsys):
    from ivr.tools.cli import main

    (tmp_path / "rides.yaml").write_text(RIDE_FLOW)
    assert main(["validate", "--explain", str(tmp_path / "rides.yaml")]) == 0
    out = capsys.readouterr().out
    assert "menu (intent book_ride): may hear pickup (where a trip starts), destination (where a trip ends), riders" in out
