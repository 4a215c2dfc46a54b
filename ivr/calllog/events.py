"""Call log event types and the event record.

Every call is a row in the ``calls`` table plus an ordered stream of events. An event is a
type from ``EVENT_TYPES``, a timestamp (epoch seconds), a per-call sequence number (assigned
by the store when the event is written, starting at 1) and a JSON object of details.

Conventions for ``data`` (not enforced, except where noted):

* ``call_start`` / ``call_end`` are written by ``CallStore.start_call`` / ``end_call``;
  ``call_end`` carries ``{"outcome": ...}`` (and ``"reason"`` when the store closed a call
  that was never ended, outcome ``"abnormal"``).
* ``node``: ``{"node": <new node id>, "from": <previous node id>}``. The store keeps the
  call's ``last_node`` column up to date from ``data["node"]`` (``"to"`` is accepted too).
* ``transcript``: ``{"text": ..., "final": bool, "confidence": float}``.
* ``nlu``: ``{"intent": ..., "slots": {...}, "confidence": float}``.
* ``slot``: ``{"name": ..., "value": ...}``.
* ``prompt``: ``{"text": ..., "node": ...}``.
* ``dtmf``: ``{"digits": "123#"}``.
* ``handoff``: ``{"reason": ..., "target": ...}``; ``transfer``: ``{"to": ...}``.
* ``error``: ``{"stage": ..., "message": ...}``.
* ``drain``: ``{"reason": ..., "node": ..., "outcome": "drained"}``: the server, shutting down
  (SIGTERM, ivr/serving/drain.py), ended the call politely.
* Stage latencies go under ``data["latency_ms"]`` as a mapping of stage name to
  milliseconds, e.g. ``{"stt": 180.0, "nlu": 95.5, "tts_first_byte": 120.0}``
  (see ``LATENCY_KEY`` and ``with_latencies``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

EVENT_TYPES: tuple[str, ...] = (
    "call_start",
    "turn_start",
    "turn_end",
    "transcript",
    "dtmf",
    "nlu",
    "node",
    "slot",
    "prompt",
    "no_input",
    "action",
    "barge_in",
    "backchannel",
    "handoff",
    "transfer",
    "error",
    "hangup",
    "drain",
    "recording",
    "call_end",
)

_EVENT_TYPE_SET = frozenset(EVENT_TYPES)

#: Key under ``CallEvent.data`` holding per-stage latencies in milliseconds.
LATENCY_KEY = "latency_ms"

#: Outcome the store writes for calls that were started but never ended (server killed).
ABNORMAL = "abnormal"


def check_event_type(type: str) -> str:
    """Return ``type`` if it is a known event type; raise ``ValueError`` otherwise."""
    if type not in _EVENT_TYPE_SET:
        raise ValueError(f"unknown call event type {type!r}; expected one of {', '.join(EVENT_TYPES)}")
    return type


def with_latencies(data: Mapping[str, Any] | None = None, **latency_ms: float) -> dict:
    """Return a copy of ``data`` with ``latency_ms`` merged under ``LATENCY_KEY``.

    >>> with_latencies({"text": "hi"}, stt=181.5)
    {'text': 'hi', 'latency_ms': {'stt': 181.5}}
    """
    out = dict(data or {})
    merged = dict(out.get(LATENCY_KEY) or {})
    merged.update({k: float(v) for k, v in latency_ms.items()})
    out[LATENCY_KEY] = merged
    return out


@dataclass
class CallEvent:
    """One event of one call. ``seq`` is ``None`` until the store has written it.

    The type is checked where events are written (``CallStore.add_event``), not here, so that
    rows written by another version of the server can always be read back.
    """

    call_id: str
    type: str
    data: dict
    ts: float
    seq: int | None = None

    @property
    def latencies(self) -> dict:
        """Stage latencies in milliseconds (empty when the event has none)."""
        return dict(self.data.get(LATENCY_KEY) or {})

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CallEvent":
        return cls(call_id=d["call_id"], type=d["type"], data=dict(d.get("data") or {}),
                   ts=float(d["ts"]), seq=d.get("seq"))
