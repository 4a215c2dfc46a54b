from datetime import date

import pytest

from ivr.dialog.engine import FlowEngine, Say
from ivr.nlu.understanding import Understanding
from ivr.dialog.loader import FlowLoadError, load_flow_text
from ivr.dialog.speech_format import digits, money, spoken_date, spoken_time


@pytest.mark.parametrize("value, said", [
    ("42.50", "42 dollars and 50 cents"), ("100.00", "100 dollars"), ("0.50", "50 cents"),
    ("1.01", "1 dollar and 1 cent"), ("12050", "12,050 dollars"), ("0", "0 dollars"), ("-5.25", "minus 5 dollars and 25 cents"),
])
def test_money(value, said):
    assert money(value) == said


def test_date_time_digits():
    today = date(2026, 11, 24)
    assert spoken_date("2026-03-05", today) == "Thursday, March 5th"
    assert spoken_date("2027-01-22", today) == "Friday, January 22nd, 2027"
    assert spoken_date("2026-12-13", today) == "Sunday, December 13th"
    assert spoken_time("15:00") == "3 PM" and spoken_time("09:30") == "9:30 AM"
    assert spoken_time("12:00") == "noon" and spoken_time("00:15") == "12:15 AM"
    assert digits("A12 3") == "A 1 2 3"


def test_filters_in_prompts_and_validation():
    flow = """
flow: f
start: ask
slots:
  amount: {type: money}
nodes:
  ask: {say: "How much?", collect: amount, next: done}
  done:
    say: You said {slots.amount|money}, that is {slots.amount}.
    hangup: true
"""
    engine = FlowEngine(load_flow_text(flow))
    engine.start()
    effects = engine.on_text("forty two fifty", Understanding())
    assert [e.text for e in effects if isinstance(e, Say)] == ["You said 42 dollars and 50 cents, that is 42.50."]
    with pytest.raises(FlowLoadError, match="`|dollars` is not a filter"):
        load_flow_text(flow.replace("|money", "|dollars"))
