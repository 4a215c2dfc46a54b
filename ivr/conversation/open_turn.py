"""A turn the caller may still go on with, and how to take it back.

The media layer commits a turn at the first pause when its words already answer the node, and
at the latest once the node's end-of-turn silence has passed; either way the caller may go on a
moment later ("I want to check my order ... and also change the address"). Until `settles_at`
such a turn is open: if the caller goes on, it is withdrawn and its words come back joined with
the rest. So a turn does at once only what can be undone (moving through the flow, saying
prompts, which an interruption stops); a transfer, a handoff or a backend request waits until
the turn has settled, and a turn that hangs up or leaves the script waits out the node's
silence, prompts and all. Pure bookkeeping: the session does the undoing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ivr.dialog.engine import Expectation, Handoff, Hangup, HttpRequest, Transfer

from .turn import Turn

#: Effects that cannot be taken back once carried out.
FINAL_EFFECTS = (Transfer, Handoff, Hangup, HttpRequest)


def split_at_final(effects: list[Any]) -> tuple[list[Any], list[Any]]:
    """The effects before the first that cannot be taken back, and the rest."""
    cut = next((i for i, e in enumerate(effects) if isinstance(e, FINAL_EFFECTS)), len(effects))
    return effects[:cut], effects[cut:]


@dataclass
class UndoPoint:
    """The call as it was before the turn: what withdrawing the turn restores."""

    engine: Any  # FlowEngine.snapshot()
    step: Any  # TurnStep.snapshot()
    expectation: Expectation | None
    turns: int
    history: int


@dataclass
class OpenTurn:
    turn: Turn
    settles_at: float  # epoch seconds, the media layer's clock
    early: bool = False
    quiet_at: float | None = None  # when the node's end-of-turn silence passed, or will have
    withdrawn: asyncio.Event = field(default_factory=asyncio.Event)
    undo: UndoPoint | None = None
    """Set once the turn has acted: withdrawing it then restores this."""
    final: bool = False
    """The turn went ahead with what cannot be undone: it is no longer withdrawn."""

    def open(self, slack: float = 0.0) -> bool:
        """`slack`: seconds past `settles_at` still counted (the media layer decided in time
        and its word is on the way)."""
        return not (self.withdrawn.is_set() or self.final) and time.time() <= self.settles_at + slack

    async def settled(self, until: float | None = None) -> bool:
        """Wait until the caller can no longer go on with this turn (or `until`, sooner): True
        (it is then final, and a later resume is ignored), or False when they did."""
        left = (until or self.settles_at) - time.time()
        if left > 0 and not self.withdrawn.is_set():
            try:
                await asyncio.wait_for(self.withdrawn.wait(), left)
            except asyncio.TimeoutError:
                pass
        self.final = not self.withdrawn.is_set()
        return self.final
