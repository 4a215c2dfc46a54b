"""Advice on a menu's examples, from the router's calibration (pure)."""

from ivr.nlu.example_advice import ENOUGH_EXAMPLES, TOO_ALIKE, advise


def test_few_or_alike_examples_are_flagged_and_enough_varied_ones_are_not():
    cal = {"intent_examples": {"refill": 3, "hours": 9, "agent": 10, "tax": 12},
           "intent_alike": {"refill": 0.76, "hours": 0.31, "agent": 0.72, "tax": None}}
    got = {a.intent: a for a in advise(cal)}
    assert set(got) == {"refill", "agent"}
    assert got["refill"].few and got["refill"].same
    assert not got["agent"].few and got["agent"].same
    assert got["refill"].line() == ("refill: 3 examples, write 8 or more; examples alike (0.76), word them as "
                                    "different callers would: whole sentences about their situation")
    assert got["agent"].line().startswith("agent: examples alike (0.72)")


def test_the_limits_are_where_the_measurement_put_them():
    assert ENOUGH_EXAMPLES == 8 and TOO_ALIKE == 0.7
    at = {"intent_examples": {"a": ENOUGH_EXAMPLES, "b": ENOUGH_EXAMPLES - 1},
          "intent_alike": {"a": TOO_ALIKE - 0.01, "b": 0.2}}
    assert [(a.intent, a.few, a.same) for a in advise(at)] == [("b", True, False)]


def test_a_calibration_without_the_figures_gives_no_advice():
    assert advise({}) == []
    assert advise({"intent_examples": {"a": 1}}) == [advise({"intent_examples": {"a": 1}})[0]]
    assert advise({"intent_examples": {"a": 1}})[0].line() == "a: 1 example, write 8 or more"


def test_validate_explain_says_when_it_could_not_check_the_examples(tmp_path, capsys, monkeypatch):
    import ivr.nlu.intents
    from ivr.tools.cli import main

    def no_embedder(**_):
        raise FileNotFoundError("minilm-l6-v2-int8 is not installed")

    monkeypatch.setattr(ivr.nlu.intents, "load_intent_classifier", no_embedder)
    (tmp_path / "menu.yaml").write_text(
        "flow: m\nstart: menu\nnodes:\n  menu:\n    say: Hi.\n    intents:\n"
        "      hours: {examples: [when are you open], goto: done}\n  done: {say: Bye., hangup: true}\n")
    assert main(["validate", "--explain", str(tmp_path / "menu.yaml")]) == 0
    assert "examples not checked: the router's embedder did not load (minilm-l6-v2-int8 is not installed)" in \
        capsys.readouterr().out


def test_a_flows_advice_names_each_intent_once_with_the_menus_it_is_in():
    from types import SimpleNamespace as NS

    from ivr.nlu.example_advice import menus_advice
    from ivr.nlu.understanding import Intent

    class Classifier:
        def __init__(self):
            self.prepared = []

        def prepare(self, key, intents):
            self.prepared.append(key)

        def calibration(self, key):
            menu = {"v1:main": {"agent": 2, "hours": 9}, "v1:ask": {"agent": 2}}[key]
            return {"intent_examples": menu, "intent_alike": {"hours": 0.2}}

    agent, hours = Intent("agent", ("agent", "a person")), Intent("hours", tuple(f"when do you open {i}" for i in range(9)))
    menus = [NS(key="v1:main", intents=(agent, hours)), NS(key="v1:ask", intents=(agent,))]
    clf = Classifier()
    got = menus_advice(clf, menus)
    assert clf.prepared == ["v1:main", "v1:ask"]
    assert [(a.intent, nodes) for a, nodes in got] == [("agent", ["main", "ask"])]


def test_the_count_is_of_the_examples_written_not_the_name_and_description_the_router_uses():
    from ivr.nlu.example_advice import advise

    calibration = {"intent_examples": {"hours": 2, "agent": 9}, "intent_alike": {"hours": 0.9, "agent": 0.3}}
    (a,) = advise(calibration, {"hours": 0, "agent": 9})
    assert (a.intent, a.examples, a.alike) == ("hours", 0, None)
    assert a.line() == "hours: 0 examples, write 8 or more"
