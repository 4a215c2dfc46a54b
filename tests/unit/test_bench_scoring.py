import math

from ivr.bench.scoring import expected_calibration_error, reliability, summarize
from ivr.nlu.toolcall import parse_tool_call, tool_specs
from ivr.nlu.intents import IntentResult
from ivr.nlu.understanding import OUT_OF_SCOPE, Intent


def test_ece_zero_when_confidence_matches_accuracy():
    # 10 turns at 0.8 of which 8 right, 10 at 0.3 of which 3 right
    confs = [0.8] * 10 + [0.3] * 10
    correct = [True] * 8 + [False] * 2 + [True] * 3 + [False] * 7
    assert expected_calibration_error(confs, correct) < 1e-9


def test_ece_overconfident():
    assert math.isclose(expected_calibration_error([1.0] * 4, [True, False, False, False]), 0.75)


def test_reliability_window():
    acc, n = reliability([0.9, 0.91, 0.5, 0.99], [True, False, True, True])
    assert (acc, n) == (0.5, 2)


def _r(intent, conf=0.9, source="router", ms=10.0):
    return IntentResult(intent, conf, [(intent, conf)] if intent != OUT_OF_SCOPE else [], source, ms)


def test_summarize_counts_in_menu_and_oos_separately():
    rows = [("a", _r("a")), ("a", _r("b")), (OUT_OF_SCOPE, _r(OUT_OF_SCOPE, source="slm", ms=200)),
            (OUT_OF_SCOPE, _r("a"))]
    s = summarize("x", rows)
    assert s["in_menu_acc"] == 0.5 and s["oos_recall"] == 0.5 and s["accuracy"] == 0.5
    assert s["slm_share"] == 0.25 and s["slm_p50_ms"] == 200


def test_parse_tool_call():
    assert parse_tool_call('<tool_call>\n{"name": "change_pin", "arguments": {}}\n</tool_call>') == "change_pin"
    assert parse_tool_call("Sure, I can help with that.") is None
    assert parse_tool_call("<tool_call>{not json}</tool_call>") is None


def test_tool_specs_carry_examples_and_optional_other():
    specs = tool_specs([Intent("change_pin", ("new pin please",))], with_other=True)
    assert [s["function"]["name"] for s in specs] == ["change_pin", "other_request"]
    assert "new pin please" in specs[0]["function"]["description"]


def test_wilson_interval_brackets_the_figure_and_narrows_with_more_turns():
    from ivr.bench.scoring import wilson_interval

    lo, hi = wilson_interval(178, 200)  # 0.89
    assert 0.83 < lo < 0.89 < hi < 0.93
    lo2, hi2 = wilson_interval(1780, 2000)
    assert lo < lo2 < 0.89 < hi2 < hi
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0)[0] != wilson_interval(0, 0)[0]  # NaN: no turns, no interval


def test_nlu_bench_averages_over_draws():
    from ivr.bench.nlu import over_draws

    def row(mode, acc, oos):
        return {"mode": mode, "in_menu_acc": acc, "oos_recall": oos, "ece": 0.05}

    results = [{"menu": 1, "examples": 10, "seed": s, "all": [row("router", a, o), row("hybrid", a + 0.02, o)]}
               for s, (a, o) in enumerate([(0.88, 0.86), (0.92, 0.80), (0.90, 0.90)])]
    agg = {a["mode"]: a for a in over_draws(results)}
    assert agg["router"]["draws"] == 3
    mean, lo, hi = agg["router"]["in_menu_acc"]
    assert abs(mean - 0.90) < 1e-9 and (lo, hi) == (0.88, 0.92)
    assert agg["hybrid"]["oos_recall"][1:] == (0.80, 0.90)
