"""What a handoff may see and do of the call it holds.

An LLM conversation (ivr.handoff.llm) takes over a call from the scripted flow and gives it
back. It does so only through this interface, which `ivr.conversation.session.CallSession`
implements; it never reaches into the session's internals or the flow engine's state, so the
session can change how it runs a turn without breaking the handoff.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from ivr.dialog.schema import Flow
from ivr.handoff.policy import EscalationPolicy


class CallControl(Protocol):
    call_id: str
    #: The conversation so far: {"role": "caller"|"bot", "text" or "dtmf", ...}, oldest first.
    history: list[dict[str, Any]]
    policy: EscalationPolicy
    #: Where a person is for this call (a node or a number), or None.
    human: str | None

    @property
    def closing(self) -> bool: ...

    @property
    def flow_def(self) -> Flow: ...

    @property
    def node_name(self) -> str | None: ...

    @property
    def slots(self) -> Mapping[str, Any]: ...

    def log_event(self, type_: str, data: dict) -> None: ...

    def scrub(self, text: str) -> str:
        """`text` with this call's sensitive values taken out."""
        ...

    def secrets(self) -> list[Any]: ...

    async def say(self, text: str, kind: str, *, node: str | None = None, source: str | None = None,
                  remember: bool = True) -> None: ...

    async def set_slot(self, name: str, value: Any) -> None: ...

    async def goto(self, node: str, reason: str) -> None:
        """Back to the scripted flow, at `node`."""
        ...

    async def hang_up(self, reason: str) -> None: ...

    async def transfer(self, target: str, reason: str, trigger: str) -> None: ...

    async def to_human(self, reason: str, trigger: str) -> None:
        """To this call's person (`human`), the way the flow goes there."""
        ...

    async def call_backend(self, node: str, values: Mapping[str, Any]) -> Any:
        """A node's backend request with these values, logged as the handoff's: its result."""
        ...
