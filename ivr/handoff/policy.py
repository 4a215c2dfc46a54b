"""When a turn should leave the scripted path: pure rules over one turn's understanding.

Each trigger has a threshold and a target ("llm", "human" or "off"). The first trigger that
fires, in the order of `TRIGGERS`, decides; every decision, escalating or not, carries a reason
so an operator can see why a call went where it did. Counting triggers (repeated no-match,
out-of-scope, ...) get their counts from the session, which keeps them per call; the no-match
count is the flow engine's own retry counter for the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from typing import Iterable, Mapping

from ivr.nlu.signals import REPEATED, Signals, detect
from ivr.nlu.understanding import OUT_OF_SCOPE

LLM, HUMAN, OFF = "llm", "human", "off"

# Order of precedence: an upset caller or one asking for a person outranks a confused turn, and
# a turn the signals can name (several requests, a complaint, a story with a question, a policy
# question) is reported as that rather than as merely out of scope.
TRIGGERS = ("frustration", "person", "no_match", "multiple_requests", "complaint", "story_question",
            "policy_question", "out_of_scope", "low_confidence")
COUNTED = ("person", "no_match", "out_of_scope")
"""Triggers whose threshold is a number of turns; the others compare a score."""
SCORED = ("frustration", "multiple_requests", "complaint", "story_question", "policy_question")
"""Triggers on a signal's score (ivr.nlu.signals), 0 to 1; calibrated on the benchmark's data
for all but policy_question (0.8: about 8 in 10 such turns were that)."""


@dataclass(frozen=True)
class Rule:
    threshold: float
    target: str | tuple[str, ...]
    """A target, or targets in order of preference: the first this call can reach is used."""
    at_once: float | None = None
    """Scored triggers: a score at or above it fires at once; from `threshold` up to it the
    turn counts, and the second such turn in the call fires (frustration: at once too when the
    turn's words or a repetition say it). None: `threshold` fires at once."""

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)


TO_LLM_OR_PERSON = (LLM, HUMAN)

DEFAULT_RULES: dict[str, Rule] = {
    # Upset callers and turns the script cannot serve go to the language model where there is
    # one, else to a person. Thresholds on calibrated scores, chosen with `ivr bench signals`
    # (docs/flows.md 10a). One turn's words are weak evidence of a mood: at 0.3 the model also
    # fired on 7-12% of calm requests and answers about bad news (an accident, running out of
    # pills), so that half of such calls were escalated somewhere. A turn at 0.7 or more goes
    # at once, and so does one from 0.3 that says so in words ("this is ridiculous") or says
    # the same thing again; else from 0.3 a second such turn in the call does, which a calm
    # caller rarely gives and an upset one usually does.
    "frustration": Rule(0.3, TO_LLM_OR_PERSON, at_once=0.7),
    "person": Rule(1, HUMAN),
    "no_match": Rule(2, LLM),
    "multiple_requests": Rule(0.4, TO_LLM_OR_PERSON),
    "complaint": Rule(0.5, TO_LLM_OR_PERSON),
    # A story with a question needs the whole story read; the language model does that, and
    # the flow's own intent still wins when one took the turn.
    "story_question": Rule(0.5, LLM),
    "policy_question": Rule(0.6, LLM),
    "out_of_scope": Rule(1, LLM),
    # Confidences are calibrated (ivr/nlu/calibration.py): below 0.5 the pick is more likely
    # wrong than right. The SLM's weakest confirmations sit at ~0.39, so 0.35 would never fire.
    "low_confidence": Rule(0.5, LLM),
}
REACH_OUT = ("frustration", "person", "complaint")
"""Triggers that mean the caller needs more than the script: when none of their targets can be
reached, the caller is told so and offered what the flow can do (`Escalation.unreachable`).
Several requests with nobody to hand to are simply served one at a time by the flow."""


@dataclass(frozen=True)
class EscalationPolicy:
    rules: Mapping[str, Rule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    human: str | None = None
    """A node, phone number or SIP address; None: the flow's first transfer node."""
    dtmf_human: str = "0"
    llm_fallback: str = "retry"
    whisper: bool = True

    def rule(self, trigger: str) -> Rule:
        return self.rules.get(trigger, DEFAULT_RULES[trigger])

    def merged(self, layer: Mapping | None) -> "EscalationPolicy":
        """This policy with a config layer on top (ivr.toml's [escalation], then the flow's).

        A layer has the flow file's shape: `{trigger: {threshold, target}, human, ...}`, with
        unset values absent or None."""
        if not layer:
            return self
        rules = dict(self.rules)
        for trigger in TRIGGERS:
            spec = layer.get(trigger)
            if not spec:
                continue
            base = rules.get(trigger, DEFAULT_RULES[trigger])
            threshold, target = spec.get("threshold"), spec.get("target") or base.target
            at_once = spec.get("at_once", base.at_once)
            threshold = base.threshold if threshold is None else float(threshold)
            rules[trigger] = Rule(threshold, target if isinstance(target, str) else tuple(target),
                                  None if at_once is None else max(float(at_once), threshold))
        simple = {k: layer[k] for k in ("human", "dtmf_human", "llm_fallback", "whisper") if layer.get(k) is not None}
        return replace(self, rules=rules, **simple)


@dataclass(frozen=True)
class TurnFacts:
    """One caller turn as the policy sees it; the session fills it from the NLU and the engine."""

    intent: str | None
    confidence: float
    signals: Signals
    understood: bool = False
    """The flow itself can act on this turn: a slot value, a yes/no, one of its intents."""
    person_intent: bool = False
    """The intent chosen is the flow's own way to reach a person: the flow routes it."""
    menu: bool = True
    """The node offers intents of its own; out-of-scope and low confidence only apply there."""
    from_slot: bool = False
    """The answer parsed as the slot the node collects (no intent was classified)."""
    sensitive: bool = False
    """The node collects a sensitive value: reasons must not quote the caller's words."""
    text_answer: bool = False
    """The turn answers a question that takes free text (an address, what happened): the model
    reads the topic ("water is coming through the ceiling") as much as the mood there, so only
    upset said in words escalates ("this is ridiculous, it's the third time I'm calling")."""


@dataclass(frozen=True)
class Escalation:
    escalate: bool
    target: str | None = None
    reason: str = ""
    trigger: str = ""
    held: tuple[str, ...] = ()
    """The counting triggers whose condition held this turn: the session adds them up."""
    score: float | None = None
    """The signal's score when a scored trigger (SCORED) decided."""
    unreachable: bool = False
    """The caller needs more than the script (`trigger`) and nobody can be reached: the session
    says so and offers what the flow can do."""

    def as_dict(self) -> dict:
        return {"escalate": self.escalate, "target": self.target, "trigger": self.trigger, "reason": self.reason,
                **({"score": round(self.score, 2)} if self.score is not None else {}),
                **({"unreachable": True} if self.unreachable else {})}


NO_ESCALATION = Escalation(False)


_SIGNAL_WORDS = {"frustration": "caller sounds upset", "multiple_requests": "several requests in one turn",
                 "complaint": "a complaint or dispute", "story_question": "a story with a question in it",
                 "policy_question": "a question about policy"}


def conditions(turn: TurnFacts, policy: EscalationPolicy) -> dict[str, str]:
    """The triggers whose condition holds this turn, each with what was seen."""
    s = turn.signals
    held: dict[str, str] = {}
    for trigger in SCORED:
        score = s.score(trigger)
        if score < policy.rule(trigger).threshold:
            continue
        if trigger == "multiple_requests" and not turn.menu and turn.understood:
            continue  # an answer to the node's question ("the 3rd, and for two people") is values
        if trigger in ("complaint", "story_question", "policy_question") and turn.understood:
            continue  # the flow's own intent for it wins (a "charged twice" menu option)
        if trigger == "frustration" and turn.person_intent and turn.understood:
            continue  # the flow is taking them to its own person already
        if trigger == "frustration" and turn.text_answer and not s.upset_cues:
            continue
        quoted = trigger == "frustration" and s.upset_cues and not turn.sensitive
        cues = f"{', '.join(s.upset_cues[:3])}; " if quoted else ""
        held[trigger] = f"{_SIGNAL_WORDS[trigger]} ({cues}score {score:.2f})"
    if s.wants_person and not turn.person_intent:
        held["person"] = "caller asked for a person"
    if not turn.understood:
        held["no_match"] = "not understood"
    if turn.menu and turn.intent == OUT_OF_SCOPE and not turn.understood:
        held["out_of_scope"] = "request is outside this menu"
    low = policy.rule("low_confidence").threshold
    if turn.menu and not turn.from_slot and turn.intent not in (None, OUT_OF_SCOPE) and turn.confidence < low:
        held["low_confidence"] = f"low confidence ({turn.confidence:.2f} < {low:g}) in '{turn.intent}'"
    return held


def decide(turn: TurnFacts, policy: EscalationPolicy = EscalationPolicy(), *, counts: Mapping[str, int] | None = None,
           available: Iterable[str] = (LLM, HUMAN)) -> Escalation:
    """counts: how many earlier turns met each counting trigger (for no_match: the engine's
    no-match count in this node). available: the targets this call can reach now."""
    counts = counts or {}
    available = set(available)
    held = conditions(turn, policy)
    notes: list[str] = []
    unreachable: Escalation | None = None
    counted = tuple(t for t in held if t in COUNTED or policy.rule(t).at_once is not None)
    for trigger in TRIGGERS:
        if trigger not in held:
            continue
        rule = policy.rule(trigger)
        what = held[trigger]
        score = turn.signals.score(trigger) if trigger in SCORED else None
        said = trigger == "frustration" and bool(turn.signals.upset_cues)  # in words, or by saying it again
        if score is not None and rule.at_once is not None and score < rule.at_once and not said:
            seen = counts.get(trigger, 0) + 1
            if seen < 2:
                notes.append(f"{what} (1 of 2 turns; at once from {rule.at_once:g})")
                continue
            what = f"{what}, the second such turn"
        elif trigger in COUNTED:
            seen = counts.get(trigger, 0) + 1
            if seen < rule.threshold:
                notes.append(f"{what} ({seen} of {rule.threshold:g})")
                continue
            if rule.threshold > 1:
                what = f"{what} {seen} times"
        if OFF in rule.targets:
            notes.append(f"{what} (trigger off)")
            continue
        target = next((t for t in rule.targets if t in available), None)
        if target is None:
            nobody = f"no {' or '.join(rule.targets)} to hand to"
            notes.append(f"{what} ({nobody})")
            if unreachable is None and trigger in REACH_OUT:
                unreachable = Escalation(False, None, f"{what}; {nobody}", trigger, counted, score, unreachable=True)
            continue
        return Escalation(True, target, what, trigger, counted, score)
    if unreachable is not None:
        return unreachable
    if notes:
        reason = "; ".join(notes)
    elif turn.from_slot:
        reason = "on script: the answer is a value for this step"
    elif turn.intent:
        reason = f"on script: '{turn.intent}' ({turn.confidence:.2f})"
    else:
        reason = "on script"
    return Escalation(False, None, reason, "", counted)


def repeated(previous: str | None, text: str, ratio: float = 0.8) -> bool:
    """The caller said (nearly) the same words as last turn: the bot is failing them."""
    if not previous:
        return False
    a, b = _words(previous), _words(text)
    return len(b) >= 2 and SequenceMatcher(None, a, b).ratio() >= ratio


REPEAT_WEIGHT = 0.2
"""How much saying the same thing again adds to the frustration score: below the default
threshold (0.3) on its own, so a caller repeating an answer the line asked for again is not
escalated for it; with some upset in the words it tips the turn over."""


def with_repetition(signals: Signals, previous: str | None, text: str) -> Signals:
    """Saying it again raises the upset score as one more piece of evidence would (a noisy or,
    so a calibrated score stays a probability)."""
    if not repeated(previous, text):
        return signals
    raised = 1.0 - (1.0 - signals.frustration) * (1.0 - REPEAT_WEIGHT)
    return replace(signals, frustration=raised,
                   cues=signals.cues + (REPEATED,), upset_cues=signals.upset_cues + (REPEATED,))


def _words(text: str) -> list[str]:
    return "".join(ch if ch.isalnum() else " " for ch in text.lower()).split()


def is_person_intent(intent: str | None, flow) -> bool:
    """Whether a flow's intent is its own way to a person: it leads to a `transfer` node within
    a few `next` steps, or its examples ask for one."""
    spec = None
    if intent:
        for intents in [flow.global_intents] + [n.intents or {} for n in flow.nodes.values()]:
            if intent in intents:
                spec = intents[intent]
                break
    if spec is None:
        return False
    node_name, hops = spec.goto, 0
    while node_name in flow.nodes and hops < 5:
        node = flow.nodes[node_name]
        if node.transfer:
            return True
        node_name, hops = node.next if isinstance(node.next, str) else None, hops + 1
    return any(detect(example).wants_person for example in spec.phrases)
