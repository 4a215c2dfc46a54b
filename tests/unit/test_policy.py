"""The escalation policy: pure rules, their thresholds, targets and reasons, and its config."""

import pytest

from ivr.serving.config import load_settings
from ivr.dialog.loader import FlowLoadError, load_flow_text
from ivr.handoff.policy import (
    DEFAULT_RULES,
    EscalationPolicy,
    Rule,
    TurnFacts,
    decide,
    is_person_intent,
    with_repetition,
)
from ivr.handoff.transfer import human_destination, transfer_number, whisper_summary
from ivr.nlu.signals import Signals, detect


def turn(text: str = "", intent: str | None = "balance", confidence: float = 0.9, **kw) -> TurnFacts:
    return TurnFacts(intent, confidence, detect(text), **{"understood": True, **kw})


def test_routine_turn_stays_on_script_and_says_why():
    e = decide(turn("what's my balance"))
    assert not e.escalate and e.reason == "on script: 'balance' (0.90)"
    e = decide(turn("12345678", intent=None, confidence=1.0, from_slot=True))
    assert not e.escalate and "value for this step" in e.reason


def test_each_trigger_with_reason_and_target():
    e = decide(turn("this is ridiculous, you're useless"))
    assert (e.escalate, e.target, e.trigger) == (True, "llm", "frustration") and "ridiculous" in e.reason
    assert e.as_dict()["score"] == 0.5  # two upset words, no model: 2 x 0.25
    e = decide(turn("this is ridiculous, you're useless"), available=["human"])
    assert (e.escalate, e.target) == (True, "human")  # the model where there is one, else a person
    e = decide(turn("let me talk to a real person"))
    assert (e.target, e.trigger, e.reason) == ("human", "person", "caller asked for a person")
    e = decide(turn("check my balance and also report a lost card"))
    assert (e.target, e.trigger) == ("llm", "multiple_requests")
    e = decide(turn("do you sell boats", intent="out_of_scope", confidence=0.8, understood=False))
    assert (e.target, e.trigger, e.reason) == ("llm", "out_of_scope", "request is outside this menu")
    e = decide(turn("hmm balance maybe", confidence=0.2))
    assert e.trigger == "low_confidence" and "0.20" in e.reason and e.target == "llm"


def test_repeated_no_match_counts_from_the_engine():
    not_understood = turn("mumble", intent=None, confidence=0.0, understood=False, menu=False)
    first = decide(not_understood, counts={"no_match": 0})
    assert not first.escalate and "not understood (1 of 2)" in first.reason
    second = decide(not_understood, counts={"no_match": 1})
    assert (second.escalate, second.trigger, second.reason) == (True, "no_match", "not understood 2 times")


def test_flows_own_person_intent_keeps_its_routing():
    assert not decide(turn("let me talk to a real person", intent="talk_to_agent", person_intent=True)).escalate


def test_out_of_scope_and_low_confidence_only_in_menus():
    collect = turn("I don't know it", intent="out_of_scope", confidence=0.3, understood=False, menu=False)
    assert decide(collect).trigger != "out_of_scope"
    assert not decide(turn("maybe", confidence=0.1, menu=False)).escalate


def test_precedence_frustration_over_person_over_confusion():
    e = decide(turn("this is ridiculous and useless, get me a human", intent="out_of_scope", understood=False))
    assert e.trigger == "frustration"
    e = decide(turn("I want a human", intent="out_of_scope", understood=False))
    assert e.trigger == "person"


def test_thresholds_and_targets_are_configurable():
    policy = EscalationPolicy().merged({
        "frustration": {"threshold": 0.95}, "low_confidence": {"threshold": 0.1},
        "out_of_scope": {"target": "human", "threshold": 2}, "multiple_requests": {"target": "off"},
    })
    # targets kept from the default; "at once" never below the threshold
    assert policy.rule("frustration") == Rule(0.95, ("llm", "human"), at_once=0.95)
    assert not decide(turn("this is ridiculous, you're useless", confidence=0.2), policy).escalate
    oos = turn("boats", intent="out_of_scope", understood=False)
    assert not decide(oos, policy).escalate and "(1 of 2)" in decide(oos, policy).reason
    assert decide(oos, policy, counts={"out_of_scope": 1}).target == "human"
    off = decide(turn("check my balance and also pay a bill"), policy)
    assert not off.escalate and "trigger off" in off.reason


def test_unavailable_target_does_not_fire_and_says_so():
    e = decide(turn("boats", intent="out_of_scope", understood=False), available=["human"])
    assert not e.escalate and "no llm to hand to" in e.reason
    assert "out_of_scope" in e.held  # still counted: the session adds it up


def signals(**scores) -> Signals:
    return Signals(**scores, source="model")


def test_nobody_to_reach_for_an_upset_caller_says_so():
    upset = TurnFacts("balance", 0.9, signals(frustration=0.8), understood=True)
    e = decide(upset, available=[])
    assert not e.escalate and e.unreachable and e.trigger == "frustration" and e.score == 0.8
    assert "no llm or human to hand to" in e.reason
    # off is off: no apology either
    assert not decide(upset, EscalationPolicy().merged({"frustration": {"target": "off"}}), available=[]).unreachable
    # several requests with nobody to hand to are served by the flow one at a time
    several = TurnFacts("balance", 0.9, signals(several=0.9), understood=True)
    assert not decide(several, available=[]).unreachable


def test_complaints_and_policy_questions_only_when_the_flow_has_no_intent_for_them():
    complaint = signals(complaint=0.9)
    assert decide(TurnFacts("charged_twice", 0.9, complaint, understood=True)).escalate is False
    e = decide(TurnFacts("out_of_scope", 0.8, complaint, understood=False), available=["human"])
    assert (e.escalate, e.target, e.trigger) == (True, "human", "complaint") and "score 0.90" in e.reason
    e = decide(TurnFacts("out_of_scope", 0.8, signals(policy_question=0.9), understood=False))
    assert (e.target, e.trigger) == ("llm", "policy_question")


def test_an_upset_caller_the_flow_is_taking_to_its_person_follows_the_flow():
    upset = signals(frustration=0.9, wants_person=True)
    assert not decide(TurnFacts("talk_to_agent", 0.7, upset, understood=True, person_intent=True)).escalate
    assert decide(TurnFacts("balance", 0.7, upset, understood=True)).trigger == "frustration"


def test_several_requests_in_menus_and_in_questions_they_do_not_answer():
    several = signals(several=0.9)
    assert decide(TurnFacts("balance", 0.9, several, understood=True)).trigger == "multiple_requests"
    assert not decide(TurnFacts(None, 1.0, several, understood=True, menu=False, from_slot=True)).escalate
    assert decide(TurnFacts(None, 0.0, several, understood=False, menu=False)).trigger == "multiple_requests"


def test_an_old_count_threshold_on_a_scored_trigger_is_refused():
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(FLOW + "escalation:\n  multiple_requests: {threshold: 2}\n", "f.yaml")
    assert "multiple_requests.threshold is a score from 0 to 1" in str(info.value.errors[0])


def test_a_list_of_targets_in_a_flow():
    flow = load_flow_text(FLOW + "escalation:\n  complaint: {threshold: 0.7, target: [human, llm]}\n")
    policy = EscalationPolicy().merged(flow.flow.escalation.model_dump(exclude_none=True))
    assert policy.rule("complaint") == Rule(0.7, ("human", "llm"))


def test_layers_flow_over_server_over_defaults():
    server = EscalationPolicy().merged({"person": {"target": "llm"}, "human": "+15550000", "dtmf_human": "9"})
    flow = server.merged({"person": {"threshold": 2}, "human": "agent", "llm_fallback": "human"})
    assert flow.rule("person") == Rule(2, "llm")
    assert (flow.human, flow.dtmf_human, flow.llm_fallback) == ("agent", "9", "human")
    assert flow.rule("no_match") == DEFAULT_RULES["no_match"]


def test_saying_the_same_thing_again_raises_frustration():
    calm = detect("I need to change my address")
    again = with_repetition(calm, "I need to change my address", "I need to change my address")
    assert calm.frustration == 0 and again.frustration > 0 and "said the same thing again" in again.cues
    assert with_repetition(calm, "what are your hours", "I need to change my address") == calm
    angry_again = with_repetition(detect("this is ridiculous"), "this is ridiculous", "this is ridiculous")
    assert decide(turn(), EscalationPolicy()).escalate is False
    assert decide(TurnFacts("balance", 0.9, angry_again, understood=True)).trigger == "frustration"


FLOW = """
flow: t
start: menu
slots:
  order: {type: digits, length: 6, description: the order number}
  pin: {type: digits, length: 4, sensitive: true}
global_intents:
  talk_to_agent: {examples: [agent, a real person], goto: agent}
nodes:
  menu:
    say: Menu.
    intents:
      help_me: {examples: [help], goto: helper}
      order_status: {description: The caller asks where their order is., examples: [where is my order], goto: menu}
  helper: {say: One moment., next: agent}
  agent: {say: Connecting you., transfer: "+15550100"}
"""


def test_person_intent_is_one_that_reaches_a_transfer():
    flow = load_flow_text(FLOW).flow
    assert is_person_intent("talk_to_agent", flow)
    assert is_person_intent("help_me", flow)  # via `next` to the transfer node
    assert not is_person_intent("order_status", flow) and not is_person_intent(None, flow)


def test_human_destination_and_whisper_summary():
    flow = load_flow_text(FLOW).flow
    assert human_destination(flow, None, "+1999") == "agent"
    assert human_destination(flow, "sip:desk@pbx", None) == "sip:desk@pbx"
    assert transfer_number(flow, "agent") == "+15550100"
    summary = whisper_summary(flow, "order_status", {"order": "123456", "pin": "[redacted]"}, "caller asked for a person")
    assert summary == ("Caller wants: The caller asks where their order is. Details: order 1 2 3 4 5 6, "
                       "pin [redacted]. Reason: caller asked for a person.")
    assert len(whisper_summary(flow, None, {"order": "x" * 500}, "r")) <= 300


def test_flow_escalation_block_loads_and_bad_values_point_at_the_line():
    flow = load_flow_text(FLOW + "escalation:\n  out_of_scope: {threshold: 2, target: human}\n  human: agent\n")
    assert flow.flow.escalation.out_of_scope.threshold == 2 and flow.flow.escalation.human == "agent"
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(FLOW + "escalation:\n  frustration: {target: manager}\n", "f.yaml")
    assert str(info.value.errors[0]) == "f.yaml:18:25: escalation.frustration.target: Input should be 'llm', 'human' or 'off'"
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(FLOW + "escalation:\n  human: desk\n", "f.yaml")
    assert str(info.value.errors[0]).startswith("f.yaml:18:10: escalation.human 'desk' is neither a node")
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(FLOW + "escalation:\n  frustation: {target: llm}\n", "f.yaml")
    assert "unknown key 'frustation' in escalation" in str(info.value)


def test_server_defaults_from_ivr_toml(tmp_path):
    toml = tmp_path / "ivr.toml"
    toml.write_text('[server]\nport = 9000\n\n[escalation]\nhuman = "+15550000"\nout_of_scope = {target = "human"}\n')
    settings = load_settings(toml, env={})
    assert settings.escalation == {"human": "+15550000", "out_of_scope": {"target": "human"}}
    assert EscalationPolicy().merged(settings.escalation).rule("out_of_scope").target == "human"
    toml.write_text('[escalation]\nout_of_scope = {threshold = -1}\n')
    with pytest.raises(ValueError, match=r"\[escalation\].*out_of_scope.threshold"):
        load_settings(toml, env={})


def test_a_frustration_reason_quotes_only_the_upset_words():
    from ivr.nlu.signals import detect

    s = detect("this is ridiculous and I need to pay my bill", {"upset": 0.9})
    assert "and i need to" in s.cues  # a cue of several requests
    e = decide(TurnFacts("out_of_scope", 0.8, s, understood=False))
    assert e.trigger == "frustration" and "ridiculous" in e.reason and "need to" not in e.reason
    quiet = detect("my husband passed away and I need to stop his orders", {"upset": 0.9})
    assert decide(TurnFacts("out_of_scope", 0.8, quiet)).reason == "caller sounds upset (score 0.90)"


def test_an_upset_score_from_the_model_alone_escalates_at_once_only_when_high():
    """One calm turn about bad news ("someone hit my car, nobody's hurt") can score 0.4-0.9:
    from 0.3 the turn counts, and the second such turn in the call escalates; from 0.7 at once."""
    def scored(text, upset):
        return TurnFacts("report", 0.95, detect(text, {"upset": upset}), understood=True)

    first = decide(scored("someone hit my car yesterday", 0.5))
    assert not first.escalate and "1 of 2 turns" in first.reason and "frustration" in first.held
    second = decide(scored("it's at the body shop now", 0.4), counts={"frustration": 1})
    assert second.escalate and second.trigger == "frustration" and "second such turn" in second.reason
    assert decide(scored("I'm so scared, I can't stop shaking", 0.8)).escalate
    # said in words, or said again: at once from the threshold
    assert decide(scored("this is ridiculous", 0.4)).escalate
    assert decide(TurnFacts("report", 0.95, with_repetition(detect("report a claim", {"upset": 0.2}), "report a claim",
                                                            "report a claim"), understood=True)).escalate


def test_at_once_is_configurable_per_flow():
    policy = EscalationPolicy().merged({"frustration": {"at_once": 0.3}})
    assert decide(TurnFacts("report", 0.95, detect("someone hit my car", {"upset": 0.5}), understood=True), policy).escalate
