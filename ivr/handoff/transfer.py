"""Human transfer decisions that need no I/O: where "a person" is, and what the agent is told.

The whisper summary is said to the agent before the caller is connected (and stored with the
transfer in the call log), so the caller is not asked again for what the bot already knows.
"""

from __future__ import annotations

from typing import Any, Mapping

from ivr.dialog.loader import is_dial_target
from ivr.nlu.understanding import OUT_OF_SCOPE

#: What the caller hears before the line rings through to a person (the flow's own node may say more).
TRANSFER_SAY = "Let me connect you with someone who can help."
MAX_SUMMARY_CHARS = 300  # said to an agent who is waiting; also bounds the URL it travels in


def human_destination(flow, human: str | None, server_default: str | None) -> str | None:
    """A node to go to (it says its prompt and transfers) or a number/SIP address, or None."""
    if human and (human in flow.nodes or is_dial_target(human)):
        return human
    for name, node in flow.nodes.items():
        if node.transfer:
            return name
    return server_default


def transfer_number(flow, destination: str | None) -> str | None:
    """The number or SIP address a destination ends at (for the LLM's transfer tool)."""
    if destination is None:
        return None
    node = flow.nodes.get(destination)
    if node is None:
        return destination
    return node.transfer


def whisper_summary(flow, intent: str | None, slots: Mapping[str, Any], reason: str) -> str:
    """"Caller wants: ... Details: ... Reason: ..." in words an agent can take in by ear.
    `slots` must already be redacted (sensitive values are never said to the agent either)."""
    parts = []
    if intent and intent != OUT_OF_SCOPE:
        spec = flow.global_intents.get(intent)
        for node in flow.nodes.values():
            spec = spec or (node.intents or {}).get(intent)
        wanted = (spec.description if spec is not None and spec.description else intent.replace("_", " "))
        parts.append(f"Caller wants: {wanted.rstrip('.')}.")
    details = [f"{name.replace('_', ' ')} {_spoken(value)}" for name, value in slots.items() if value not in (None, "")]
    if details:
        parts.append("Details: " + ", ".join(details) + ".")
    parts.append(f"Reason: {reason.rstrip('.')}." if reason else "Reason: transfer requested.")
    text = " ".join(parts)
    return text if len(text) <= MAX_SUMMARY_CHARS else text[: MAX_SUMMARY_CHARS - 3].rstrip() + "..."


def _spoken(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    # Digit strings read one by one, as the bot reads them back to the caller.
    return " ".join(text) if text.isdigit() and len(text) > 3 else text
