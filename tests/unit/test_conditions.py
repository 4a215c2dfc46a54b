import pytest

from ivr.dialog.conditions import ConditionError, evaluate, parse_condition


@pytest.mark.parametrize("expr, slots, vars, expected", [
    ("slots.ok == true", {"ok": True}, {}, True),
    ("slots.ok", {"ok": False}, {}, False),
    ("not slots.email", {}, {}, True),
    ("slots.amount > 100", {"amount": "150.00"}, {}, True),
    ("slots.amount > 100", {"amount": "99.99"}, {}, False),
    ("slots.amount > 100", {}, {}, False),
    ("vars.order.status == 'shipped'", {}, {"order": {"status": "shipped"}}, True),
    ("vars.order.status in ['delayed', 'lost']", {}, {"order": {"status": "lost"}}, True),
    ("vars.order.status not in ['delayed']", {}, {}, True),
    ("slots.a and slots.b or slots.c", {"a": 1, "b": 0, "c": 2}, {}, True),
    ("vars.balance.available < 0", {}, {"balance": {"available": -5}}, True),
    ("slots.plan == null", {}, {}, True),
    ("0 < slots.n <= 10", {"n": 10}, {}, True),
])
def test_evaluate(expr, slots, vars, expected):
    assert evaluate(expr, slots, vars) is expected


@pytest.mark.parametrize("expr", [
    "__import__('os').system('true')",
    "slots.__class__",
    "open('/etc/passwd')",
    "lambda: 1",
    "[x for x in slots]",
    "os.path",
    "slots.a +",
    "slots['a']",
])
def test_unsafe_or_invalid_expressions_are_rejected(expr):
    with pytest.raises(ConditionError):
        parse_condition(expr)


def test_unknown_slot_is_reported():
    with pytest.raises(ConditionError, match="no slot 'nope'"):
        parse_condition("slots.nope == 1", slots={"yes"})
