"""When keys pressed make a whole answer (ivr/conversation/keypad.py), with no timers or session."""

from __future__ import annotations

from dataclasses import replace

from ivr.conversation.keypad import KeypadEntry
from ivr.dialog.engine import Expectation

NODE = Expectation(node="n", key="v:n", intents=(), slot=None, slot_type=None, dtmf_keys=(), max_digits=None,
                   finish_on_key="#", inter_digit_timeout=3.0, no_input_timeout=5.0, barge_in=True)


def presses(expectation: Expectation, keys: str) -> list[bool]:
    entry = KeypadEntry()
    return [entry.press(expectation, k) for k in keys]


def test_a_fixed_length_answer_is_whole_at_its_last_digit():
    assert presses(replace(NODE, max_digits=6), "123456") == [False] * 5 + [True]


def test_the_finish_key_ends_an_entry_and_is_not_kept():
    entry = KeypadEntry()
    assert [entry.press(NODE, k) for k in "42#"] == [False, False, True]
    assert entry.take() == "42" and entry.digits == ""


def test_a_menu_answers_as_soon_as_no_key_starts_like_the_entry():
    menu = replace(NODE, dtmf_keys=("1", "2", "10"), max_digits=2)
    assert presses(menu, "1") == [False]  # "1" or "10": wait for the next key or the timer
    assert presses(menu, "10") == [False, True]
    assert presses(menu, "7") == [True]  # no key starts with 7: answer now (a no-match), no waiting
    assert presses(replace(NODE, dtmf_keys=("1", "2", "3"), max_digits=1), "2") == [True]


def test_without_a_rule_the_entry_waits_for_the_timer():
    assert presses(NODE, "12345678") == [False] * 8
