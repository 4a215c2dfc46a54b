from ivr.handoff.policy import EscalationPolicy, decide
from ivr.nlu.signals import Signals, detect


def test_routine_turn_stays_on_script():
    assert not decide("balance", 0.9, detect("what's my balance")).escalate


def test_each_trigger_with_reason_and_target():
    e = decide("balance", 0.9, detect("this is ridiculous, you're useless"))
    assert (e.escalate, e.target, e.trigger) == (True, "human", "frustration") and "ridiculous" in e.reason
    e = decide("balance", 0.9, detect("let me talk to a real person"))
    assert (e.target, e.trigger) == ("human", "person_requested")
    assert not decide("talk_to_agent", 0.9, detect("let me talk to a real person"), person_intent_chosen=True).escalate
    e = decide("balance", 0.9, detect("check my balance and also report a lost card"))
    assert (e.target, e.trigger) == ("llm", "multiple_requests")
    assert decide("out_of_scope", 0.8, Signals()).trigger == "out_of_scope"
    e = decide("balance", 0.2, Signals())
    assert e.trigger == "low_confidence" and "0.20" in e.reason


def test_thresholds_and_targets_are_configurable():
    policy = EscalationPolicy(frustration_threshold=0.95, low_confidence_threshold=0.1, out_of_scope_target="human")
    assert not decide("balance", 0.2, detect("this is ridiculous"), policy).escalate
    assert decide("out_of_scope", 0.9, Signals(), policy).target == "human"
