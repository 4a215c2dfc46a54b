"""What understanding one turn takes and gives, with no model behind it.

The flow engine describes what a node listens for (`ivr.dialog.engine.Expectation`) and hands
the NLU only its `Candidates`; the NLU answers with an `Understanding`. NLU never sees the
engine, so the models can be tested, benchmarked and replaced without a flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The intent of a request that none of a node's candidates covers.
OUT_OF_SCOPE = "out_of_scope"

#: Slot types the small model fills from words said in passing (ivr.nlu.slm_extract). The
#: parsers own the rest (ivr.nlu.extract): yes/no only from the feature's name, since a model's
#: "yes" in passing would skip a confirmation; enum only by its synonyms, since the 0.5B model
#: picked an option for nearly every request that named none (the SGD benchmark, docs/nlu.md).
MODEL_TYPES = ("text",)


@dataclass(frozen=True)
class Intent:
    name: str
    examples: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Candidates:
    """What one listening node offers: its intents (the node's and the flow's global ones) and
    the slot it collects. `key` names the node's cached preparation (flow version and node)."""

    key: str
    intents: tuple[Intent, ...]
    slot: str | None = None


@dataclass(frozen=True)
class SignalExamples:
    """A flow's own sentences for the escalation signals (its `escalation.signal_examples`): what
    its callers say when a signal should fire, and `calm`, what it must not fire on. A turn that
    says nearly the same is scored by them (ivr.nlu.signal_model `nearest_override`)."""

    upset: tuple[str, ...] = ()
    complaint: tuple[str, ...] = ()
    policy_question: tuple[str, ...] = ()
    calm: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.upset or self.complaint or self.policy_question or self.calm)


@dataclass(frozen=True)
class SlotSpec:
    """What the NLU knows of a slot it may fill: its name, type and the designer's words for it.
    The flow's `SlotDef` is the source; the NLU never sees the flow."""

    name: str
    type: str
    description: str = ""
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """enum: (key, synonyms) pairs; yes_no slots filled in passing use ("true", ...), ("false", ...)."""
    length: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    past: bool = False
    """date: the day has been (a birth, an accident), so "Tuesday" is the last one."""

    @property
    def choice_map(self) -> dict[str, list[str]] | None:
        return {k: list(v) for k, v in self.choices} or None


@dataclass(frozen=True)
class SlotValue:
    """One value heard in a turn: the slot, its canonical value, the caller's words it came
    from, and who found it (`parser` or `model`)."""

    slot: str
    value: Any
    said: str
    source: str = "parser"
    start: int = -1
    """Character offset of `said` in the transcript (-1: not a verbatim span)."""


@dataclass(frozen=True)
class Shot:
    """A worked example for the small model: a request and the values it carries (slot, words)."""

    text: str
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ExtractionPlan:
    """What the small model may fill at one node (or a menu intent's path): the key of its
    cached prompt, the slots it fills (text, enum, yes/no) and the designer's marked examples."""

    key: str
    specs: tuple[SlotSpec, ...]
    shots: tuple[Shot, ...] = ()
    request_words: frozenset[str] = frozenset()
    """Words of the node's own example requests: they carry no value (the model's gate)."""


@dataclass(frozen=True)
class Understanding:
    intent: str | None = None  # a candidate's name, OUT_OF_SCOPE, or None when not classified
    confidence: float = 0.0
    source: str = ""
    values: tuple[SlotValue, ...] = ()
    """Values the turn carries for the slots the path ahead collects (ivr.nlu.extract)."""

    def value_of(self, slot: str) -> SlotValue | None:
        return next((v for v in self.values if v.slot == slot), None)


@dataclass
class NLUOutcome:
    understanding: Understanding
    ranked: list[tuple[str, float]] = field(default_factory=list)
    latency_ms: float = 0.0
    signal_scores: dict[str, float] | None = None
    """The escalation signals' calibrated scores (ivr.nlu.signal_model); None: not scored."""
    vector: Any = None
    """The words' unit embedding as the router saw them (float32 array), and which model made
    it (`vector_by`): kept with a turn worth reviewing, so the review queue groups it without
    embedding it again. None without an embedder (the tool-call baseline)."""
    vector_by: str | None = None
