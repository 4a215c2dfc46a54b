"""Values said before their question: kept, said back, confirmed or asked, as the designer chose;
corrections change only the slot corrected. The engine alone, with the parsers' spans."""

from datetime import date

import pytest

from ivr.dialog.engine import FlowEngine, Hangup, Listen, Say, SetSlot
from ivr.dialog.loader import FlowLoadError, load_flow_text
from ivr.dialog.paths import explain, extraction_plans, slots_ahead
from ivr.nlu.extract import find_values
from ivr.nlu.understanding import Understanding

TODAY = date.today()

FLOW = """
flow: tables
start: menu
slots:
  party_size: {type: number, description: how many people, mention: "a table for {slots.party_size}"}
  day: {type: date, mention: "{slots.day|date}"}
  at: {type: time, mention: "at {slots.at|time}"}
  name: {type: text, description: the name the table is under}
  pin: {type: digits, length: 4, sensitive: true}
global_intents:
  restart: {examples: ["start over"], action: start_over}
nodes:
  menu:
    say: "How can I help?"
    intents:
      book:
        examples: ["book a table for [four](party_size)", "a table under [Ann Lee](name) please", "I'd like to reserve"]
        goto: ask_size
      hours: {examples: ["when are you open"], goto: bye}
  ask_size: {say: "For how many people?", collect: party_size, next: ask_day%(size_extra)s}
  ask_day: {say: "What day?", collect: day, next: ask_time}
  ask_time: {say: "What time?", collect: at, next: ask_name%(time_extra)s}
  ask_name: {say: "Under what name?", collect: name, next: ask_pin}
  ask_pin: {say: "Your PIN?", collect: pin, next: done}
  done: {say: "Booked for {slots.name}.", hangup: true}
  bye: {say: "Bye.", hangup: true}
"""


def engine_for(size_extra="", time_extra="", **slot_heard):
    text = FLOW % {"size_extra": size_extra, "time_extra": time_extra}
    for slot, policy in slot_heard.items():
        text = text.replace(f"  {slot}: {{type:", f"  {slot}: {{heard: {policy}, type:")
    engine = FlowEngine(load_flow_text(text))
    engine.start()
    return engine


def started(flow_text):
    engine = FlowEngine(load_flow_text(flow_text))
    engine.start()
    return engine


def turn(engine, text, intent=None):
    values = tuple(find_values(text, engine.listening_slots(intent), today=TODAY))
    return engine.on_text(text, Understanding(intent, 0.95 if intent else 0.0, "test", values))


def said(effects):
    return [e.text for e in effects if isinstance(e, Say)]


def slots(effects):
    return {e.name: e.value for e in effects if isinstance(e, SetSlot)}


def test_the_path_ahead_is_worked_out_from_the_graph_without_sensitive_slots():
    engine = engine_for()
    assert [s.name for s in engine.listening_slots("book")] == ["party_size", "day", "at", "name"]
    assert engine.listening_slots("hours") == ()
    assert slots_ahead(engine.flow, "ask_day") == ("day", "at", "name")
    assert explain(engine.flow) == {
        "menu": {"book": ("party_size", "day", "at", "name")},
        "ask_size": {"party_size": ("day", "at", "name")},
        "ask_day": {"day": ("at", "name")},
        "ask_time": {"at": ("name",)},
    }


def test_a_front_loaded_request_skips_the_questions_it_answered_and_says_them_back():
    engine = engine_for()
    effects = turn(engine, "I need a table for four tomorrow at seven thirty", "book")
    assert slots(effects) == {"party_size": 4, "day": (TODAY.fromordinal(TODAY.toordinal() + 1)).isoformat(), "at": "19:30"}
    back, question = said(effects)
    assert back.startswith("Got it: a table for 4, ") and back.endswith(", at 7:30 PM.")
    assert question == "Under what name?"
    assert engine.node_name == "ask_name" and isinstance(effects[-1], Listen)
    effects = turn(engine, "Ann Lee")
    assert slots(effects) == {"name": "Ann Lee"} and said(effects) == ["Your PIN?"]


def test_a_request_without_values_asks_every_question():
    engine = engine_for()
    effects = turn(engine, "I'd like to book a table", "book")
    assert said(effects) == ["For how many people?"] and slots(effects) == {}


def test_a_collect_node_takes_its_own_value_and_keeps_the_rest_for_later():
    engine = engine_for()
    turn(engine, "a table please", "book")
    effects = turn(engine, "four people at seven")
    assert slots(effects) == {"party_size": 4}
    assert said(effects) == ["What day?"]  # the time waits for its node
    effects = turn(engine, "Friday")
    assert list(slots(effects)) == ["day", "at"] and slots(effects)["at"] == "19:00"
    assert said(effects) == ["Got it: at 7 PM.", "Under what name?"]


def test_use_keeps_it_silently_and_ask_asks_anyway():
    engine = engine_for(party_size="use", day="ask")
    effects = turn(engine, "a table for four tomorrow", "book")
    assert slots(effects) == {"party_size": 4}
    assert said(effects) == ["What day?"]


def test_confirm_asks_about_the_value_instead_of_the_question():
    engine = engine_for(party_size="confirm")
    effects = turn(engine, "a table for four", "book")
    assert said(effects) == ["I heard 4. Is that right?"]
    effects = turn(engine, "yes")
    assert slots(effects) == {"party_size": 4} and said(effects) == ["What day?"]


# A weekday that is never tomorrow (on a Tuesday, "Wednesday" was the day already given)
OTHER_DAY = "Thursday" if (TODAY.weekday() + 1) % 7 == 2 else "Wednesday"


def test_a_correction_changes_only_the_slot_corrected():
    engine = engine_for()
    turn(engine, "a table for four tomorrow at seven thirty", "book")
    effects = turn(engine, f"no, {OTHER_DAY}")
    assert list(slots(effects)) == ["day"]
    assert engine.state.slots["party_size"] == 4 and engine.state.slots["at"] == "19:30"
    assert "name" not in engine.state.slots
    back, question = said(effects)
    assert back.startswith(f"Got it: {OTHER_DAY}") and question == "Under what name?"


def test_an_answered_day_is_corrected_at_the_next_question_when_the_words_say_so():
    engine = engine_for()
    for text, intent in (("I'd like to reserve", "book"), ("four", None), ("tomorrow", None)):
        turn(engine, text, intent)
    assert engine.node.collect == "at"
    effects = turn(engine, f"no wait, {OTHER_DAY}")
    assert list(slots(effects)) == ["day"] and engine.node.collect == "at"
    back, question = said(effects)
    assert back.startswith(f"Got it: {OTHER_DAY}") and question == "What time?"
    # without a correction's first words, a day at the time question is no answer, and kept nowhere
    before = engine.state.slots["day"]
    effects = turn(engine, "Friday")
    assert engine.state.slots["day"] == before and not slots(effects) and "day" not in engine.state.heard
    # and the time question still takes its answer
    assert dict(slots(turn(engine, "at seven"))) == {"at": "19:00"}


def test_rejections_apply_to_values_said_in_passing():
    engine = FlowEngine(load_flow_text((FLOW % {"size_extra": "", "time_extra": ""}).replace(
        "collect: party_size,", "collect: party_size, rejections: [{if: 'slots.party_size > 8', say: 'We seat up to 8.'}],")))
    engine.start()
    effects = turn(engine, "a table for twelve tomorrow", "book")
    assert said(effects) == ["We seat up to 8.", "For how many people?"]
    assert "party_size" not in engine.state.slots


def test_start_over_forgets_what_was_heard():
    engine = engine_for()
    turn(engine, "a table for four at seven", "book")
    assert engine.node_name == "ask_day" and engine.state.heard
    effects = engine.on_text("start over", Understanding("restart", 0.95, "test"))
    assert said(effects) == ["Sorry, do you want to start over?"]  # at a question, asked first
    effects = engine.on_text("yes", Understanding(None, 0.0, "test"))
    assert engine.node_name == "menu" and said(effects) == ["How can I help?"]
    assert engine.state.slots == {} and not engine.state.heard and not engine.state.passing


def test_sensitive_slots_and_unknown_marks_are_refused_by_the_loader():
    bad = (FLOW % {"size_extra": "", "time_extra": ""}).replace("[four](party_size)", "[1234](pin)")
    with pytest.raises(FlowLoadError, match="sensitive slot 'pin'"):
        load_flow_text(bad)
    with pytest.raises(FlowLoadError, match="'seats', which is not declared"):
        load_flow_text((FLOW % {"size_extra": "", "time_extra": ""}).replace("(party_size)", "(seats)"))
    with pytest.raises(FlowLoadError, match="sensitive slot is only asked"):
        load_flow_text((FLOW % {"size_extra": "", "time_extra": ""}).replace(
            "pin: {type: digits,", "pin: {heard: use, type: digits,"))


def test_marked_examples_teach_the_small_model_and_are_plain_for_the_router():
    engine = engine_for()
    options = {o.name: o for o in engine.expectation().intents}
    assert "book a table for four" in options["book"].examples
    plans = {p.key.split(":", 1)[1]: p for p in extraction_plans(engine.loaded)}
    plan = plans["menu:book"]
    assert [s.name for s in plan.specs] == ["name"]
    assert ("a table under Ann Lee please", (("name", "Ann Lee"),)) in [(s.text, s.values) for s in plan.shots]
    assert "reserve" in plan.request_words
    # a marked value is no request word: else a caller saying "Ann Lee" left no word to fill it with
    assert "ann" not in plan.request_words and "lee" not in plan.request_words


@pytest.mark.parametrize("answer, kept", [
    ("my name is Maria Lopez", "Maria Lopez"),
    ("yes, it's John Smith, that's S M I T H", "John Smith"),
    ("um, the name's Priya Patel, thanks", "Priya Patel"),
    ("Ann Lee", "Ann Lee"),
    ("it's for my husband, Robert Chen", "Robert Chen"),
    ("under my mom's name, Ana Diaz", "Ana Diaz"),
    ("for my son, his name is Leo Park", "Leo Park"),
    ("I'm calling for my husband, Robert Chen", "Robert Chen"),
    ("it's for me, John Smith", "John Smith"),
    ("for my grandson, Tim", "Tim"),
    ("for my son, he's called Leo", "Leo"),
])
def test_a_name_is_kept_without_the_words_around_it(answer, kept):
    """Asked for a name, callers say "my name is ..."; the read-back must not say "for my name is"."""
    engine = engine_for()
    for text, intent in (("I'd like to reserve", "book"), ("four", None), ("tomorrow", None), ("at seven", None)):
        turn(engine, text, intent)
    assert engine.node.collect == "name"
    effects = turn(engine, answer)
    assert [e.value for e in effects if isinstance(e, SetSlot)] == [kept]


def test_a_text_slot_that_is_no_name_keeps_every_word():
    flow = FLOW.replace("name: {type: text, description: the name the table is under}",
                        "name: {type: text, description: what the table is for}") % {"size_extra": "", "time_extra": ""}
    engine = FlowEngine(load_flow_text(flow.replace("  name: {", "  occasion: {").replace("collect: name", "collect: occasion")
                                       .replace("{slots.name}", "{slots.occasion}").replace("[Ann Lee](name)", "Ann Lee")))
    engine.start()
    for text, intent in (("I'd like to reserve", "book"), ("four", None), ("tomorrow", None), ("at seven", None)):
        turn(engine, text, intent)
    assert [e.value for e in turn(engine, "it's my mother's birthday") if isinstance(e, SetSlot)] == ["it's my mother's birthday"]


def _at_the_name_question():
    engine = engine_for()
    for text, intent in (("I'd like to reserve", "book"), ("four", None), ("tomorrow", None), ("at seven", None)):
        turn(engine, text, intent)
    assert engine.node.collect == "name"
    return engine


def test_a_short_answer_to_a_text_question_can_be_a_global_intent():
    """Any words are text, so without this a caller asked for a name could not start over (or
    reach a person, or hear the question again)."""
    engine = _at_the_name_question()
    assert engine.may_be_a_request("start over")
    effects = engine.on_text("start over", Understanding("restart", 0.97, "test"))
    # what would throw away the caller's answers or end the call is asked about first: a short
    # answer here is more often the value ("that's all I know", asked for a plate, is goodbye)
    assert said(effects) == ["Sorry, do you want to start over?"] and engine.state.slots
    effects = engine.on_text("yes", Understanding(None, 0.0, "test"))
    assert not slots(effects) and engine.node.say == "How can I help?" and not engine.state.slots


@pytest.mark.parametrize("answer, confidence", [
    ("start over", 0.6),  # the NLU is not sure enough: the words are the value
    ("Start Over Smith, and it is a birthday dinner for my mother", 0.97),  # too long to be a request
])
def test_otherwise_the_words_are_the_value(answer, confidence):
    engine = _at_the_name_question()
    effects = engine.on_text(answer, Understanding("restart", confidence, "test"))
    assert list(slots(effects)) == ["name"]


def test_two_choices_in_one_answer_are_asked_again_not_one_of_them_taken():
    flow = """
flow: bills
start: ask
slots:
  payee: {type: enum, choices: {electricity: [electric, power], water: []}}
nodes:
  ask: {say: "Which bill?", collect: payee, next: done}
  done: {say: "Paying {slots.payee}.", hangup: true}
"""
    engine = started(flow)
    effects = turn(engine, "electricity and water")
    assert not slots(effects) and engine.node.collect == "payee"
    assert dict(slots(turn(engine, "the water one"))) == {"payee": "water"}


def test_a_text_questions_answer_fills_no_other_text_slot():
    from ivr.nlu.understanding import SlotValue

    flow = """
flow: transfers
start: ask_medication
slots:
  medication: {type: text}
  other_pharmacy: {type: text}
  when: {type: date}
nodes:
  ask_medication: {say: "Which medication?", collect: medication, next: ask_pharmacy}
  ask_pharmacy: {say: "Which pharmacy is it at now?", collect: other_pharmacy, next: ask_when}
  ask_when: {say: "When?", collect: when, next: done}
  done: {say: "Thanks.", hangup: true}
"""
    engine = started(flow)
    # the small model also gave the medication's name to the pharmacy ahead, and a day
    values = (SlotValue("other_pharmacy", "Eliquis", "Eliquis", "model", 0),
              SlotValue("when", "2030-01-02", "January 2nd 2030", "parser", 12))
    effects = engine.on_text("Eliquis from January 2nd 2030", Understanding(None, 0.0, "test", values))
    assert slots(effects)["medication"] == "Eliquis from January 2nd 2030"
    assert engine.state.node == "ask_pharmacy"  # asked, not skipped
    assert "when" in engine.state.heard  # a typed value said with it is still heard


def test_a_number_said_alone_answers_its_question_and_fills_nothing_ahead():
    flow = """
flow: refills
start: ask_rx
slots:
  rx: {type: digits, length: 7}
  pickup_time: {type: time}
  callback: {type: phone}
nodes:
  ask_rx: {say: "Your Rx number?", collect: rx, next: ask_time}
  ask_time: {say: "What time?", collect: pickup_time, next: ask_phone}
  ask_phone: {say: "A number to call you back?", collect: callback, next: done}
  done: {say: "Thanks.", hangup: true}
"""
    engine = started(flow)
    # read in pairs, "twelve thirty four" is also a time to the finder of values in passing
    effects = turn(engine, "twelve thirty four five sixty seven")
    assert slots(effects) == {"rx": "1234567"}
    assert engine.state.node == "ask_time" and engine.state.heard == {}


def test_a_date_written_with_slashes_is_no_time():
    from ivr.nlu.understanding import SlotSpec

    specs = [SlotSpec("dob", "date", past=True), SlotSpec("pickup_time", "time")]
    assert [(v.slot, v.value) for v in find_values("it's 03/03/1965", specs, today=TODAY)] == [("dob", "1965-03-03")]


@pytest.mark.parametrize("answer", ["it's for my daughter", "it's for my son's appointment", "for my husband, I don't know",
                                    "I don't know his name"])
def test_a_name_answer_without_the_name_is_asked_again(answer):
    engine = engine_for()
    for text, intent in (("I'd like to reserve", "book"), ("four", None), ("tomorrow", None), ("at seven", None)):
        turn(engine, text, intent)
    effects = turn(engine, answer)
    assert "name" not in slots(effects) and engine.node.collect == "name"


def test_a_phone_number_given_with_the_name_is_heard():
    flow = """
flow: callbacks
start: ask_name
slots:
  caller_name: {type: text}
  callback: {type: phone}
nodes:
  ask_name: {say: "Your name?", collect: caller_name, next: ask_phone}
  ask_phone: {say: "A number to call you back?", collect: callback, next: done}
  done: {say: "Thanks.", hangup: true}
"""
    engine = started(flow)
    effects = turn(engine, "John Smith, and my number is 415 555 0134")
    assert slots(effects) == {"caller_name": "John Smith", "callback": "4155550134"}


def test_goodbye_heard_at_a_text_question_is_asked_about_not_hung_up_on():
    flow = """
flow: claims
start: ask_plate
slots:
  plate: {type: text, description: the other driver's licence plate}
  injured: {type: yes_no}
global_intents:
  goodbye: {examples: ["that's all, bye"], goto: bye}
nodes:
  ask_plate: {say: "Did you get the other car's plate?", collect: plate, next: ask_injured}
  ask_injured: {say: "Was anyone hurt?", collect: injured, next: bye}
  bye: {say: "Goodbye.", hangup: true}
"""
    engine = started(flow)
    effects = engine.on_text("that's all I know", Understanding("goodbye", 0.95, "test"))
    assert not any(isinstance(e, Hangup) for e in effects) and engine.state.node == "ask_plate"
    effects = engine.on_text("no", Understanding(None, 0.0, "test"))
    assert not any(isinstance(e, Hangup) for e in effects)


def test_yes_but_a_new_value_at_a_read_back_corrects_it():
    flow = """
flow: pickups
start: ask_time
slots:
  at: {type: time}
  ok: {type: yes_no}
nodes:
  ask_time: {say: "What time?", collect: at, next: confirm}
  confirm: {say: "Pick up at {slots.at|time}. Shall I put it in?", collect: ok, next: done}
  done: {say: "Done.", hangup: true}
"""
    engine = started(flow)
    turn(engine, "at 5")
    effects = turn(engine, "yes but can you make it 6 pm instead")
    assert slots(effects) == {"at": "18:00"} and engine.state.node == "confirm"
    assert said(effects)[-1] == "Pick up at 6 PM. Shall I put it in?"


@pytest.mark.parametrize("answer, kept", [
    ("it's 379 Gellert Boulevard, apartment 4, Daly City", "379 Gellert Boulevard, apartment 4, Daly City"),
    ("my address is 12 Oak Lane, thanks", "12 Oak Lane"),
    ("uh we're at 55 Main Street", "55 Main Street"),
])
def test_an_address_is_kept_without_the_words_around_it(answer, kept):
    flow = """
flow: deliveries
start: ask_address
slots:
  address: {type: text, description: the street address to deliver to}
nodes:
  ask_address: {say: "What's the address?", collect: address, next: done}
  done: {say: "Thanks.", hangup: true}
"""
    engine = started(flow)
    assert slots(turn(engine, answer)) == {"address": kept}


def test_a_number_corrected_in_one_answer_fills_no_amount_ahead():
    flow = """
flow: payments
start: ask_account
slots:
  account: {type: digits, length: 9}
  amount: {type: money}
nodes:
  ask_account: {say: "Your account number?", collect: account, next: ask_amount}
  ask_amount: {say: "How much?", collect: amount, next: done}
  done: {say: "Thanks.", hangup: true}
"""
    engine = started(flow)
    turn(engine, "457 211 398, sorry, 399")
    assert "amount" not in engine.state.heard


def test_start_over_heard_at_a_question_is_asked_about_however_sure():
    flow = """
flow: outages
start: ask_address
slots:
  address: {type: text, description: the service address}
  restarted: {type: yes_no}
global_intents:
  restart: {examples: ["start over", "restart please"], action: start_over}
nodes:
  ask_address: {say: "The service address?", collect: address, next: ask_restarted}
  ask_restarted: {say: "Have you restarted your router?", collect: restarted, next: done}
  done: {say: "Thanks.", hangup: true}
"""
    engine = started(flow)
    engine.on_text("12 Oak Street", Understanding(None, 0.0, "test"))
    effects = engine.on_text("I've restarted it three times already", Understanding("restart", 0.97, "test"))
    assert said(effects) == ["Sorry, do you want to start over?"] and engine.state.slots == {"address": "12 Oak Street"}


def test_no_then_a_choice_at_a_read_back_changes_the_choice():
    flow = """
flow: visits
start: menu
slots:
  window:
    type: enum
    choices: {morning: [morning], afternoon: [afternoon], evening: [evening]}
  ok: {type: yes_no}
nodes:
  menu:
    say: "How can I help?"
    intents:
      visit: {examples: ["book a technician", "I need someone to come out"], goto: ask_window}
  ask_window: {say: "Morning, afternoon or evening?", collect: window, next: confirm}
  confirm: {say: "A visit in the {slots.window}. Is that right?", collect: ok, next: done}
  done: {say: "Booked.", hangup: true}
"""
    engine = started(flow)
    turn(engine, "book a technician for the afternoon", "visit")
    assert engine.state.node == "confirm"
    effects = turn(engine, "no, the morning")
    assert slots(effects) == {"window": "morning"} and said(effects)[-1] == "A visit in the morning. Is that right?"
