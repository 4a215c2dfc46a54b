"""The flow engine: a pure state machine over one call's flow, with no audio, model or I/O.

The caller's input comes in already understood (`on_text` with the NLU's `Understanding`,
`on_dtmf` with a complete keypad entry, `on_no_input` when the silence timer fires) and the
engine answers with a list of effects (say this, listen for that, transfer, hang up) that the
call session carries out. The engine, not a model, decides every transition: models only
classify and extract (docs/architecture.md, "Who decides").
"""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Union

from ivr.nlu.non_answers import HOLD, UNKNOWN, non_answer
from ivr.nlu.signals import upset_words
from ivr.nlu.slots import AMBIGUOUS, DateSpan, ParseResult, parse_date, parse_slot, spoken_number
from ivr.nlu.understanding import (
    OUT_OF_SCOPE,
    Candidates,
    ExtractionPlan,
    Intent,
    SignalExamples,
    SlotSpec,
    SlotValue,
    Understanding,
)

from . import speech_format
from .conditions import evaluate
from .loader import LoadedFlow
from .number_reading import MAX_PARTS, read_number, reads_numbers
from .paths import extraction_plan, extraction_plans, heard_policy, intent_slots, slot_spec, slots_ahead
from .schema import Branch, DigitRules, ElseBranch, IntentDef, Node, RetryPolicy, holds_a_name

MAX_HOPS = 50  # `next` chains longer than this are a loop in the flow, not a conversation
#: Below this confidence an intent that would end the call is asked about first: hanging up on a
#: caller who said something else ("yes, that's right" heard as goodbye at 0.59, found by the
#: call benchmark) costs the whole call; one question costs a turn.
END_CALL_CONFIDENCE = 0.8
#: A short answer to a text question ("agent", "sorry, what was that?") is the flow's global
#: intent rather than the value when the NLU is this sure of it: any words are text, so without
#: this a caller asked for a name could not reach a person or hear the question again.
TEXT_NODE_INTENT_CONFIDENCE = 0.9
TEXT_NODE_INTENT_WORDS = 7  # "sorry, can you say that again" is six
END_CALL_QUESTION = "Sorry, do you want to end the call?"
#: Asked instead of acting on an intent that cannot be undone, heard with little confidence.
_MEANT_IT = {"end": END_CALL_QUESTION, "start_over": "Sorry, do you want to start over?",
             "transfer": "Sorry, do you want to talk to a person?"}
#: ... under these confidences. A transfer's is lower: plain requests for a person are routed
#: at 0.70-0.72 ("I need to talk to someone in customer service", "let me speak to your
#: manager"), the request for something else that put a caller through at 0.55.
HOLD_SECONDS = 20.0
"""How long the line waits for a caller who asked it to ("hang on, let me find it")."""
_SURE_ENOUGH = {"end": END_CALL_CONFIDENCE, "start_over": END_CALL_CONFIDENCE, "transfer": 0.6}
#: Answered slots a caller may correct at a later question. Not yes/no (the "no" of a
#: correction is no answer) nor text (any words are text).
_NUMBER_KINDS = ("digits", "phone", "number", "money")
_CORRECTABLE = ("date", "time", "number", "money", "digits", "phone", "enum")
#: A caller correcting themselves inside one answer ("fifty dollars, no, sixty", "the 3rd,
#: sorry, the 4th"): the answer is the words after the last of these.
_SELF_CORRECTED = re.compile(r"(?<=\w)[,.;]?\s+(?:no wait|i meant|i mean|make that|make it|actually|sorry|wait|no)\b[,.;]?\s+",
                             re.I)
#: Words that make a value said at a later question a correction of one heard earlier.
_CORRECTION = re.compile(r"^\W*(?:no\b|nope\b|actually\b|sorry\b|wait\b|not\b|i said\b|i meant\b|make it\b|change\b)"
                         r"|\bbut\b.*\b(?:make it|change it|instead|rather)\b|\binstead\b", re.I)  # "yes but make it 6 pm"


# ---------------------------------------------------------------- effects (engine -> session)
@dataclass(frozen=True)
class EnterNode:
    node: str


@dataclass(frozen=True)
class Say:
    text: str
    node: str
    kind: str = "prompt"  # prompt | no_match | no_input | repeat | hold | ...


@dataclass(frozen=True)
class SetSlot:
    name: str
    value: Any


@dataclass(frozen=True)
class IntentOption:
    name: str
    examples: tuple[str, ...]
    description: str
    scope: str  # "node" or "global"


@dataclass(frozen=True)
class Expectation:
    """What the current node waits for; the session uses it for NLU, DTMF and timers."""

    node: str
    key: str
    intents: tuple[IntentOption, ...]
    slot: str | None
    slot_type: str | None
    dtmf_keys: tuple[str, ...]
    max_digits: int | None
    finish_on_key: str
    inter_digit_timeout: float
    no_input_timeout: float
    barge_in: bool
    hints: tuple[str, ...] = ()
    confirming: bool = False
    out_of_scope: tuple[str, ...] = ()
    """What reviewers marked out of scope at this node (ivr/dialog/reviewed.py)."""

    @property
    def candidates(self) -> Candidates:
        """What the NLU is given of this node: its intents and slot, nothing of the engine. The
        reviewed out-of-scope turns ride along as an intent named out_of_scope, which the NLU
        takes as examples of what not to route, never as a choice (ivr/nlu/intents.py)."""
        intents = tuple(Intent(o.name, o.examples, o.description) for o in self.intents)
        if self.out_of_scope and intents:
            intents += (Intent(OUT_OF_SCOPE, self.out_of_scope),)
        return Candidates(self.key, intents, self.slot)


@dataclass(frozen=True)
class Listen:
    expectation: Expectation


@dataclass(frozen=True)
class Transfer:
    target: str
    reason: str
    trigger: str = "flow"
    """What sent the call here: flow, no_match, no_input, backend_error, an escalation
    policy trigger, dtmf or llm; the call log and the dashboard count by it."""


@dataclass(frozen=True)
class Handoff:
    target: str
    return_to: str | None
    reason: str
    trigger: str = "flow"
    score: float | None = None  # the escalation signal's, when one decided


@dataclass(frozen=True)
class Hangup:
    reason: str


@dataclass(frozen=True)
class HttpRequest:
    """Call the backend, then feed the outcome to `FlowEngine.on_action_result`."""

    node: str
    method: str
    url: str
    headers: dict
    json_body: Any
    timeout: float
    wait_say: str | None


Effect = Union[EnterNode, Say, SetSlot, Listen, Transfer, Handoff, Hangup, HttpRequest]


# ---------------------------------------------------------------- input (session -> engine)
# The NLU's answer comes in as an `ivr.nlu.understanding.Understanding`.


@dataclass
class CallState:
    node: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    no_match: int = 0
    no_input: int = 0
    last_prompts: list[str] = field(default_factory=list)
    ended: bool = False
    variants: dict[str, int] = field(default_factory=dict)
    pending: tuple[str, Any] | None = None
    """A collected (slot, value) waiting for the caller's yes/no confirmation."""
    pending_intent: str | None = None
    """An intent that would end the call, understood with too little confidence to act on
    without asking (see END_CALL_CONFIDENCE): waiting for the caller's yes/no."""
    heard: dict[str, SlotValue] = field(default_factory=dict)
    """Values said in passing, waiting for the node that collects them."""
    passing: set[str] = field(default_factory=set)
    """Slots filled from words said in passing: a later "no, Wednesday" corrects them."""
    mentions: list[str] = field(default_factory=list)
    """Values taken in passing, to say back before the next prompt (`heard: mention`)."""
    partial: str | None = None
    """The start of a number read aloud at this node ("I got 7 8 9. What comes next?"): the
    next answer is added to it (ivr.dialog.number_reading)."""
    parts: int = 0
    """How many times in a row this node asked for the rest of a number."""
    days_asked: int = 0
    """How many times in a row this node asked which day ("Which day next week?")."""
    date_span: DateSpan | None = None
    """The days this date question was narrowed to ("next week": "Which day next week?"): the
    next answer ("Tuesday") is a day among them."""
    heard_spans: dict[str, DateSpan] = field(default_factory=dict)
    """Days said in passing for a date slot ahead ("an appointment next week"), which its
    question's answer is read within."""
    keypad_offered: bool = False
    """Whether this node has offered the keypad since it was entered."""
    holding: bool = False
    """The caller asked the line to wait ("hang on, let me grab my card"): the next silence is
    given HOLD_SECONDS before it counts as no input."""


_TEMPLATE = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+)*)\s*(?:\|\s*([a-z]+)\s*)?\}")


class FlowEngine:
    def __init__(self, loaded: LoadedFlow, *, env: dict[str, str] | None = None):
        self.loaded = loaded
        self.flow = loaded.flow
        self.state = CallState()
        self._escalation_reason: str | None = None
        self._escalation_trigger = "flow"
        self._env = dict(env or {})  # for {env.X} in backend requests only, never in prompts
        self._awaiting_action: str | None = None
        self._parsed_text: str | None = None
        self._parses: dict[str | None, ParseResult] = {}

    # ------------------------------------------------------------ public API
    @property
    def node_name(self) -> str | None:
        return self.state.node

    @property
    def node(self) -> Node:
        assert self.state.node is not None, "start() first"
        return self.flow.nodes[self.state.node]

    def start(self) -> list[Effect]:
        return self._enter(self.flow.start)

    def goto(self, node: str, reason: str = "", trigger: str = "flow") -> list[Effect]:
        """Jump to a node (an LLM handoff returning to the flow, the escalation policy)."""
        if node not in self.flow.nodes:
            raise KeyError(f"unknown node '{node}'")
        self._escalation_reason = reason or None
        self._escalation_trigger = trigger
        return self._enter(node)

    def snapshot(self) -> tuple:
        """Everything a turn can change, to put back if the caller takes the turn back
        (ivr.conversation.open_turn)."""
        return (copy.deepcopy(self.state), self._escalation_reason, self._escalation_trigger, self._awaiting_action)

    def restore(self, snapshot: tuple) -> None:
        state, self._escalation_reason, self._escalation_trigger, self._awaiting_action = snapshot
        self.state = copy.deepcopy(state)  # the snapshot stays good for another restore
        self._parsed_text, self._parses = None, {}

    def offer_again(self) -> list[Effect]:
        """The node's last prompts again, and listen: what the flow can do here."""
        return [Say(p, self.state.node, "repeat") for p in self.state.last_prompts] + [Listen(self.expectation())]

    def understands(self, text: str, understanding: Understanding) -> bool:
        """Whether `on_text` would act on this answer rather than count a no match (no state change)."""
        if self._closed():
            return False
        if (self.fills_slot(text) or self._intent_spec(understanding.intent) is not None or non_answer(text) == HOLD
                or self._optional_unknown(text)):
            return True
        own = self.node.collect
        return bool(own) and self.state.pending is None and any(
            v.slot == own or v.slot in self.state.passing for v in understanding.values)

    # ------------------------------------------------------------ values said in passing
    def _takes_values(self) -> bool:
        """Whether this turn's words may fill slots: a node listening, no yes/no question pending."""
        return not (self._closed() or self.state.pending is not None or self.state.pending_intent is not None)

    def listening_slots(self, intent: str | None = None) -> tuple[SlotSpec, ...]:
        """The slots this turn's words may fill, in the order the flow would ask them: in a
        collect node its own slot, then the path ahead; in a menu, the path of the intent
        understood (ivr.dialog.paths); and the slots filled in passing earlier on this path,
        which the caller may correct. At a question, the typed slots already answered too,
        which the caller may correct with "no wait, Wednesday" (`_correct`)."""
        if not self._takes_values():
            return ()
        node, names = self.node, []
        if node.collect:
            # the path ahead, less what was already answered (a loop back does not re-hear it)
            names = [node.collect] + [n for n in slots_ahead(self.flow, self.state.node)
                                      if n != node.collect and n not in self.state.slots]
        elif intent:
            names = list(intent_slots(self.flow, self.state.node).get(intent, ()))
        names += sorted(n for n in self.state.passing if n not in names)
        if node.collect:
            names += sorted(n for n in self.state.slots if n not in names and n in self.flow.slots
                            and self.flow.slots[n].type in _CORRECTABLE and not self.flow.slots[n].sensitive)
        return tuple(slot_spec(self.flow, n) for n in names)

    def extraction_plan(self, intent: str | None = None) -> ExtractionPlan | None:
        """What the small model may fill in this turn (None: nothing, the parsers do it all).
        The same for every call at this node and intent, so its prompt is prepared at load."""
        return extraction_plan(self.loaded, self.state.node, intent) if self._takes_values() else None

    def request_for(self, node: str, slots: dict[str, Any]) -> HttpRequest:
        """A node's backend call with these slot values, without entering the node (the LLM
        uses the flow's actions as tools)."""
        action = self.flow.nodes[node].action
        saved, self.state.slots = self.state.slots, {**self.state.slots, **slots}
        try:
            return HttpRequest(
                node=node, method=action.http, url=self._render(action.url, request=True),
                headers={k: self._render(v, request=True) for k, v in action.headers.items()},
                json_body=self._render_json(action.json_body), timeout=action.timeout, wait_say=action.wait_say,
            )
        finally:
            self.state.slots = saved

    def expectation(self) -> Expectation:
        node, name = self.node, self.state.node
        options: dict[str, IntentOption] = {}
        for intent, spec in self.flow.global_intents.items():
            options[intent] = IntentOption(intent, tuple(spec.phrases), spec.description, "global")
        for intent, spec in (node.intents or {}).items():
            options[intent] = IntentOption(intent, tuple(spec.phrases), spec.description, "node")
        slot_def = self.flow.slots.get(node.collect) if node.collect else None
        rules = node.digits or DigitRules()
        confirming = self.state.pending is not None or self.state.pending_intent is not None
        if confirming:
            max_digits = 1
        elif slot_def is not None:
            max_digits = slot_def.length or slot_def.max_length
            if slot_def.type == "yes_no":
                max_digits = 1
        elif node.dtmf:
            max_digits = max(len(k) for k in node.dtmf)
        else:
            max_digits = None
        no_input = self._policy("no_input")
        return Expectation(
            node=name,
            key=f"{self.loaded.version}:{name}",
            intents=tuple(options.values()),
            slot=node.collect,
            slot_type="yes_no" if confirming else (slot_def.type if slot_def else None),
            dtmf_keys=tuple(node.dtmf or ()),
            max_digits=max_digits,
            finish_on_key=rules.finish_on_key,
            inter_digit_timeout=rules.inter_digit_timeout,
            no_input_timeout=max(no_input.timeout or 6.0, HOLD_SECONDS if self.state.holding else 0.0),
            barge_in=node.barge_in,
            hints=tuple(node.hints),
            confirming=confirming,
            out_of_scope=(*self.loaded.out_of_scope.get(None, ()), *self.loaded.out_of_scope.get(name, ())),
        )

    def fills_slot(self, text: str) -> bool:
        """Whether `text` answers what this node collects: then no intent needs classifying,
        because a parsed slot value wins over intents here (see on_text)."""
        if self._closed():
            return False
        return self._fills(text, partly=True)

    def _fills(self, text: str, partly: bool) -> bool:
        if self.state.pending is not None or self.state.pending_intent is not None:
            return self._parsed(None, text).ok
        slot_name = self.node.collect
        if not slot_name:
            return False
        if self._parsed(slot_name, text).ok:
            return True
        number = self._read_number(text)  # with the part heard before, or the start of a number
        return number is not None and (number.value is not None or (partly and self._asks_rest()))

    def _optional_unknown(self, text: str) -> bool:
        """The caller does not know what an `optional` slot asks ("no idea, sorry")."""
        own = self.node.collect
        return (own is not None and self.state.pending is None and self.state.pending_intent is None
                and self.flow.slots[own].optional and non_answer(text) == UNKNOWN)

    def answer_value(self, text: str) -> Any | None:
        """The value this node's slot would keep from `text` as an answer (None: it keeps none),
        read as the line reads it: with a correction in the answer ("5, no, 6"), a number read
        in parts, the days a date question narrowed. For tools that show what the line hears."""
        if self._closed() or not self.node.collect:
            return None
        number = self._read_number(text)
        if number is not None and number.value is not None:
            return number.value
        result = self._parsed(self.node.collect, text)
        return result.value if result.ok else None

    def may_be_a_request(self, text: str) -> bool:
        """Whether an answer to this text question is short enough to be one of the flow's
        global intents instead (then the NLU is asked, and `on_text` decides)."""
        slot = self.flow.slots.get(self.node.collect) if self.node.collect and not self._closed() else None
        return (slot is not None and slot.type == "text" and self.state.pending is None
                and bool(self.flow.global_intents) and len(text.split()) <= TEXT_NODE_INTENT_WORDS)

    def number_incomplete(self, text: str) -> bool:
        """Whether `text` is the start of the number this node collects, with digits still to
        come: the caller is likely reading on, so the turn should not end at a short pause."""
        if self._closed() or self.state.pending is not None or self.state.pending_intent is not None:
            return False
        number = self._read_number(text)
        return number is not None and number.partial is not None

    def answer_is_whole(self, text: str) -> bool:
        """`fills_slot`, for values that are either whole or not: a yes/no, a phone number,
        digits of a fixed length. Then the turn can end without waiting out the rest of the
        caller's silence; "twelve dollars" or "the fifth" may still go on ("and fifty cents")."""
        if self._closed():
            return False
        if self.state.pending is None and self.state.pending_intent is None:
            slot = self.flow.slots.get(self.node.collect) if self.node.collect else None
            if slot is None or not (slot.type in ("yes_no", "phone") or (slot.type == "digits" and slot.length)):
                return False
        return self._fills(text, partly=False)

    def on_text(self, text: str, understanding: Understanding, *, asr_unsure: bool = False) -> list[Effect]:
        """`asr_unsure`: the recogniser was unsure of these words (a number it gives is read back
        under `read_back: unsure`)."""
        try:
            return self._on_text(text, understanding, asr_unsure)
        finally:
            self._parsed_text = None  # the turn is over: its parses are not the next turn's ("tomorrow")

    def _on_text(self, text: str, understanding: Understanding, asr_unsure: bool = False) -> list[Effect]:
        if self._closed():
            return []
        self.state.holding = False
        if non_answer(text) == HOLD:
            return self._hold()
        node = self.node
        if self.state.pending_intent is not None:
            answered = self._confirm_intent(text)
            if answered is not None:
                return answered
        if self.state.pending is not None:
            answered = self._confirm(text)
            if answered is not None:
                return answered
        elif node.collect:
            corrected = self._correct(text, understanding.values)
            if corrected is not None:
                return corrected
            if self._optional_unknown(text):  # "no, I didn't get it": an optional slot stays empty
                return self._keep(node.collect, None)
            if (understanding.intent in self.flow.global_intents and self.may_be_a_request(text)
                    and understanding.confidence >= TEXT_NODE_INTENT_CONFIDENCE):
                spec = self.flow.global_intents[understanding.intent]
                if self._cannot_be_undone(spec) in ("end", "start_over"):
                    # "that's all I know" (the plate asked for) is goodbye to the router: asked
                    # about, since a short answer here is more often the value
                    return self._ask_if_meant(understanding.intent)
                return self._apply_intent(understanding.intent, spec)
            self._hear(understanding.values, text)
            self._hear_days(text, understanding)
            filled = self._try_fill(text, understanding.value_of(node.collect), spoken=True, asr_unsure=asr_unsure)
            if filled is not None:
                return filled
        spec = self._intent_spec(understanding.intent)
        if spec is not None:
            risk = self._cannot_be_undone(spec)
            # at a question, starting over is asked about however sure: "I've restarted it three
            # times already", asked whether the router was restarted, was start over at 0.97
            at_a_question = risk == "start_over" and node.collect is not None
            if risk is not None and (understanding.confidence < _SURE_ENOUGH[risk] or at_a_question):
                return self._ask_if_meant(understanding.intent)
            if spec.goto:
                self._hear(understanding.values)
                self._hear_days(text, understanding)
            return self._apply_intent(understanding.intent, spec)
        reason = "out of scope" if understanding.intent == OUT_OF_SCOPE else "no match"
        return self._no_match(reason)

    def on_dtmf(self, digits: str) -> list[Effect]:
        try:
            return self._on_dtmf(digits)
        finally:
            self._parsed_text = None

    def _on_dtmf(self, digits: str) -> list[Effect]:
        if self._closed():
            return []
        self.state.holding = False
        node = self.node
        if self.state.pending_intent is not None:
            answered = self._confirm_intent(digits)
            if answered is not None:
                return answered
        if self.state.pending is not None:
            answered = self._confirm(digits)
            return answered if answered is not None else self._no_match("press 1 for yes or 2 for no")
        if node.collect:
            self.state.keypad_offered = True  # a caller who keys needs no telling about the keypad
            filled = self._try_fill(digits)
            return filled if filled is not None else self._no_match("keypad entry not valid")
        target = (node.dtmf or {}).get(digits)
        if target is None:
            return self._no_match(f"key {digits} is not an option")
        spec = self._intent_spec(target)
        if spec is not None:
            return self._apply_intent(target, spec)
        return self._enter(target)

    def on_action_result(self, ok: bool, data: Any = None, error: str = "") -> list[Effect]:
        """The outcome of the HttpRequest the current node asked for."""
        name = self._awaiting_action
        if name is None or name != self.state.node:
            return []
        self._awaiting_action = None
        action = self.flow.nodes[name].action
        if ok:
            if action.save_as:
                self.state.vars[action.save_as] = data
            return self._after_action(name)
        self.state.vars["last_error"] = error
        if action.on_error:
            self._escalation_reason = f"backend call failed: {error}"
            self._escalation_trigger = "backend_error"
            return self._enter(action.on_error)
        self.state.ended = True
        return [
            Say("Sorry, I can't look that up right now. Please call again later.", name, "error"),
            Hangup(f"backend call failed: {error}"),
        ]

    @property
    def awaiting_action(self) -> bool:
        return self._awaiting_action is not None

    def on_no_input(self) -> list[Effect]:
        if self._closed():
            return []
        self.state.holding = False
        policy = self._policy("no_input")
        self.state.no_input += 1
        if self.state.no_input <= policy.retries:
            effects: list[Effect] = []
            if policy.say:
                effects.append(Say(self._render(self._pick("no_input", policy.say)), self.state.node, "no_input"))
            effects += self._reprompt()
            return effects
        return self._exhausted(policy, f"no input {self.state.no_input} times", "no_input")

    # ------------------------------------------------------------ internals
    def _closed(self) -> bool:
        return self.state.ended or self.state.node is None or self._awaiting_action is not None or not self.node.listens

    def _intent_spec(self, intent: str | None) -> IntentDef | None:
        if not intent or intent == OUT_OF_SCOPE:
            return None
        node_intents = self.node.intents or {}
        return node_intents.get(intent) or self.flow.global_intents.get(intent)

    def _apply_intent(self, name: str, spec: IntentDef) -> list[Effect]:
        if spec.goto:
            return self._enter(spec.goto)
        if spec.action == "repeat":
            return self.offer_again()
        if spec.action == "start_over":
            self.state.slots.clear()
            self.state.heard.clear()
            self.state.heard_spans.clear()
            self.state.passing.clear()
            self.state.mentions.clear()
            return self._enter(self.flow.start)
        self.state.ended = True
        return [Hangup(f"caller intent '{name}'")]

    def _parsed(self, slot_name: str | None, text: str) -> ParseResult:
        """`text` parsed as this slot's value (None: as a yes or a no), once per answer. One
        answer is asked about three times a turn (may the turn end early, does it need the NLU,
        what does it fill), always with the same words: they are parsed once, and all three
        get the same answer. Slot definitions never change within a loaded flow."""
        if text != self._parsed_text:
            self._parsed_text, self._parses = text, {}
        result = self._parses.get(slot_name)
        if result is None:
            if slot_name is None:
                result = parse_slot("yes_no", text)
            else:
                slot = self.flow.slots[slot_name]
                result = slot.parse(text, slot_name, self.state.date_span)
                # "fifty dollars, no, sixty": the answer is what follows the caller's own correction
                tail = _SELF_CORRECTED.split(text)[-1] if slot.type not in ("yes_no", "text") else text
                if tail != text:
                    corrected = self._corrected_day(slot_name, tail, result)
                    if not corrected.ok:
                        corrected = slot.parse(tail, slot_name, self.state.date_span)
                    if corrected.ok:
                        result = corrected
            self._parses[slot_name] = result
        return result

    def _corrected_day(self, slot_name: str, tail: str, said: ParseResult) -> ParseResult:
        """ "March 3rd 1965, no wait, the 4th": a day corrected within the month said first, as
        long as that day has not gone by (for a date ahead: "the 30th, no, the 4th" on the 7th
        is next month's 4th)."""
        slot = self.flow.slots[slot_name]
        if slot.type != "date" or not said.ok:
            return ParseResult(False)
        corrected = slot.parse(tail, slot_name, DateSpan.month_of(said.value))
        if corrected.ok and not slot.in_the_past(slot_name) and corrected.value < date.today().isoformat():
            return ParseResult(False)
        return corrected

    def _read_number(self, text: str, asr_unsure: bool = False, alone: bool = False):
        """What `text` gives of the number this node collects (None: not a number node, or no
        part of a number), with the part heard before (`alone`: as a number on its own)."""
        slot_name = self.node.collect
        slot = self.flow.slots.get(slot_name) if slot_name else None
        if not reads_numbers(slot):
            return None
        return read_number(slot, text, self._parsed(slot_name, text), None if alone else self.state.partial,
                           asr_unsure=asr_unsure)

    def _asks_rest(self) -> bool:
        slot = self.flow.slots[self.node.collect]
        return slot.ask_rest != "" and self.state.parts < MAX_PARTS

    def _ask_rest(self, digits: str) -> list[Effect]:
        slot_name = self.node.collect
        self.state.partial = digits
        self.state.parts += 1
        slot = self.flow.slots[slot_name]
        # A sensitive number is not said aloud in parts: how many digits, not which
        default = (f"I got the first {len(digits)} digits. What comes next?" if slot.sensitive
                   else f"I got {{slots.{slot_name}}}. What comes next?")
        template = slot.ask_rest or default
        text = self._render(template, candidate={slot_name: digits})
        self.state.last_prompts = [text]
        return [Say(text, self.state.node, "ask_rest"), Listen(self.expectation())]

    def _hold(self) -> list[Effect]:
        """ "Hang on, let me grab my card": no answer and no miss; the line waits, longer."""
        self.state.holding = True
        return [Say(self._pick("hold", self.flow.defaults.hold), self.state.node, "hold"), Listen(self.expectation())]

    def _ask_which_day(self, span: DateSpan) -> list[Effect]:
        """ "Next week": "Which day next week?", and the answer is read among those days."""
        self.state.date_span = span
        self.state.days_asked += 1
        self.state.last_prompts = [span.question]
        return [Say(span.question, self.state.node, "which_day"), Listen(self.expectation())]

    def _try_fill(self, text: str, extracted: SlotValue | None = None, *, spoken: bool = False,
                  asr_unsure: bool = False) -> list[Effect] | None:
        """The answer as this node's value: the whole answer parsed, else the value found in it
        among others ("four people at seven" to a party-size question). A number read aloud
        may come in parts, and may be read back (`read_back`)."""
        slot_name = self.node.collect
        slot = self.flow.slots[slot_name]
        result = self._parsed(slot_name, text)
        read_back = False
        if spoken and reads_numbers(slot):
            number = self._read_number(text, asr_unsure)
            if number is not None and number.partial is not None and self._asks_rest():
                return self._ask_rest(number.partial)
            if number is not None:  # a number answer ends the parts; "repeat that" keeps them
                self.state.partial, self.state.parts = None, 0
            if number is not None and number.value is not None:
                result = ParseResult(True, number.value)
                policy = slot.read_back or ("never" if slot.sensitive else "unsure")
                read_back = policy == "always" or (policy == "unsure" and number.unsure)
            elif number is None and spoken_number(text) is not None:
                return None  # too many digits: six of seven found in passing are not the number
        if not result.ok and result.span is not None and extracted is None and self.state.days_asked < MAX_PARTS:
            return self._ask_which_day(result.span)
        if not result.ok and extracted is not None and not (result.reason or "").startswith(AMBIGUOUS):
            # (not when the answer named two choices: "electricity and water" is asked again,
            # where the finder for values in passing would take one of them)
            result = ParseResult(True, extracted.value)
        if not result.ok:
            return None
        node = self.node
        rejected = self._rejected(slot_name, result.value)
        if rejected is not None:
            return rejected
        if node.confirm or read_back:
            self.state.pending = (slot_name, result.value)
            return self._ask_confirmation()
        return self._keep(slot_name, result.value)

    def _rejected(self, slot_name: str, value: Any) -> list[Effect] | None:
        """The first of the node's rejections that holds for `value`: said, and the slot asked again."""
        for rejection in self.node.rejections:
            if evaluate(rejection.if_, {**self.state.slots, slot_name: value}, self.state.vars):
                # The value is not kept, but the message may say it.
                text = self._render(rejection.say, candidate={slot_name: value})
                return [Say(text, self.state.node, "rejection")] + self._reprompt()
        return None

    def _keep(self, slot_name: str, value: Any) -> list[Effect]:
        self.state.slots[slot_name] = value
        self.state.passing.discard(slot_name)
        return [SetSlot(slot_name, value)] + self._advance()

    def _ask_confirmation(self) -> list[Effect]:
        slot_name, value = self.state.pending
        template = self.node.confirm if isinstance(self.node.confirm, str) else f"I heard {{slots.{slot_name}}}. Is that right?"
        text = self._render(template, candidate={slot_name: value})
        self.state.last_prompts = [text]
        return self._said_back() + [Say(text, self.state.node, "confirm"), Listen(self.expectation())]

    def _hear(self, values, answer: str | None = None) -> None:
        """Keep values said in passing for the nodes ahead that collect them. `answer`: the words
        answer this node's question, which come first: a number said alone is its answer and
        fills nothing ahead (an Rx number read in pairs is not also a time, a policy number not
        also a phone number); at a text question no other text slot, nor a number slot, takes
        its words ("Eliquis", asked for the medication, is not also the pharmacy it comes from;
        the digits of "AB 1234567" are the policy's)."""
        own = self.node.collect
        if answer is not None and own is not None:
            alone = spoken_number(answer)
            if alone is not None and not alone.among_words:
                return
        own_slot = self.flow.slots[own] if answer is not None and own is not None else None
        if own_slot is not None and own_slot.type not in ("yes_no", "text") and _SELF_CORRECTED.search(answer):
            # "tuesday, no, wednesday", "457 211 398, sorry, 399": both are this question's
            # answer, the one taken back and the one that stands; neither is a value ahead
            values = [v for v in values if v.slot not in self.flow.slots or self.flow.slots[v.slot].type not in (
                own_slot.type, *(_NUMBER_KINDS if own_slot.type in _NUMBER_KINDS else ()))]
        # what a text answer's words may hold: no other text; no number, unless the answer is
        # a name ("John Smith, and my number is 415 555 0134")
        kept_in_text = () if own_slot is None or own_slot.type != "text" else \
            ("text",) if holds_a_name(own, own_slot.description) else ("text", "digits", "phone")
        for v in values:
            slot = self.flow.slots.get(v.slot)
            if (slot is not None and not slot.sensitive and v.slot != own and v.slot not in self.state.passing
                    and v.slot not in self.state.slots  # an answered slot is only corrected (`_correct`)
                    and slot.type not in kept_in_text):
                self.state.heard[v.slot] = v

    def _hear_days(self, text: str, understanding: Understanding) -> None:
        """ "An appointment next week": days said in passing for the first date slot ahead with no
        day heard, unless they have all gone by (or, for a past date, are all to come)."""
        own = self.node.collect
        if own is not None and self.flow.slots[own].type in ("date", "text"):
            return  # the days are this date question's own; a text answer's words are its own ("June Carter")
        for spec in self.listening_slots(understanding.intent):
            slot = self.flow.slots[spec.name]
            if (spec.type != "date" or spec.name == own or slot.sensitive or spec.name in self.state.slots
                    or spec.name in self.state.heard or understanding.value_of(spec.name) is not None):
                continue
            past = slot.in_the_past(spec.name)
            span = parse_date(text, within=True, past=past).span
            if span is not None and (span.first <= date.today() if past else span.last >= date.today()):
                self.state.heard_spans[spec.name] = span
            return

    def _take_heard(self, name: str, node: Node, hops: int) -> list[Effect] | None:
        """Entering a collect node whose value was said in passing: keep it and go on, confirm
        it, or ask anyway, as the designer chose (`heard`)."""
        slot_name = node.collect
        heard = self.state.heard.pop(slot_name)
        policy = heard_policy(node, self.flow.slots[slot_name])
        if policy == "ask":
            return None
        for rejection in node.rejections:
            if evaluate(rejection.if_, {**self.state.slots, slot_name: heard.value}, self.state.vars):
                text = self._render(rejection.say, candidate={slot_name: heard.value})
                return [EnterNode(name), Say(text, name, "rejection")] + self._after_action(name, hops)
        if policy == "confirm" or node.confirm:
            self.state.pending = (slot_name, heard.value)
            return [EnterNode(name)] + self._ask_confirmation()
        self.state.slots[slot_name] = heard.value
        self.state.passing.add(slot_name)
        if policy == "mention":
            self.state.mentions.append(self._mention(slot_name))
        effects: list[Effect] = [EnterNode(name), SetSlot(slot_name, heard.value)]
        target = self._resolve_next(node.next)
        if target is None:
            self.state.ended = True
            return effects + self._said_back() + [Hangup("end of flow")]
        return effects + self._enter(target, hops + 1)

    def _mention(self, slot_name: str) -> str:
        slot = self.flow.slots[slot_name]
        template = slot.mention
        if template is None:
            spoken = slot.type if slot.type in ("money", "date", "time") else None
            template = f"{{slots.{slot_name}|{spoken}}}" if spoken else f"{{slots.{slot_name}}}"
        return self._render(template)

    def _said_back(self) -> list[Effect]:
        """The values taken in passing since the last prompt, said before the next one."""
        if not self.state.mentions:
            return []
        text = "Got it: " + ", ".join(self.state.mentions) + "."
        self.state.mentions.clear()
        return [Say(text, self.state.node, "heard")]

    def _correct(self, text: str, values) -> list[Effect] | None:
        """ "No, Wednesday": a value for a slot taken in passing on this path, said at a later
        question, replaces it (only it), and the question is asked again. A slot answered at
        its own question is corrected so too when the words begin as a correction does ("no
        wait, the 3rd"): without that, a caller changing the day at the time question was
        told the time was not understood."""
        cue = bool(_CORRECTION.search(text))
        changed = [v for v in values if v.slot != self.node.collect and self.state.slots.get(v.slot) != v.value
                   and (v.slot in self.state.passing or (cue and v.slot in self.state.slots))]
        if not changed:
            return None
        own = self.flow.slots[self.node.collect]
        if self._parsed(self.node.collect, text).ok and own.type != "text" and not cue:
            return None  # an answer to this question that happens to hold another value
        effects: list[Effect] = []
        for v in changed:
            self.state.slots[v.slot] = v.value
            effects.append(SetSlot(v.slot, v.value))
            self.state.mentions.append(self._mention(v.slot))
        return effects + self._reprompt(said_back=True)

    def _confirm(self, text: str) -> list[Effect] | None:
        slot_name, value = self.state.pending
        answer = self._parsed(None, text)
        number_node = self.node.collect == slot_name and reads_numbers(self.flow.slots[slot_name])
        if number_node and not (answer.ok and answer.value):
            # "No, it's 4 5 7 ...": a whole number with the no is the right one, read back again
            number = self._read_number(text, alone=True)
            if number is not None and number.value == value and not answer.ok:
                self.state.pending = None
                return self._keep(slot_name, value)  # the same number said again: that is a yes
            if number is not None and number.value is not None and number.value != value:
                exhausted = self._failed_try()
                if exhausted is not None:
                    return exhausted
                self.state.pending = None
                rejected = self._rejected(slot_name, number.value)
                if rejected is not None:
                    return rejected
                self.state.pending = (slot_name, number.value)
                return self._ask_confirmation()
        if not answer.ok:
            return None
        self.state.pending = None
        if answer.value:
            return self._keep(slot_name, value)
        if number_node:
            exhausted = self._failed_try()
            if exhausted is not None:
                return exhausted
        return [Say("Okay, let's try that again.", self.state.node, "confirm")] + self._reprompt()

    def _failed_try(self) -> list[Effect] | None:
        """A number read back wrong: it counts against the retries (so the keypad is offered
        next), and past them the node's `no_match.then` takes over."""
        self.state.no_match += 1
        policy = self._policy("no_match")
        if self.state.no_match > policy.retries:
            return self._exhausted(policy, f"number read back wrong {self.state.no_match} times", "no_match")
        return None

    def _ends_call(self, spec: IntentDef) -> bool:
        """Whether applying this intent ends the call without another question: an intent with
        neither `goto` nor `action` hangs up, and so does a `goto` whose node (or chain of
        `next` without a question) says goodbye and hangs up."""
        if spec.action is not None:
            return False
        return spec.goto is None or self._lands_on(spec.goto) == "hangup"

    def _transfers(self, spec: IntentDef) -> bool:
        """Whether applying this intent hands the caller to a person without another question."""
        return spec.action is None and spec.goto is not None and self._lands_on(spec.goto) == "transfer"

    def _lands_on(self, name: str | None) -> str | None:
        """"hangup" or "transfer" when the node `name`, or its chain of `next` without a
        question, a backend call or a handoff, ends in one; else None."""
        seen: set[str] = set()
        while name is not None and name not in seen:
            seen.add(name)
            node = self.flow.nodes[name]
            if node.hangup:
                return "hangup"
            if node.transfer:
                return "transfer"
            if node.listens or node.action is not None or node.handoff:
                return None
            name = node.next if isinstance(node.next, str) else None
        return None

    def _cannot_be_undone(self, spec: IntentDef) -> str | None:
        """What an intent would do that a misheard request must not: end the call, throw away
        what the caller has given ("starting next month" heard as start over at 0.66), or put
        them through to a person ("I'd like to report a leak too" as the agent at 0.55)."""
        if self._ends_call(spec):
            return "end"
        if spec.action == "start_over" and self.state.slots:
            return "start_over"
        if self._transfers(spec):
            return "transfer"
        return None

    def _ask_if_meant(self, intent: str) -> list[Effect]:
        self.state.pending_intent = intent
        return self._reprompt()  # which asks whether they meant it while an intent is pending

    def _confirm_intent(self, text: str) -> list[Effect] | None:
        """The answer to END_CALL_QUESTION (or whether they meant to start over or reach a
        person). Anything but a yes or no is taken as an answer to
        the node's own question, so a caller who just goes on is not asked again."""
        intent = self.state.pending_intent
        self.state.pending_intent = None
        answer = self._parsed(None, text)
        if not answer.ok:
            return None
        if answer.value:
            return self._apply_intent(intent, self._intent_spec(intent))
        return [Say("Okay.", self.state.node, "confirm")] + self._reprompt()

    def _advance(self) -> list[Effect]:
        target = self._resolve_next(self.node.next)
        if target is None:
            self.state.ended = True
            return [Hangup("end of flow")]
        return self._enter(target)

    def _resolve_next(self, nxt) -> str | None:
        if nxt is None or isinstance(nxt, str):
            return nxt
        for branch in nxt:
            if isinstance(branch, ElseBranch):
                return branch.else_
            if isinstance(branch, Branch) and evaluate(branch.if_, self.state.slots, self.state.vars):
                return branch.then
        return None

    def _enter(self, name: str, hops: int = 0) -> list[Effect]:
        if hops > MAX_HOPS:
            self.state.ended = True
            return [Hangup(f"flow loops through '{name}' without waiting for the caller")]
        self.state.node = name
        self.state.no_match = self.state.no_input = 0
        self.state.holding = False
        self.state.pending = None
        self.state.pending_intent = None
        self.state.partial, self.state.parts, self.state.keypad_offered = None, 0, False
        self.state.days_asked = 0
        node = self.flow.nodes[name]
        if node.intents or node.dtmf:  # a new menu: what was said in passing was for the path before it
            self.state.heard.clear()
            self.state.heard_spans.clear()
            self.state.passing.clear()
        self.state.date_span = self.state.heard_spans.pop(node.collect, None) if node.collect else None
        if node.collect and node.action is None and node.collect in self.state.heard:
            taken = self._take_heard(name, node, hops)
            if taken is not None:
                return taken
        if node.action is not None:
            action = node.action
            self._awaiting_action = name
            request = HttpRequest(
                node=name,
                method=action.http,
                url=self._render(action.url, request=True),
                headers={k: self._render(v, request=True) for k, v in action.headers.items()},
                json_body=self._render_json(action.json_body),
                timeout=action.timeout,
                wait_say=action.wait_say,
            )
            return [EnterNode(name)] + self._said_back() + [request]  # said before "one moment"
        return [EnterNode(name)] + self._after_action(name, hops)

    def _after_action(self, name: str, hops: int = 0) -> list[Effect]:
        node = self.flow.nodes[name]
        effects: list[Effect] = []
        if node.say:
            text = self._render(self._pick(name, node.say))
            effects += self._said_back() + [Say(text, name)]
            self.state.last_prompts = [text]
        reason = self._escalation_reason or f"flow node '{name}'"
        trigger = self._escalation_trigger if self._escalation_reason else "flow"
        if node.listens:
            self._escalation_reason = None
            return effects + [Listen(self.expectation())]
        if node.transfer:
            self.state.ended = True
            return effects + [Transfer(node.transfer, reason, trigger)]
        if node.handoff:
            return effects + [Handoff(node.handoff, node.return_to, reason, trigger)]
        if node.hangup:
            self.state.ended = True
            return effects + [Hangup(reason)]
        target = self._resolve_next(node.next)
        if target is None:
            self.state.ended = True
            return effects + [Hangup("no branch matched and no `else`")]
        return effects + self._enter(target, hops + 1)

    def _reprompt(self, said_back: bool = False) -> list[Effect]:
        if self.state.pending_intent is not None:
            risk = self._cannot_be_undone(self._intent_spec(self.state.pending_intent))
            return [Say(_MEANT_IT.get(risk, END_CALL_QUESTION), self.state.node, "confirm"), Listen(self.expectation())]
        if self.state.pending is not None:
            return self._ask_confirmation()
        node = self.node
        # the question asks for the whole number, or the day, again
        self.state.partial, self.state.parts, self.state.date_span, self.state.days_asked = None, 0, None, 0
        effects: list[Effect] = self._said_back() if said_back else []
        if node.say:
            text = self._render(self._pick(self.state.node, node.say))
            effects.append(Say(text, self.state.node))
            self.state.last_prompts = [text]
        return effects + self._keypad_offer() + [Listen(self.expectation())]

    def _keypad_offer(self) -> list[Effect]:
        """After a failed try at a number, once per visit: the keypad is never misheard."""
        slot = self.flow.slots.get(self.node.collect) if self.node.collect else None
        if not reads_numbers(slot) or self.state.no_match < 1 or self.state.keypad_offered or slot.offer_keypad == "":
            return []
        self.state.keypad_offered = True
        text = slot.offer_keypad or "You can also type it on your keypad."
        self.state.last_prompts.append(text)
        return [Say(text, self.state.node, "offer_keypad")]

    def _no_match(self, reason: str) -> list[Effect]:
        policy = self._policy("no_match")
        self.state.no_match += 1
        if self.state.no_match <= policy.retries:
            effects: list[Effect] = []
            if policy.say:
                effects.append(Say(self._render(self._pick("no_match", policy.say)), self.state.node, "no_match"))
            return effects + self._reprompt()
        return self._exhausted(policy, f"{reason} {self.state.no_match} times", "no_match")

    def _exhausted(self, policy: RetryPolicy, reason: str, trigger: str) -> list[Effect]:
        if policy.then:
            self._escalation_reason = reason
            self._escalation_trigger = trigger
            return self._enter(policy.then)
        self.state.ended = True
        return [Say("Sorry, I'm having trouble understanding. Goodbye.", self.state.node, "no_match"), Hangup(reason)]

    def _policy(self, kind: str) -> RetryPolicy:
        """The node's policy, with unset fields taken from the flow's defaults."""
        default: RetryPolicy = getattr(self.flow.defaults, kind)
        own: RetryPolicy | None = getattr(self.node, kind)
        if own is None:
            return default
        merged = default.model_dump()
        merged.update(own.model_dump(exclude_unset=True))
        return RetryPolicy(**merged)

    def _pick(self, key: str, prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        index = self.state.variants.get(key, 0)
        self.state.variants[key] = index + 1
        return prompt[index % len(prompt)]

    def _render(self, text: str, *, request: bool = False, candidate: dict | None = None) -> str:
        """Fill {slots.x}, {vars.x.y} (or {x.y} for a saved response) and, in requests, {env.X}."""

        def value(match: re.Match) -> str:
            root = match.group(1)
            path = [p for p in match.group(2).split(".") if p]
            if root == "env":
                return self._env.get(path[0], "") if request and path else ""
            if root == "slots":  # a candidate value (being confirmed or rejected) reads as set
                current: Any = {**self.state.slots, **candidate} if candidate else self.state.slots
            elif root == "vars":
                current = self.state.vars
            else:  # `{balance.amount}`: a response saved with `save_as: balance` (docs/flows.md, 8)
                current, path = self.state.vars, [root] + path
            for part in path:
                if isinstance(current, dict):
                    current = current.get(part)
                elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                    current = current[int(part)]
                else:
                    current = None
                if current is None:
                    return ""
            if request:
                return str(current)
            if match.group(3):  # {slots.amount|money}: said the way a person says it
                return speech_format.apply(match.group(3), current)
            if root == "slots" and self.flow.slots.get(path[0]) and self.flow.slots[path[0]].type in ("digits", "phone"):
                return " ".join(str(current))  # read digit by digit, not as one big number
            if isinstance(current, bool):
                return "yes" if current else "no"
            return str(current)

        return _TEMPLATE.sub(value, text)

    def _render_json(self, body: Any) -> Any:
        if isinstance(body, str):
            return self._render(body, request=True)
        if isinstance(body, list):
            return [self._render_json(v) for v in body]
        if isinstance(body, dict):
            return {k: self._render_json(v) for k, v in body.items()}
        return body


def listening_candidates(loaded: LoadedFlow) -> list[Candidates]:
    """Every listening node's candidates, as a call reaching it would see them: what the NLU
    prepares when a flow is loaded, so the first caller does not pay for it."""
    nodes = []
    for name, node in loaded.flow.nodes.items():
        if node.listens:
            engine = FlowEngine(loaded)
            engine.state.node = name
            nodes.append(engine.expectation().candidates)
    return nodes


def signal_examples(loaded: LoadedFlow) -> SignalExamples:
    """The flow's own sentences for the escalation signals (`escalation.signal_examples`), and
    its intents' examples as calm ones: the requests the designer wrote down are what the line
    exists to serve ("I'm almost out of my blood pressure pills" scored upset 0.92 at a pharmacy
    and put the caller through to a person). Not an example with upset words in it ("this is
    ridiculous, where is my order"), nor one the designer also gave as upset."""
    with _SIGNAL_EXAMPLES_LOCK:  # asked on every turn (and at load, off the event loop)
        known = _SIGNAL_EXAMPLES.get(loaded.version)
        if known is None:  # the same for every call on this version
            if len(_SIGNAL_EXAMPLES) >= 64:
                _SIGNAL_EXAMPLES.pop(next(iter(_SIGNAL_EXAMPLES)))
            known = _SIGNAL_EXAMPLES[loaded.version] = _signal_examples(loaded)
        return known


_SIGNAL_EXAMPLES: dict[str, SignalExamples] = {}
_SIGNAL_EXAMPLES_LOCK = threading.Lock()


def _signal_examples(loaded: LoadedFlow) -> SignalExamples:
    defs = loaded.flow.escalation.signal_examples
    flow = loaded.flow
    upset = tuple(defs.upset) if defs else ()
    intents = [spec for node in flow.nodes.values() for spec in (node.intents or {}).values()]
    intents += list(flow.global_intents.values())
    requests = tuple(dict.fromkeys(p for spec in intents for p in spec.phrases
                                   if p not in upset and not upset_words(p)))
    if defs is None:
        return SignalExamples(calm=requests)
    calm = tuple(dict.fromkeys((*defs.calm, *requests)))
    return SignalExamples(upset, tuple(defs.complaint), tuple(defs.policy_question), calm)


def nlu_preparation(loaded: LoadedFlow) -> list[Candidates | ExtractionPlan | SignalExamples]:
    """What the NLU caches when a flow is loaded: every listening node's candidates, every
    small-model extraction prompt and the flow's signal sentences, so the first caller pays for
    none of them."""
    return [*listening_candidates(loaded), *extraction_plans(loaded), signal_examples(loaded)]
