"""The flow language: what CX designers write in `flows/*.yaml`.

Pydantic models with `extra="forbid"`, so a misspelt key is an error with its file:line rather
than an option silently ignored. The keys follow DESIGN.md section 3 (Rasa `collect`, Twilio
`<Gather>`, Jambonz `gather`): extend the language, never rename a key.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLOT_TYPES = ("digits", "yes_no", "number", "money", "date", "time", "phone", "email", "text", "enum")
INTENT_ACTIONS = ("repeat", "hangup", "start_over")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Prompt = Union[str, list[str]]
"""A prompt, or a list of variants picked in turn so repeats don't sound robotic."""


class SlotDef(_Strict):
    type: Literal[SLOT_TYPES]  # type: ignore[valid-type]
    description: str = ""
    length: int | None = Field(default=None, ge=1, le=32)
    min_length: int | None = Field(default=None, ge=1, le=32)
    max_length: int | None = Field(default=None, ge=1, le=64)
    choices: dict[str, list[str]] | None = None
    sensitive: bool = False
    """Redacted in call logs and transcripts."""

    @model_validator(mode="after")
    def _enum_has_choices(self) -> "SlotDef":
        if self.type == "enum" and not self.choices:
            raise ValueError("an enum slot needs `choices` (value: [synonyms])")
        if self.type != "enum" and self.choices:
            raise ValueError("`choices` only applies to enum slots")
        return self


class IntentDef(_Strict):
    examples: list[str] = Field(default_factory=list)
    description: str = ""
    goto: str | None = None
    action: Literal[INTENT_ACTIONS] | None = None  # type: ignore[valid-type]

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
    action: HttpAction | None = None
    dtmf: dict[str, str] | None = None
    intents: dict[str, IntentDef] | None = None
    collect: str | None = None
    next: Next | None = None
    no_match: RetryPolicy | None = None
    no_input: RetryPolicy | None = None
    digits: DigitRules | None = None
    barge_in: bool = True
    transfer: str | None = None
    handoff: Literal["llm"] | None = None
    return_to: str | None = None
    hangup: bool = False

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
        return self

    @property
    def listens(self) -> bool:
        return bool(self.collect or self.intents or self.dtmf)


class Defaults(_Strict):
    no_match: RetryPolicy = RetryPolicy(say="Sorry, I didn't catch that.", retries=2)
    no_input: RetryPolicy = RetryPolicy(say="Are you still there?", retries=2, timeout=6.0)


class Flow(_Strict):
    flow: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    start: str
    voice: str | None = None
    language: str = "en"
    slots: dict[str, SlotDef] = Field(default_factory=dict)
    global_intents: dict[str, IntentDef] = Field(default_factory=dict)
    defaults: Defaults = Defaults()
    nodes: dict[str, Node]
