"""When a turn should leave the scripted path: pure rules over one turn's understanding.

Each trigger has a threshold and a target ("llm" or "human"); the first trigger that fires,
in the order below, decides, and its reason is logged so an operator can see why a call went
where it did. Session-level triggers (repeated no-match) come from the flow's retry policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.nlu.signals import Signals

OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True)
class EscalationPolicy:
    frustration_threshold: float = 0.6
    frustration_target: str = "human"
    person_target: str = "human"
    out_of_scope_target: str = "llm"
    low_confidence_threshold: float = 0.35
    low_confidence_target: str = "llm"
    multiple_requests_target: str = "llm"


@dataclass(frozen=True)
class Escalation:
    escalate: bool
    target: str | None = None
    reason: str = ""
    trigger: str = ""

    def as_dict(self) -> dict:
        return {"escalate": self.escalate, "target": self.target, "reason": self.reason, "trigger": self.trigger}


NO_ESCALATION = Escalation(False)


def decide(intent: str | None, confidence: float, signals: Signals, policy: EscalationPolicy = EscalationPolicy(),
           *, person_intent_chosen: bool = False) -> Escalation:
    """person_intent_chosen: the NLU picked the flow's own "agent" intent, so the flow routes it."""
    if signals.frustration >= policy.frustration_threshold:
        cues = ", ".join(signals.cues[:3])
        return Escalation(True, policy.frustration_target, f"caller sounds frustrated ({cues})", "frustration")
    if signals.wants_person and not person_intent_chosen:
        return Escalation(True, policy.person_target, "caller asked for a person", "person_requested")
    if signals.multiple_requests:
        return Escalation(True, policy.multiple_requests_target, "several requests in one turn", "multiple_requests")
    if intent == OUT_OF_SCOPE:
        return Escalation(True, policy.out_of_scope_target, "request is outside this menu", "out_of_scope")
    if intent is not None and confidence < policy.low_confidence_threshold:
        return Escalation(True, policy.low_confidence_target, f"low confidence ({confidence:.2f}) in '{intent}'", "low_confidence")
    return NO_ESCALATION
