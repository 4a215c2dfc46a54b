"""The flow language: what CX designers write in `flows/*.yaml`.

Pydantic models with `extra="forbid"`, so a misspelt key is an error with its file:line rather
than an option silently ignored. The keys follow what designers know (Rasa `collect`, Twilio
`<Gather>`, Jambonz `gather`; docs/flows.md): extend the language, never rename a key.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ivr.nlu.slots import DateSpan, ParseResult, parse_slot
from ivr.nlu.vocabulary import ADDRESS_WORDS, words_of

SLOT_TYPES = ("digits", "yes_no", "number", "money", "date", "time", "phone", "email", "text", "enum")
INTENT_ACTIONS = ("repeat", "hangup", "start_over")
HEARD = ("mention", "use", "confirm", "ask")
READ_BACK = ("unsure", "always", "never")
NUMBER_TYPES = ("digits", "phone")


_ANNOTATION = re.compile(r"\[([^\[\]]+)\]\(([A-Za-z_][A-Za-z0-9_]*)\)")


def annotated(example: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """An intent example with its values marked the way Rasa designers mark entities,
    "a table in [Denver](city) for [four](party_size)": (the words as said, ((slot, words), ...))."""
    values = tuple((m.group(2), m.group(1).strip()) for m in _ANNOTATION.finditer(example))
    return _ANNOTATION.sub(lambda m: m.group(1), example), values


def without_values(example: str) -> str:
    """An example without the values it marks: the words that ask, not the ones that answer
    ("there's an outage at [12 Oak Street](service_address)" -> "there's an outage at")."""
    return " ".join(_ANNOTATION.sub(" ", example).split())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


Prompt = Union[str, list[str]]
"""A prompt, or a list of variants picked in turn so repeats don't sound robotic."""


def holds_a_name(slot: str, description: str = "") -> bool:
    """Whether a slot is for a name, by the words of its name or description."""
    return bool(set(words_of(slot, description)) & {"name", "surname", "firstname", "lastname", "fullname"})


def holds_an_address(slot: str, description: str = "") -> bool:
    """Whether a text slot is for a street address, by the words of its name or description."""
    return bool(set(words_of(slot, description)) & ADDRESS_WORDS)


def is_a_birth(slot: str, description: str = "") -> bool:
    """Whether a date slot is a date of birth, by the words of its name or description."""
    return bool(set(words_of(slot, description)) & {"birth", "dob", "birthdate", "born"})


class SlotDef(_Strict):
    type: Literal[SLOT_TYPES]  # type: ignore[valid-type]
    description: str = ""
    length: int | None = Field(default=None, ge=1, le=32)
    min_length: int | None = Field(default=None, ge=1, le=32)
    max_length: int | None = Field(default=None, ge=1, le=64)
    choices: dict[str, list[str]] | None = None
    sensitive: bool = False
    """Redacted in call logs and transcripts; never taken from words said in passing."""
    heard: Literal[HEARD] | None = None  # type: ignore[valid-type]
    """A value said before this slot's question ("a table for four tomorrow"): `mention` (the
    default) keeps it, skips the question and says it back before the next prompt; `use` keeps
    it silently; `confirm` asks "I heard ... Is that right?" instead of the question; `ask`
    ignores it and asks (the default for yes_no slots). A node's own `heard` wins."""
    mention: str | None = None
    """How a value heard in passing is said back, e.g. "a table for {slots.party_size}"
    (default: the value, spoken by its type)."""
    read_back: Literal[READ_BACK] | None = None  # type: ignore[valid-type]
    """digits and phone: read a number said aloud back and ask yes/no `always`, `never`, or
    when `unsure` (the default; `never` for a sensitive slot): put together from parts, said
    among other words, or heard with whisper unsure of its words. Keyed numbers are not read
    back. A node's `confirm` is `always`."""
    ask_rest: str | None = None
    """digits and phone: said when the caller's number is shorter than the slot needs, so the
    next answer completes it (default: "I got {slots.NAME}. What comes next?"); "" asks again
    for the whole number instead."""
    offer_keypad: str | None = None
    """digits and phone: said with the question again after a failed try (default: "You can
    also type it on your keypad."); "" never offers it."""
    optional: bool = False
    """The caller may not know it: an answer that only says so ("I don't know", "no idea", "I
    didn't get it") leaves the slot empty (null) and the flow goes on to `next`. Without it,
    such an answer is no value and the question is asked again."""
    past: bool | None = None
    """date: the day has been (a birth, an accident): "Tuesday" is the last one, "March 3rd" this
    year's or last year's, and the line never offers today for "as soon as possible". Default:
    yes where the slot's name or description speaks of a birth ("date_of_birth", "dob"), else no
    (callers book ahead)."""

    @model_validator(mode="after")
    def _enum_has_choices(self) -> "SlotDef":
        if self.type == "enum" and not self.choices:
            raise ValueError("an enum slot needs `choices` (value: [synonyms])")
        if self.type != "enum" and self.choices:
            raise ValueError("`choices` only applies to enum slots")
        if self.sensitive and (self.heard not in (None, "ask") or self.mention is not None):
            raise ValueError("a sensitive slot is only asked at its own node: remove `heard` and `mention`")
        numbers_only = sorted({"read_back", "ask_rest", "offer_keypad"} & self.model_fields_set)
        if numbers_only and self.type not in NUMBER_TYPES:
            raise ValueError(f"{', '.join(numbers_only)} only apply to digits and phone slots")
        if self.past is not None and self.type != "date":
            raise ValueError("`past` only applies to date slots")
        return self

    def in_the_past(self, name: str = "") -> bool:
        """A date slot whose day has been (`past`, or a birth by its name or description)."""
        if self.type != "date":
            return False
        return self.past if self.past is not None else is_a_birth(name, self.description)

    def parse(self, text: str, name: str = "", span: DateSpan | None = None) -> ParseResult:
        """`text` as this slot's value, with its length limits and choices; `name`, the slot's
        own, says whether a text slot holds a name ("patient_name", or "name" in its description)
        and whether a date is past; `span`, the days a date question narrowed it to."""
        return parse_slot(self.type, text, length=self.length, min_length=self.min_length,
                          max_length=self.max_length, choices=self.choices,
                          name=self.type == "text" and holds_a_name(name, self.description),
                          address=self.type == "text" and holds_an_address(name, self.description),
                          past=self.in_the_past(name), span=span)


class IntentDef(_Strict):
    examples: list[str] = Field(default_factory=list)
    """How callers phrase it; varied, natural wordings work best. Mark values said in passing
    as `[Denver](city)`: the small model learns from them which words fill which slot."""
    description: str = ""
    """What the intent means, for the language model and for other designers."""
    goto: str | None = None
    """The node to go to."""
    action: Literal[INTENT_ACTIONS] | None = None  # type: ignore[valid-type]
    """Instead of goto: repeat the last prompt, start_over (clears slots), or hangup."""

    @property
    def phrases(self) -> list[str]:
        """The examples as callers say them, without value marks."""
        return [annotated(e)[0] for e in self.examples]

    @model_validator(mode="after")
    def _one_outcome(self) -> "IntentDef":
        if (self.goto is None) == (self.action is None):
            raise ValueError("an intent needs exactly one of `goto` (a node) or `action`")
        if not self.examples and not self.description:
            raise ValueError("an intent needs `examples` (what callers say) or a `description`")
        return self


class RetryPolicy(_Strict):
    say: Prompt | None = None
    retries: int = Field(default=2, ge=0, le=10)
    then: str | None = None
    """Node to go to when the retries are used up; the call ends politely when absent."""
    timeout: float | None = Field(default=None, gt=0, le=60)
    """Only for no_input: seconds of silence that count as no input."""


class Branch(_Strict):
    if_: str = Field(alias="if")
    then: str


class ElseBranch(_Strict):
    else_: str = Field(alias="else")


Next = Union[str, list[Union[Branch, ElseBranch]]]


class Rejection(_Strict):
    """Refuse a collected value that parses but is not acceptable (Rasa `rejections`)."""

    if_: str = Field(alias="if")
    """A condition over slots, where slots.NAME is already the new value."""
    say: str
    """Said before asking again; may use {slots.NAME}."""


class DigitRules(_Strict):
    """Keypad entry rules, as in Twilio `<Gather>`: finish key and inter-digit timeout."""

    finish_on_key: Literal["#", "*", ""] = "#"
    inter_digit_timeout: float = Field(default=3.0, gt=0, le=30)


class HttpAction(_Strict):
    """A call to the company's backend, e.g. `{http: GET, url: "{env.API}/orders/{slots.order}", save_as: order}`.

    The JSON response is saved under `vars.<save_as>` for prompts and conditions; on a timeout,
    a network error or a non-2xx status the call goes to `on_error` (else it apologises and ends).
    """

    http: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    timeout: float = Field(default=5.0, gt=0, le=30)
    save_as: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    on_error: str | None = None
    wait_say: str | None = "One moment please."
    """Said if the backend takes longer than a second, so the caller never hears dead air."""


class Node(_Strict):
    say: Prompt | None = None
    """What the bot says on entering the node: text, or a list of variants used in turn.
    Templates: {slots.NAME}, {vars.NAME.field}, {SAVED.field}."""
    action: HttpAction | None = None
    """A backend call made before `say`, so the prompt can use its response."""
    dtmf: dict[str, str] | None = None
    """Keypad menu: key -> an intent of this node, a global intent, or a node."""
    intents: dict[str, IntentDef] | None = None
    """What the caller may ask for here, each with example phrasings and where it goes."""
    collect: str | None = None
    """A slot (declared under `slots`) to fill by voice or keypad; re-asks until valid."""
    confirm: bool | str = False
    """Read a collected value back and ask yes/no before keeping it: true for
    "I heard {value}. Is that right?", or your own prompt with {slots.NAME}."""
    rejections: list[Rejection] = Field(default_factory=list)
    """Checks on a collected value: the first whose `if` holds is said, and the slot re-asked."""
    heard: Literal[HEARD] | None = None  # type: ignore[valid-type]
    """For a `collect` node: what to do with its slot's value said earlier in passing (see the
    slot's `heard`; this wins)."""
    hints: list[str] = Field(default_factory=list)
    """Words the speech recogniser should expect here (product names, street names)."""
    next: Next | None = None
    """Where to go after `say`/`collect`: a node, or a list of {if, then} branches and an {else}."""
    no_match: RetryPolicy | None = None
    """When the caller's answer is not understood (overrides `defaults.no_match`)."""
    no_input: RetryPolicy | None = None
    """When the caller says nothing (overrides `defaults.no_input`)."""
    digits: DigitRules | None = None
    """Keypad entry rules: finish key and inter-digit timeout."""
    barge_in: bool = True
    """Whether the caller's speech stops this node's prompt (keys always do)."""
    transfer: str | None = None
    """Hand the call to a person: a phone number (+15550100) or SIP address (sip:agent@pbx)."""
    handoff: Literal["llm"] | None = None
    """Hand the conversation to the large language model."""
    return_to: str | None = None
    """With `handoff`: the node to come back to when the LLM is done (or unavailable)."""
    hangup: bool = False
    """End the call after `say`."""

    @field_validator("dtmf", mode="before")
    @classmethod
    def _keys_as_strings(cls, value):
        # YAML reads `1: balance` as an int key; designers should not have to quote keys.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("dtmf")
    @classmethod
    def _valid_keys(cls, value):
        for key in value or {}:
            if not key or any(ch not in "0123456789*#" for ch in key):
                raise ValueError(f"DTMF key '{key}' must be made of 0-9, * and #")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> "Node":
        endings = [
            name
            for name, present in (
                ("transfer", self.transfer is not None),
                ("handoff", self.handoff is not None),
                ("hangup", self.hangup),
            )
            if present
        ]
        if len(endings) > 1:
            raise ValueError(f"a node can do only one of transfer, handoff, hangup (has {endings})")
        listens = bool(self.collect or self.intents or self.dtmf)
        if endings and listens:
            raise ValueError(f"a node that does `{endings[0]}` cannot also wait for input")
        if self.collect and (self.intents or self.dtmf):
            raise ValueError("a `collect` node cannot also have `intents` or `dtmf` menu keys")
        if self.intents and self.next is not None:
            raise ValueError("a menu node chooses where to go by its intents; remove `next`")
        if self.return_to and not self.handoff:
            raise ValueError("`return_to` only applies to a `handoff` node")
        if (self.confirm or self.rejections or self.heard) and not self.collect:
            raise ValueError("`confirm`, `rejections` and `heard` apply to a `collect` node")
        return self

    @property
    def listens(self) -> bool:
        return bool(self.collect or self.intents or self.dtmf)


HOLD_REPLY = "Sure, take your time."


class Defaults(_Strict):
    no_match: RetryPolicy = RetryPolicy(say="Sorry, I didn't catch that.", retries=2)
    no_input: RetryPolicy = RetryPolicy(say="Are you still there?", retries=2, timeout=6.0)
    hold: Prompt = HOLD_REPLY
    """Said when the caller asks the line to wait ("hang on, let me find my card"); the line
    then waits 20 seconds before the silence counts as no input."""


TARGETS = ("llm", "human", "off")


class Trigger(_Strict):
    """One escalation trigger: when it fires (threshold) and where the call goes (target)."""

    threshold: float | None = Field(default=None, ge=0)
    """What "fires" means depends on the trigger: a confidence below it (low_confidence), a
    signal's score at or above it, 0..1 (frustration, multiple_requests, complaint,
    story_question, policy_question), or a count of such turns in the call (person, no_match, out_of_scope)."""
    target: Literal[TARGETS] | list[Literal[TARGETS]] | None = None  # type: ignore[valid-type]
    """`llm` (hand the conversation to the language model), `human` (transfer) or `off`; or a
    list in order of preference (`[llm, human]`: the model where one is configured, else a person)."""
    at_once: float | None = Field(default=None, ge=0, le=1)
    """frustration: a score at or above it escalates at once; from `threshold` up to it, the
    second such turn in the call does (default 0.7). Set it to the threshold for one turn."""


class SignalExampleDefs(_Strict):
    """Sentences of this line's callers for the escalation signals (docs/flows.md 10a): a turn
    that says nearly the same (cosine 0.8 or more in the router's embedding) is scored as the
    designer says, at once and without refitting anything."""

    upset: list[str] = Field(default_factory=list)
    """Upset, angry, fed-up or distressed callers, in this line's words."""
    complaint: list[str] = Field(default_factory=list)
    """Complaints and disputes about what the company did."""
    policy_question: list[str] = Field(default_factory=list)
    """Questions about rules, terms, what is allowed."""
    calm: list[str] = Field(default_factory=list)
    """Ordinary turns of this line the signals must not fire on ("my card was declined" at a
    bank's card desk)."""

    @model_validator(mode="after")
    def _sentences(self):
        for name in ("upset", "complaint", "policy_question", "calm"):
            if any(not str(s).strip() for s in getattr(self, name)):
                raise ValueError(f"signal_examples.{name}: an empty sentence")
        return self


class Escalation(_Strict):
    """When a call leaves the script, and for whom (docs/flows.md section 10a).

    Unset keys fall back to the server's `[escalation]` table in ivr.toml, then to built-in
    defaults. A trigger whose target is not available (no LLM configured, no human to transfer
    to) does not fire: the flow's own no_match handling runs instead."""

    low_confidence: Trigger | None = None
    """The NLU picked an intent but with a confidence below `threshold`."""
    no_match: Trigger | None = None
    """The same node did not understand the caller `threshold` times in a row."""
    out_of_scope: Trigger | None = None
    """`threshold` turns in a menu that match none of its intents."""
    frustration: Trigger | None = None
    """An upset, angry or distressed caller, from what the turn means, and the caller repeating
    themselves: a calibrated score, 0..1."""
    person: Trigger | None = None
    """The caller asks for a person and the flow has no intent of its own that routes them."""
    multiple_requests: Trigger | None = None
    """Several requests in one turn ("check my balance and also report a lost card"), in a menu
    or as a turn that does not answer the node's question: a calibrated score, 0..1."""
    complaint: Trigger | None = None
    """A complaint or dispute that none of the node's intents took ("you charged me twice"): a
    calibrated score, 0..1."""
    story_question: Trigger | None = None
    """A story with a question in it ("I ordered it, it came broken, I sent it back and now
    there's a new charge, can you reverse it?") that none of the node's intents took: a
    calibrated score, 0..1."""
    policy_question: Trigger | None = None
    """A question about rules or terms that none of the node's intents took: a score, 0..1."""
    human: str | None = None
    """Where `human` goes: a node (usually one with `transfer`), a phone number or a SIP
    address. Default: the flow's first `transfer` node, else the server's transfer_target."""
    dtmf_human: str | None = Field(default=None, pattern=r"^[0-9*#]$")
    """A key that reaches a person during an LLM handoff and in menus that don't use it."""
    llm_fallback: Literal["retry", "human"] | None = None
    """When the LLM fails (timeout, error, empty reply): back to the node the caller was in
    (`retry`), or to a person (`human`)."""
    whisper: bool | None = None
    """Say a summary (intent, details, reason) to the agent before the call is connected."""
    signal_examples: SignalExampleDefs | None = None
    """This line's own sentences for the upset, complaint and policy signals, and calm ones."""

    @model_validator(mode="after")
    def _scores_are_fractions(self):
        # These were counts of turns (multiple_requests) or a word score before the signals had
        # a model: an old `threshold: 2` would now silently never fire, so it is refused.
        for name in ("frustration", "multiple_requests", "complaint", "story_question", "policy_question"):
            trigger = getattr(self, name)
            if trigger is not None and trigger.threshold is not None and trigger.threshold > 1:
                raise ValueError(f"{name}.threshold is a score from 0 to 1 (the signal's calibrated probability), "
                                 f"not {trigger.threshold:g}")
        for name in type(self).model_fields:
            trigger = getattr(self, name)
            if name != "frustration" and isinstance(trigger, Trigger) and trigger.at_once is not None:
                raise ValueError(f"{name}: `at_once` only applies to frustration")
        return self


class Flow(_Strict):
    flow: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """The flow's name: what the webhook's ?flow= and the call logs use."""
    description: str = ""
    start: str
    """The node a call starts in."""
    voice: str | None = None
    """A voice from voices/registry.toml (default: the registry's default)."""
    language: str = "en"
    slots: dict[str, SlotDef] = Field(default_factory=dict)
    """Typed values the flow collects from callers."""
    global_intents: dict[str, IntentDef] = Field(default_factory=dict)
    """Intents active in every node (a node's own intent of the same name wins)."""
    defaults: Defaults = Defaults()
    """Flow-wide no_match and no_input handling."""
    escalation: Escalation = Escalation()
    """When to hand the call to the language model or a person, and why (each a trigger)."""
    nodes: dict[str, Node]
