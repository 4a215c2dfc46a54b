"""A number read aloud: the start of it is never taken as whole, the line asks for the rest and
adds it; a number is read back when the designer wants it or the line is unsure of it; after a
failed try the keypad is offered. The engine alone, no audio or models."""

import pytest

from ivr.dialog.engine import FlowEngine, Hangup, Say, SetSlot
from ivr.dialog.loader import FlowLoadError, load_flow_text
from ivr.nlu.slots import spoken_number
from ivr.nlu.understanding import Understanding

FLOW = """
flow: numbers
start: ask
slots:
  account: {type: digits, length: 6%(extra)s}
nodes:
  ask: {say: "Your account number, please.", collect: account, next: done}
  done: {say: "Thanks, {slots.account}.", hangup: true}
"""


def engine_for(extra: str = "") -> FlowEngine:
    engine = FlowEngine(load_flow_text(FLOW % {"extra": extra}))
    engine.start()
    return engine


def say(engine, text, unsure=False):
    return engine.on_text(text, Understanding(), asr_unsure=unsure)


def said(effects):
    return [e.text for e in effects if isinstance(e, Say)]


def kept(effects):
    return next((e.value for e in effects if isinstance(e, SetSlot)), None)


def test_the_start_of_a_number_is_never_taken_and_the_rest_completes_it():
    engine = engine_for()
    effects = say(engine, "seven eight nine")
    assert said(effects) == ["I got 7 8 9. What comes next?"] and kept(effects) is None
    assert engine.number_incomplete("one two") and not engine.number_incomplete("one two three")
    effects = say(engine, "one two three")  # a number put together from parts is read back
    assert said(effects) == ["I heard 7 8 9 1 2 3. Is that right?"]
    assert kept(say(engine, "yes")) == "789123"


def test_a_whole_number_after_a_part_replaces_it_and_is_read_back():
    engine = engine_for()
    say(engine, "seven eight")
    assert said(say(engine, "it's four five seven two one nine")) == ["I heard 4 5 7 2 1 9. Is that right?"]
    assert kept(say(engine, "yes")) == "457219"


def test_the_rest_is_added_to_the_start_even_when_it_is_a_number_by_itself():
    engine = FlowEngine(load_flow_text(FLOW.replace("type: digits, length: 6", "type: phone") % {"extra": ""}))
    engine.start()
    assert said(say(engine, "five five five")) == ["I got 5 5 5. What comes next?"]
    assert said(say(engine, "one two three four five six seven")) == ["I heard 5 5 5 1 2 3 4 5 6 7. Is that right?"]


def test_a_small_number_said_among_other_words_is_not_the_start_of_one():
    engine = engine_for()
    assert not engine.fills_slot("I want an agent, I've called 3 times")
    assert said(say(engine, "I want an agent, I've called 3 times"))[0] == "Sorry, I didn't catch that."


def test_asking_to_repeat_keeps_the_part_heard():
    engine = FlowEngine(load_flow_text(FLOW.replace("nodes:", """global_intents:
  again: {examples: ["repeat that"], action: repeat}
nodes:""") % {"extra": ""}))
    engine.start()
    say(engine, "seven eight nine")
    effects = engine.on_text("repeat that", Understanding("again", 0.95, "test"))
    assert said(effects) == ["I got 7 8 9. What comes next?"] and engine.state.partial == "789"


def test_a_sensitive_number_is_not_said_aloud_in_parts_nor_read_back_by_default():
    engine = engine_for(", sensitive: true")
    assert said(say(engine, "seven eight nine")) == ["I got the first 3 digits. What comes next?"]
    assert kept(say(engine, "one two three", unsure=True)) == "789123"


def test_a_corrected_number_at_the_read_back_meets_the_rejections():
    engine = FlowEngine(load_flow_text(FLOW.replace("next: done}", """next: done, confirm: true,
        rejections: [{if: "slots.account == '000000'", say: "That is not an account number."}]}""") % {"extra": ""}))
    engine.start()
    say(engine, "four five seven two one nine")
    effects = say(engine, "no, it's zero zero zero zero zero zero")
    assert said(effects) == ["That is not an account number.", "Your account number, please.",
                             "You can also type it on your keypad."]


def test_parts_in_a_row_are_asked_for_a_few_times_then_the_answer_is_not_understood():
    engine = FlowEngine(load_flow_text(FLOW.replace("length: 6", "length: 12") % {"extra": ""}))
    engine.start()
    assert said(say(engine, "one"))[0] == "I got 1. What comes next?"
    assert said(say(engine, "two"))[0] == "I got 1 2. What comes next?"
    assert said(say(engine, "three"))[0] == "I got 1 2 3. What comes next?"
    effects = say(engine, "four")
    assert said(effects)[0] == "Sorry, I didn't catch that." and engine.state.partial is None


def test_too_many_digits_is_a_no_match_and_the_keypad_is_offered_once():
    engine = engine_for()
    effects = say(engine, "one two three four five six seven")
    assert said(effects) == ["Sorry, I didn't catch that.", "Your account number, please.",
                             "You can also type it on your keypad."]
    assert said(say(engine, "hello")) == ["Sorry, I didn't catch that.", "Your account number, please."]


def test_a_caller_who_keys_is_not_told_about_the_keypad_and_keys_are_not_read_back():
    engine = engine_for(", read_back: always")
    effects = engine.on_dtmf("12")
    assert "You can also type it on your keypad." not in said(effects)
    assert kept(engine.on_dtmf("123456")) == "123456"


@pytest.mark.parametrize("text,unsure,read_back", [
    ("four five seven two one nine", False, False),
    ("four five seven two one nine", True, True),  # whisper was unsure of its words
    ("hello my name is Sam four five seven two one nine", False, True),  # the number came among other words
])
def test_a_number_is_read_back_when_the_line_is_unsure_of_it(text, unsure, read_back):
    engine = engine_for()
    effects = say(engine, text, unsure)
    if read_back:
        assert said(effects) == ["I heard 4 5 7 2 1 9. Is that right?"] and kept(effects) is None
        assert kept(say(engine, "yes")) == "457219"
    else:
        assert kept(effects) == "457219"


def test_read_back_always_and_never_are_the_designers_to_choose():
    assert said(say(engine_for(", read_back: always"), "four five seven two one nine"))[0].startswith("I heard")
    assert kept(say(engine_for(", read_back: never"), "four five seven two one nine", unsure=True)) == "457219"


def test_a_number_read_back_wrong_is_a_failed_try_and_the_keypad_is_offered():
    engine = engine_for(", read_back: always")
    say(engine, "four five seven two one nine")
    effects = say(engine, "no")
    assert said(effects) == ["Okay, let's try that again.", "Your account number, please.",
                             "You can also type it on your keypad."]
    say(engine, "four five seven two one nine")
    say(engine, "no")
    say(engine, "four five seven two one nine")
    effects = say(engine, "no")  # the third wrong read-back uses up the two retries
    assert isinstance(effects[-1], Hangup) and "read back wrong" in effects[-1].reason


def test_a_no_with_the_right_number_is_read_back_and_the_same_number_again_is_a_yes():
    engine = engine_for(", read_back: always")
    say(engine, "four five seven two one nine")
    effects = say(engine, "no, it's four five seven two one eight")
    assert said(effects) == ["I heard 4 5 7 2 1 8. Is that right?"]
    assert kept(say(engine, "four five seven two one eight")) == "457218"


def test_the_designer_can_turn_off_asking_for_the_rest_and_offering_the_keypad():
    engine = engine_for(', ask_rest: "", offer_keypad: ""')
    assert said(say(engine, "seven eight nine")) == ["Sorry, I didn't catch that.", "Your account number, please."]
    engine = engine_for(', ask_rest: "So far {slots.account}. And then?"')
    assert said(say(engine, "seven eight nine")) == ["So far 7 8 9. And then?"]


def test_number_options_belong_to_digits_and_phone_slots():
    with pytest.raises(FlowLoadError, match="only apply to digits and phone"):
        load_flow_text(FLOW.replace("type: digits, length: 6", "type: text") % {"extra": ", read_back: never"})


def test_a_spoken_number_says_whether_other_words_came_with_it():
    assert spoken_number("it's four five seven").digits == "457"
    assert not spoken_number("my account number is four five seven").among_words
    assert spoken_number("hello my name is Sam four five seven").among_words
    assert spoken_number("hello") is None
    assert spoken_number("0.75983") == spoken_number("0 75983")  # whisper's decimal point is a pause
