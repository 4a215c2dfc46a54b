"""What understanding one turn takes and gives, with no model behind it.

The flow engine describes what a node listens for (`ivr.dialog.engine.Expectation`) and hands
the NLU only its `Candidates`; the NLU answers with an `Understanding`. NLU never sees the
engine, so the models can be tested, benchmarked and replaced without a flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The intent of a request that none of a node's candidates covers.
OUT_OF_SCOPE = "out_of_scope"


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
class Understanding:
    intent: str | None = None  # a candidate's name, OUT_OF_SCOPE, or None when not classified
    confidence: float = 0.0
    source: str = ""


@dataclass
class NLUOutcome:
    understanding: Understanding
    ranked: list[tuple[str, float]] = field(default_factory=list)
    latency_ms: float = 0.0
