"""Days named without naming one ("next week", "in March", "the weekend") are asked about and
the answer read among them; a past date slot (a birth, an accident) reads "Tuesday" looking
back. The parser, then the engine with the parsers' values."""

from datetime import date, timedelta

import pytest

from ivr.dialog.engine import FlowEngine, Say, SetSlot
from ivr.dialog.loader import load_flow_text
from ivr.nlu.extract import find_values
from ivr.nlu.slots import parse_date
from ivr.nlu.understanding import SlotSpec, Understanding

WEDNESDAY = date(2025, 3, 12)


@pytest.mark.parametrize("text, first, last, question", [
    ("next week", "2025-03-17", "2025-03-23", "Which day next week?"),
    ("sometime early next week", "2025-03-17", "2025-03-23", "Which day next week?"),
    ("this week", "2025-03-12", "2025-03-16", "Which day this week?"),  # the days gone are not offered
    ("the week after next", "2025-03-24", "2025-03-30", "Which day the week after next?"),
    ("this weekend", "2025-03-15", "2025-03-16", "Saturday or Sunday?"),
    ("next weekend", "2025-03-22", "2025-03-23", "Saturday or Sunday?"),
    ("next month", "2025-04-01", "2025-04-30", "Which day next month?"),
    ("later this month", "2025-03-12", "2025-03-31", "Which day this month?"),
    ("in june", "2025-06-01", "2025-06-30", "Which day in June?"),
    ("sometime in may", "2025-05-01", "2025-05-31", "Which day in May?"),
    ("march", "2025-03-12", "2025-03-31", "Which day in March?"),
    ("in february", "2026-02-01", "2026-02-28", "Which day in February?"),
    ("last week", "2025-03-03", "2025-03-09", "Which day last week?"),  # said so, even looking ahead
])
def test_days_named_without_a_day_are_a_span_with_its_question(text, first, last, question):
    result = parse_date(text, today=WEDNESDAY)
    assert not result.ok and result.reason == question
    assert (result.span.first.isoformat(), result.span.last.isoformat()) == (first, last)


@pytest.mark.parametrize("said, answer, expected", [
    ("next week", "tuesday", "2025-03-18"),  # not this coming Tuesday, the 18th's week
    ("next week", "how about wednesday", "2025-03-19"),
    ("next week", "the 20th", "2025-03-20"),
    ("next week", "actually april 2nd", "2025-04-02"),  # a whole date said instead is taken as said
    ("next week", "tomorrow", "2025-03-13"),
    ("this weekend", "sunday", "2025-03-16"),
    ("next month", "the fifth", "2025-04-05"),
    ("in june", "12", "2025-06-12"),
    ("in june", "um the twenty first please", "2025-06-21"),
])
def test_the_answer_to_the_span_question_is_a_day_among_its_days(said, answer, expected):
    span = parse_date(said, today=WEDNESDAY).span
    assert parse_date(answer, today=WEDNESDAY, span=span).value == expected


def test_a_weekday_in_a_month_is_asked_about_again():
    span = parse_date("in june", today=WEDNESDAY).span
    result = parse_date("a tuesday", today=WEDNESDAY, span=span)
    assert not result.ok and result.reason == "Which date in June?" and result.span == span


@pytest.mark.parametrize("text, expected", [
    ("as soon as possible", "2025-03-12"),
    ("ASAP please", "2025-03-12"),
    ("whatever's the earliest you have", "2025-03-12"),
    ("the next available", "2025-03-12"),
])
def test_as_soon_as_possible_is_today(text, expected):
    assert parse_date(text, today=WEDNESDAY).value == expected
    assert not parse_date(text, today=WEDNESDAY, past=True).ok  # a birth is never "as soon as possible"


@pytest.mark.parametrize("text, ahead, back", [
    ("tuesday", "2025-03-18", "2025-03-11"),
    ("on monday", "2025-03-17", "2025-03-10"),
    ("wednesday", "2025-03-19", "2025-03-05"),
    ("this wednesday", "2025-03-12", "2025-03-12"),
    ("last tuesday", "2025-03-11", "2025-03-11"),  # "last" looks back whatever the slot
    ("tuesday last week", "2025-03-04", "2025-03-04"),
    ("march 20th", "2025-03-20", "2024-03-20"),
    ("march 5th", "2026-03-05", "2025-03-05"),
    ("on the 20th", "2025-03-20", "2025-02-20"),
    ("the 3rd", "2025-04-03", "2025-03-03"),
    ("three days ago", "2025-03-09", "2025-03-09"),
    ("a couple of weeks ago", "2025-02-26", "2025-02-26"),
    ("last night", "2025-03-11", "2025-03-11"),
    ("this morning", "2025-03-12", "2025-03-12"),
    ("3/3/65", "1965-03-03", "1965-03-03"),  # a two-digit year a decade or more ahead is last century's
    ("3/3/31", "2031-03-03", "1931-03-03"),  # looking back, no year ahead
])
def test_a_past_date_reads_the_day_looking_back(text, ahead, back):
    assert parse_date(text, today=WEDNESDAY).value == ahead
    assert parse_date(text, today=WEDNESDAY, past=True).value == back


def test_in_passing_a_past_slot_reads_the_day_looking_back():
    specs = [SlotSpec("happened", "date", past=True)]
    values = find_values("someone backed into my car on tuesday", specs, today=WEDNESDAY)
    assert [(v.slot, v.value) for v in values] == [("happened", "2025-03-11")]


FLOW = """
flow: visits
start: menu
slots:
  day: {type: date}
  at: {type: time}
  date_of_birth: {type: date}
  incident_day: {type: date, past: true, description: when it happened}
nodes:
  menu:
    say: "How can I help?"
    intents:
      book: {examples: ["I'd like to book a visit", "an appointment please"], goto: ask_day}
      report: {examples: ["I want to report an accident"], goto: ask_incident}
  ask_day: {say: "What day?", collect: day, next: ask_time}
  ask_time: {say: "What time?", collect: at, next: ask_birth}
  ask_birth: {say: "Your date of birth?", collect: date_of_birth, next: done}
  ask_incident: {say: "When did it happen?", collect: incident_day, next: done}
  done: {say: "Thanks.", hangup: true}
"""


def engine(flow=FLOW):
    e = FlowEngine(load_flow_text(flow))
    e.start()
    return e


def turn(e, text, intent=None):
    values = tuple(find_values(text, e.listening_slots(intent), today=date.today()))
    return e.on_text(text, Understanding(intent, 0.95 if intent else 0.0, "test", values))


def said(effects):
    return [x.text for x in effects if isinstance(x, Say)]


def kept(effects):
    return {x.name: x.value for x in effects if isinstance(x, SetSlot)}


def next_weeks(weekday: int) -> str:
    today = date.today()
    return (today - timedelta(days=today.weekday()) + timedelta(days=7 + weekday)).isoformat()


def test_a_date_question_answered_next_week_asks_which_day_and_reads_the_answer_in_that_week():
    e = engine()
    turn(e, "an appointment please", "book")
    assert said(turn(e, "sometime next week")) == ["Which day next week?"]
    assert e.state.node == "ask_day"
    effects = turn(e, "tuesday")
    assert kept(effects) == {"day": next_weeks(1)} and e.state.node == "ask_time"


def test_next_week_said_with_the_request_narrows_the_date_question():
    e = engine()
    turn(e, "I'd like to book a visit next week", "book")
    assert e.state.node == "ask_day"
    assert kept(turn(e, "thursday works")) == {"day": next_weeks(3)}


def test_the_span_question_asked_at_most_a_few_times_then_the_node_handles_the_answer():
    e = engine()
    turn(e, "an appointment please", "book")
    asked = [said(turn(e, "next week")) for _ in range(4)]
    assert asked[:3] == [["Which day next week?"]] * 3
    assert asked[3] != ["Which day next week?"]  # then the node's own no-match, not a loop


def test_a_date_of_birth_without_a_year_is_not_put_in_the_future():
    e = engine()
    turn(e, "an appointment please", "book")
    turn(e, "tomorrow")
    turn(e, "10 am")
    effects = turn(e, "3/3/65")
    assert kept(effects) == {"date_of_birth": "1965-03-03"}


def test_a_past_slot_reads_a_weekday_as_the_last_one():
    e = engine()
    turn(e, "I want to report an accident", "report")
    today = date.today()
    last_tuesday = today - timedelta(days=(today.weekday() - 1) % 7 or 7)
    assert kept(turn(e, "it was on tuesday")) == {"incident_day": last_tuesday.isoformat()}


def test_past_is_only_for_dates():
    with pytest.raises(Exception, match="only applies to date slots"):
        load_flow_text(FLOW.replace("at: {type: time}", "at: {type: time, past: true}"))


@pytest.mark.parametrize("text, expected", [
    ("the third of March, sixty-five", "1965-03-03"),
    ("March 3, '65", "1965-03-03"),
    ("3rd of March 65", "1965-03-03"),
    ("nineteen sixty five, March third", "1965-03-03"),
    ("3-3-1965", "1965-03-03"),
    ("3.3.65", "1965-03-03"),
    ("March 3rd, nineteen sixty-five", "1965-03-03"),
    ("march 3rd 10 am", "2025-03-03"),  # an hour is no year
])
def test_a_birth_date_keeps_its_year_however_it_is_said(text, expected):
    assert parse_date(text, today=WEDNESDAY, past=True).value == expected


@pytest.mark.parametrize("answer, expected", [
    ("March 3rd 1965, no wait, the 4th", "1965-03-04"),  # the day corrected in the month said
    ("March 3rd 1965, sorry, March 5th 1966", "1966-03-05"),
])
def test_a_date_of_birth_corrected_in_one_answer(answer, expected):
    e = engine()
    turn(e, "an appointment please", "book")
    turn(e, "tomorrow")
    turn(e, "10 am")
    assert kept(turn(e, answer)) == {"date_of_birth": expected}


def test_the_value_an_answer_gives_is_the_lines_own_reading():
    """What `ivr nlu` and `ivr chat` show for a node's own slot: the correction inside the
    answer, and the days a date question narrowed."""
    e = engine()
    turn(e, "an appointment please", "book")
    assert e.answer_value("Friday, no wait, Thursday") == (
        date.today() + timedelta(days=(3 - date.today().weekday()) % 7 or 7)).isoformat()
    turn(e, "next week")
    assert e.answer_value("tuesday") == next_weeks(1)
    assert e.answer_value("I have no idea") is None


@pytest.mark.parametrize("text, expected", [
    ("the next available Tuesday", "2025-03-18"),  # a day named wins over "next available"
    ("the earliest appointment on Friday", "2025-03-14"),
    ("I called this morning, can I move it to Friday", "2025-03-14"),
    ("this past Monday", "2025-03-10"),
])
def test_a_day_named_wins_over_a_relative_phrase(text, expected):
    assert parse_date(text, today=WEDNESDAY).value == expected


@pytest.mark.parametrize("text", ["a few days ago", "several weeks from now"])
def test_how_many_unsaid_is_no_date(text):
    assert not parse_date(text, today=WEDNESDAY).ok


@pytest.mark.parametrize("said, answer", [("in february", "the 30th"), ("this month", "the 5th")])
def test_a_day_not_among_the_span_is_asked_about_again(said, answer):
    span = parse_date(said, today=WEDNESDAY).span
    result = parse_date(answer, today=WEDNESDAY, span=span)
    assert not result.ok and result.reason == span.question and result.span == span


def test_a_month_in_a_sentence_needs_a_word_before_it():
    assert parse_date("June Carter", today=WEDNESDAY, within=True).span is None
    assert parse_date("sometime in June", today=WEDNESDAY, within=True).span is not None


TRIP = """
flow: trips
start: ask_out
slots:
  out: {type: date}
  back: {type: date}
  traveller_name: {type: text}
  day: {type: date}
nodes:
  ask_out: {say: "Leaving when?", collect: out, next: ask_back}
  ask_back: {say: "Back when?", collect: back, next: ask_name}
  ask_name: {say: "Your name?", collect: traveller_name, next: ask_day}
  ask_day: {say: "What day?", collect: day, next: done}
  done: {say: "Thanks.", hangup: true}
"""


def test_the_days_a_date_question_narrowed_are_its_own_not_the_next_questions():
    e = engine(TRIP)
    turn(e, "next week")
    assert kept(turn(e, "wednesday")) == {"out": next_weeks(2)}
    assert e.state.heard_spans == {} and e.state.date_span is None
    assert kept(turn(e, "the 3rd of next year")) or e.state.node == "ask_back"


def test_a_month_in_a_name_narrows_no_date():
    e = engine(TRIP)
    turn(e, "tomorrow")
    turn(e, "in two weeks")
    turn(e, "June Carter")
    assert e.state.node == "ask_day" and e.state.date_span is None


def test_a_day_corrected_in_one_answer_stays_ahead_and_within_the_span():
    e = engine(TRIP)
    today = date.today()
    effects = turn(e, "the 30th, no, the 4th") if today.day > 4 else []
    if effects:
        assert kept(effects)["out"] >= today.isoformat()  # next month's 4th, not this month's gone by
    e = engine(TRIP)
    turn(e, "next week")
    assert kept(turn(e, "tuesday, no, wednesday")) == {"out": next_weeks(2)}


def test_a_day_said_with_not_is_not_the_day():
    assert parse_date("not Monday, Tuesday", today=WEDNESDAY).value == "2025-03-18"
    assert not parse_date("not monday", today=WEDNESDAY).ok
