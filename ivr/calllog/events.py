"""Call log event types and the event record.

Every call is a row in the ``calls`` table plus an ordered stream of events. An event is a
type from ``EVENT_TYPES``, a timestamp (epoch seconds), a per-call sequence number (assigned
by the store when the event is written, starting at 1) and a JSON object of details.

What the server writes in ``data`` (not enforced, except where noted; the writers are
``ivr.conversation.session``, ``ivr.conversation.turn``, ``ivr.handoff.llm``, ``ivr.media.pipeline``):

* ``call_start`` / ``call_end`` are written by ``CallStore.start_call`` / ``end_call``;
  ``call_end`` carries ``{"outcome": ...}`` (and ``"reason"`` when the store closed a call
  that was never ended, outcome ``"abnormal"``).
* ``node``: ``{"node": <node entered>}``. The store keeps the call's ``last_node`` column up to
  date from ``data["node"]`` (``"to"`` is accepted too).
* ``transcript``: ``{"text", "stt_ms", "node"}``, plus ``"discarded"`` (segments the noise
  filter dropped) when there were any; the text is ``[redacted]`` while a sensitive slot is said.
* ``nlu``: ``{"node", "text", "intent", "confidence", "source", "ranked": [[intent, score], ...],
  "latency_ms": <the NLU's own time, a number>, "signals", "decision"}``; while an LLM holds the
  call, ``{"node", "text", "source": "llm_handoff", "signals", "decision"}``.
  A turn worth a review (``ivr.calllog.review_queue.why``) also keeps ``"vec"`` (the words'
  embedding, float16 base64) and ``"vec_by"`` (the model that made it); a spoken turn keeps
  ``"speech": [start, end]`` (epoch seconds, from the VAD) to find its words in the recording.
* ``slot``: ``{"name", "value"}`` (``[redacted]`` for a sensitive slot).
* ``prompt``: ``{"text", "node", "kind"}`` (kind: prompt, no_match, no_input, repeat, confirm,
  wait, transfer, llm, ...); sensitive values are scrubbed from the text.
* ``dtmf``: ``{"digit", "node"}`` (``*`` while a sensitive slot is keyed), ``"handoff": true``
  while an LLM holds the call.
* ``no_input``: ``{"node", "after_s"}``; ``barge_in``: ``{"node"}`` plus ``"by"``,
  ``"after_s"`` or ``"llm"``; ``backchannel``: ``{"text", "node"}``.
* ``transcript`` also carries ``"early": true`` when the turn ended before the node's full
  end-of-turn silence, and ``"joined": true`` when its words go on from a withdrawn turn;
  ``turn_withdrawn``: ``{"turn", "node", "early", "replied"}``: the caller went on just after
  that turn was committed, so the flow was put back and the reply (``replied``: it had begun
  playing) stopped.
* ``action``: ``{"node", "method", "url" (no query string), "ok", "status", "error",
  "latency_ms"}``, ``"llm": true`` for an LLM's tool call.
* ``handoff``: ``{"event": "start"|"turn"|"tool"|"decision"|"no_input"|"fallback"|"end", ...}``;
  a start names ``"target"`` (llm or human), ``"trigger"``, ``"reason"`` and ``"node"``.
* ``transfer``: ``{"target", "reason", "trigger", "summary" (what the agent hears), "slots"}``.
* ``error``: ``{"stage", "error"}``.
* ``hangup``: ``{"outcome", "reason"}``; ``drain``: ``{"reason", "node", "outcome": "drained"}``:
  the server, shutting down (SIGTERM, ivr/serving/drain.py), ended the call politely.
* ``recording``: ``{"file", "duration_s", "paused_s", "channels", "started_at"}`` (epoch seconds
  of the file's first sample).
* ``review``: a reviewer's decision about one of the call's turns, written after the call, the
  audit trail of the learning loop (``ivr.review.changes``): ``{"action": "accepted" |
  "refused" | "undone" | "dismissed" | "proposed", "turn": <the turn's nlu event seq>, "text",
  "node", "flow", "intent", "by", "change", "file", "reason"}``.
* ``turn_end``: ``{"turn", "source": "speech"|"dtmf", "<stage>_ms": ...}`` with the stages of
  ``ivr.conversation.turn.Turn.stages`` (endpoint, to_transcript, stt, nlu, to_first_audio,
  voice_to_voice). Other writers may put stage latencies under ``data["latency_ms"]`` as a
  mapping of stage name to milliseconds (see ``LATENCY_KEY`` and ``with_latencies``);
  ``ivr.calllog.reads.event_latencies`` reads both.
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
    "turn_withdrawn",
    "handoff",
    "transfer",
    "error",
    "hangup",
    "drain",
    "recording",
    "review",
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
