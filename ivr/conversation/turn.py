"""One caller turn through the scripted flow, in parts with types at their edges.

    understand(expectation, text) -> Understood   the answer parsed once as the value the node
                                                  collects; the NLU asked for an intent only when
                                                  it is not one; every value the words carry for
                                                  the slots ahead (parsers, then the small model);
                                                  the turn's escalation signals. Started during
                                                  the end-of-turn silence (understand_early)
    decide(understood)            -> Escalation   would the flow act on it (the engine), and does
                                                  the escalation policy take the call out of the
                                                  script (to the LLM or a person)
    act                                           the session carries out the engine's effects
                                                  (CallSession.run) or the escalation

`TurnStep` is one call's understand and decide, with what they remember between turns (the last
words, for repetition; how often each escalation trigger held; the last intent understood, for
the agent's whisper). It speaks to nobody and writes nothing: the session logs what it returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from ivr.calllog.review_queue import with_vector
from ivr.dialog.engine import Expectation, FlowEngine, signal_examples
from ivr.handoff.policy import Escalation, EscalationPolicy, TurnFacts, decide, is_person_intent, with_repetition
from ivr.nlu.extract import claimed_spans, find_values
from ivr.nlu.places import places_said
from ivr.nlu.non_answers import non_answer
from ivr.nlu.signals import Signals, detect
from ivr.nlu.slm_extract import likely_carries_values
from ivr.nlu.understanding import OUT_OF_SCOPE, NLUOutcome, SlotValue, Understanding

@dataclass
class Turn:
    """Timing of one caller turn, in epoch seconds; latencies derive from these."""

    index: int
    source: str  # "speech" or "dtmf"
    speech_end: float | None = None
    speech_start: float | None = None  # where the words are in the call's recording
    decided_at: float | None = None  # the end-of-turn silence had passed
    transcript_at: float | None = None
    nlu_done_at: float | None = None
    first_audio_at: float | None = None
    stt_ms: float | None = None
    nlu_ms: float | None = None
    text: str = ""

    def stages(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.speech_end and self.decided_at:
            out["endpoint_ms"] = (self.decided_at - self.speech_end) * 1000
        if self.speech_end and self.transcript_at:
            out["to_transcript_ms"] = (self.transcript_at - self.speech_end) * 1000
        if self.stt_ms is not None:
            out["stt_ms"] = self.stt_ms
        if self.nlu_ms is not None:
            out["nlu_ms"] = self.nlu_ms
        if self.nlu_done_at and self.first_audio_at:
            out["to_first_audio_ms"] = (self.first_audio_at - self.nlu_done_at) * 1000
        if self.speech_end and self.first_audio_at:
            out["voice_to_voice_ms"] = (self.first_audio_at - self.speech_end) * 1000
        return {k: round(v, 1) for k, v in out.items()}


@dataclass(frozen=True)
class Understood:
    """What one turn's words mean to the node that heard them."""

    text: str
    node: str
    outcome: NLUOutcome
    facts: TurnFacts  # what the escalation policy weighs
    waited_ms: float = 0.0
    """How long the turn waited for its meaning: less than the NLU's own time when it was
    understood during the end-of-turn silence (`early`)."""
    early: bool = False

    @property
    def understanding(self) -> Understanding:
        return self.outcome.understanding

    @property
    def signals(self) -> Signals:
        return self.facts.signals


class TurnStep:
    def __init__(self, engine: FlowEngine, nlu, policy: EscalationPolicy, flow_def, *,
                 on_error: Callable[[str, str], None]):
        """nlu: ivr.nlu.service.NLUService or a stand-in (None: intents are never classified).
        on_error(node, error): the NLU failed; the turn goes on, not understood."""
        self.engine = engine
        self.nlu = nlu
        self.policy = policy
        self.flow_def = flow_def
        self._on_error = on_error
        self._trigger_counts: dict[str, int] = {}
        self._last_caller_text: str | None = None
        self.last_intent: str | None = None  # the caller's last understood request (the agent's whisper)
        self._early: tuple[Expectation, str, asyncio.Future] | None = None

    def snapshot(self) -> tuple:
        """What a turn changes in the step's memory, to put back if the caller takes it back."""
        return dict(self._trigger_counts), self._last_caller_text, self.last_intent

    def restore(self, snapshot: tuple) -> None:
        counts, self._last_caller_text, self.last_intent = snapshot
        self._trigger_counts = dict(counts)
        self._early = None

    # ------------------------------------------------------------ understand
    async def settles_early(self, expectation: Expectation, text: str, confidence: float) -> bool:
        """Whether the words heard so far, already being understood (`understand_early`), are a
        request the flow acts on with at least `confidence`: then the turn need not wait out
        the rest of the silence. The understanding itself is shielded: the turn uses it."""
        early = self._early
        if early is None or early[0] != expectation or early[1] != text:
            return False
        try:
            outcome = await asyncio.shield(early[2])
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        u = outcome.understanding
        return (u.intent is not None and u.intent != OUT_OF_SCOPE and u.confidence >= confidence
                and self.engine.understands(text, u))

    def understand_early(self, expectation: Expectation, text: str) -> None:
        """Start understanding the words heard so far while the end-of-turn silence runs out;
        `understand` takes the result when the turn ends with the same words at the same node
        (the usual case), so the router, the small model and the extraction overlap the silence."""
        task = asyncio.ensure_future(self._meaning(expectation, text))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # an unused guess fails quietly
        self._early = (expectation, text, task)

    async def understand(self, expectation: Expectation, text: str) -> Understood:
        started = time.perf_counter()
        early, self._early = self._early, None
        outcome = None
        if early is not None and early[0] == expectation and early[1] == text:
            try:
                outcome = await early[2]
            except Exception:  # the guess failed: understand the turn as if it had not been made
                outcome = None
        used_early = outcome is not None
        if outcome is None:
            outcome = await self._meaning(expectation, text)
        waited_ms = (time.perf_counter() - started) * 1000
        u = outcome.understanding
        slot = self.flow_def.slots.get(expectation.slot) if expectation.slot else None
        facts = TurnFacts(
            u.intent, u.confidence, self.signals(text, outcome.signal_scores),
            understood=self.engine.understands(text, u),
            person_intent=is_person_intent(u.intent, self.flow_def),
            menu=any(o.scope == "node" for o in expectation.intents),
            from_slot=u.source == "slot",
            sensitive=bool(slot is not None and slot.sensitive),
            text_answer=expectation.slot_type == "text" and self.engine.fills_slot(text),
        )
        if u.intent and u.intent != OUT_OF_SCOPE and facts.understood:
            self.last_intent = u.intent
        return Understood(text, expectation.node, outcome, facts, waited_ms, used_early)

    async def _meaning(self, expectation: Expectation, text: str) -> NLUOutcome:
        """The intent, then the values and, meanwhile, the signals: no state of the call is read
        but the node's, none written."""
        outcome = await self._route(expectation, text)
        scoring = None
        free_text = expectation.slot_type == "text"  # an answer, but one that may say how the caller feels
        if (getattr(self.nlu, "signals", None) is not None and (free_text or not self.engine.fills_slot(text))
                and not non_answer(text)):
            # After the router, not beside it: its vector of these words is then in the
            # embedder's cache, and the second worker thread stays free for another call's turn.
            # ("1 2 3 4", "yes", "hang on", "no idea": nothing to feel in a value or a stock
            # phrase, on which the model misfired: "not yet, hold on" scored upset 0.67.)
            scoring = asyncio.ensure_future(self.signal_scores(expectation.node, text))
        try:
            started = time.perf_counter()
            values = await self._values(expectation, text, outcome.understanding)
            if values:
                outcome.understanding = dataclasses.replace(outcome.understanding, values=values)
                outcome.latency_ms += (time.perf_counter() - started) * 1000
            if scoring is not None:
                outcome.signal_scores = await scoring
        finally:
            if scoring is not None and not scoring.done():
                scoring.cancel()
        return outcome

    async def signal_scores(self, node: str, text: str) -> dict[str, float] | None:
        """The signals' scores from the NLU's model; None (words only) without one or on error."""
        score = getattr(self.nlu, "signals", None)
        if score is None:
            return None
        examples = signal_examples(self.engine.loaded)  # the flow's own sentences decide near-paraphrases
        try:
            return await (score(text, examples) if examples else score(text))
        except Exception as exc:  # the words still give the policy something to go on
            self._on_error(node, f"signals: {exc}")
            return None

    async def _route(self, expectation: Expectation, text: str) -> NLUOutcome:
        every_turn = getattr(self.nlu, "routes_every_turn", False)
        if not every_turn and self.engine.fills_slot(text) and not self.engine.may_be_a_request(text):
            # The answer parses as the slot this node collects: skip the NLU (its SLM can cost
            # half a second) since a parsed value wins over intents anyway (a short answer to a
            # text question may be "agent": the engine decides with the NLU's view).
            return NLUOutcome(Understanding(None, 1.0, "slot"))
        if self.nlu is None or not (expectation.intents or every_turn):
            return NLUOutcome(Understanding(None, 0.0, "none"))
        try:
            return await self.nlu.understand(expectation.candidates, text)
        except Exception as exc:  # a failing model must not end the call: treat as not understood
            self._on_error(expectation.node, str(exc))
            return NLUOutcome(Understanding(None, 0.0, "error"))

    async def _values(self, expectation: Expectation, text: str, u: Understanding) -> tuple[SlotValue, ...]:
        """Every value the words carry for the slots ahead: the parsers first (spans, ~1 ms),
        then the small model for the text slots they left, only when words remain that could be
        one (ivr.nlu.slm_extract)."""
        intent = u.intent if u.intent and u.intent != OUT_OF_SCOPE else None
        specs = self.engine.listening_slots(intent)
        if not specs:
            return ()
        found = find_values(text, specs)
        plan = self.engine.extraction_plan(intent)
        extract = getattr(self.nlu, "extract", None)
        if plan is None or extract is None:
            return tuple(found)
        placed = {v.slot for v in found}
        ask = tuple(x for x in plan.specs if x.name not in placed)
        claimed = tuple(claimed_spans(found))
        if not ask or not likely_carries_values(text, plan.request_words, claimed):
            return tuple(found)
        by_model: list[SlotValue] = []
        try:
            by_model = await extract(plan, ask, text, claimed)
        except Exception as exc:  # the parsers' values stand; the turn goes on
            self._on_error(expectation.node, f"slot extraction: {exc}")
        # a city named after "in" that the model left, and the region said after a place
        return tuple(found) + tuple(places_said(text, ask, by_model, claimed))

    def signals(self, text: str, scores: dict[str, float] | None = None) -> Signals:
        """The turn's escalation signals (the model's `scores` where it ran), repetition of the
        caller's last words included, except for an answer the node asked for (a number said
        again after "that didn't sound like six digits" is not a caller losing patience)."""
        signals = detect(text, scores)
        if not self.engine.fills_slot(text):
            signals = with_repetition(signals, self._last_caller_text, text)
        self._last_caller_text = text
        return signals

    # ------------------------------------------------------------ decide
    def decide(self, facts: TurnFacts, available: Iterable[str]) -> Escalation:
        """Whether the policy takes the call out of the script, to one of the `available` targets."""
        counts = {**self._trigger_counts, "no_match": self.engine.state.no_match}
        decision = decide(facts, self.policy, counts=counts, available=available)
        for trigger in decision.held:
            if trigger != "no_match":  # the engine counts its own no-matches, per node
                self._trigger_counts[trigger] = self._trigger_counts.get(trigger, 0) + 1
        return decision

    # ------------------------------------------------------------ the record
    @staticmethod
    def record(understood: Understood, decision: Escalation, *, text: str, sensitive: bool) -> dict:
        """The turn's `nlu` event for the call log (text: the caller's words, or [redacted])."""
        u, outcome = understood.understanding, understood.outcome
        record = {
            "node": understood.node,
            "text": text,
            "intent": u.intent,
            "confidence": round(u.confidence, 4),
            "source": u.source,
            "ranked": [[n, round(s, 4)] for n, s in outcome.ranked[:3]],
            "slots": [{"slot": v.slot, "value": "[redacted]" if sensitive else v.value, "source": v.source}
                      for v in u.values],
            "latency_ms": round(outcome.latency_ms, 1),
            "waited_ms": round(understood.waited_ms, 1),
            **({"early": True} if understood.early else {}),
            "signals": signals_for_log(understood.signals, sensitive),
            "decision": decision.as_dict(),
        }
        return record if sensitive else with_vector(record, outcome.vector, outcome.vector_by)


def signals_for_log(signals: Signals, sensitive: bool) -> dict:
    data = signals.as_dict()
    if sensitive:
        data["cues"] = []  # cues quote the caller ("1 1 1" is a repeat), and this is a secret
    return data
