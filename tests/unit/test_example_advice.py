"""Advice on a menu's examples, from the router's calibration (pure)."""

from ivr.nlu.example_advice import ENOUGH_EXAMPLES, TOO_ALIKE, advise


def test_few_or_alike_examples_are_flagged_and_enough_varied_ones_are_not():
    cal = {"intent_examples": {"refill": 3, "hours": 9, "agent": 10, "tax": 12},
           "intent_alike": {"refill": 0.76, "hours": 0.31, "agent": 0.55, "tax": None}}
    got = {a.intent: a for a in advise(cal)}
    assert set(got) == {"refill", "agent"}
    assert got["refill"].few and got["refill"].same
    assert not got["agent"].few and got["agent"].same
    assert got["refill"].line() == ("refill: 3 examples, write 8 or more; examples alike (0.76), word them as "
                                    "different callers would: whole sentences about their situation")
    assert got["agent"].line().startswith("agent: examples alike (0.55)")


def test_the_limits_are_where_the_measurement_put_them():
    assert ENOUGH_EXAMPLES == 8 and TOO_ALIKE == 0.5
    at = {"intent_examples": {"a": ENOUGH_EXAMPLES, "b": ENOUGH_EXAMPLES - 1},
          "intent_alike": {"a": TOO_ALIKE - 0.01, "b": 0.2}}
    assert [(a.intent, a.few, a.same) for a in advise(at)] == [("b", True, False)]


def test_a_calibration_without_the_figures_gives_no_advice():
    assert advise({}) == []
    assert advise({"intent_examples": {"a": 1}}) == [advise({"intent_examples": {"a": 1}})[0]]
    assert advise({"intent_examples": {"a": 1}})[0].line() == "a: 1 example, write 8 or more"
