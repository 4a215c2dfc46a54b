"""The turns worth a human look (issue #23's review queue), read from the call log: what the
caller said on a menu and what the line made of it, when the line did not understand, was
unsure, had its two models disagree, or escalated. Every instance writes the same call log, so
a second instance on the same PostgreSQL sees the same queue.

A turn is judged from its `nlu` event alone (ivr/conversation/turn.py TurnStep.record), so the
queue is one indexed read of one event type and a pass over its JSON: `why` is pure. Words
that were redacted (a sensitive slot was being said) never enter the queue, and neither do the
values the turn carried: only the words, the node, and what the line did.

A queued turn's event also keeps the words' embedding as the router saw them (`vec`, float16,
base64: about 1 KB), so the queue is grouped without running the embedder over it again
(embedding 10,000 turns takes about 35 s on two cores; reading them back, well under one).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import numpy as np

from ivr.nlu.signals import REPEATED
from ivr.nlu.understanding import OUT_OF_SCOPE
from ivr.privacy.redact import REDACTED

from .reads import _call_filters, _where, loads

#: An intent chosen below this calibrated confidence is worth a look: calibrated, it is wrong
#: about one time in three or more (docs/nlu.md, calibration).
LOW_CONFIDENCE = 0.7
PAGE = 20_000  # nlu events read at a time, newest first, until the queue is full

REASONS = {
    "out_of_scope": "not understood: out of scope or no match",
    "low_confidence": f"an intent chosen with confidence under {LOW_CONFIDENCE:g}",
    "disagreed": "the small model overruled the example router",
    "escalated": "the turn left the script (to the LLM or a person)",
    "repeated": "the caller said their last turn again (it was not answered as they meant)",
}


def why(nlu: Mapping) -> list[str]:
    """The reasons a turn's `nlu` event puts it in the queue (none: it is not worth a look)."""
    intent, confidence = nlu.get("intent"), nlu.get("confidence")
    if nlu.get("source") == "llm_handoff":  # the language model's conversation, not the script's
        return []
    reasons = []
    # a collect node's answer its slot parser took: no intent was asked for (a menu turn that
    # carried values in passing has its intent, and is judged by it)
    answered = intent in (None, "") and (nlu.get("source") == "slot" or bool(nlu.get("slots")))
    if answered:
        pass
    elif intent in (None, "", OUT_OF_SCOPE):
        reasons.append("out_of_scope")
    elif isinstance(confidence, (int, float)) and confidence < LOW_CONFIDENCE:
        reasons.append("low_confidence")
    ranked = nlu.get("ranked") or []
    top = ranked[0][0] if ranked and isinstance(ranked[0], (list, tuple)) and ranked[0] else None
    if nlu.get("source") == "slm" and top is not None and top != intent:
        reasons.append("disagreed")
    decision = nlu.get("decision")
    if isinstance(decision, Mapping) and decision.get("escalate"):
        reasons.append("escalated")
    signals = nlu.get("signals")
    if isinstance(signals, Mapping) and REPEATED in (signals.get("cues") or ()):
        reasons.append("repeated")
    return reasons


def pack_vector(vector) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def unpack_vector(packed) -> np.ndarray | None:
    """A kept vector as float32, or None when there is none or it is not one."""
    if not isinstance(packed, str) or not packed:
        return None
    try:
        raw = base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError):
        return None
    return np.frombuffer(raw, dtype="<f2").astype(np.float32) if raw and len(raw) % 2 == 0 else None


def with_vector(nlu: dict, vector, by: str | None) -> dict:
    """The turn's `nlu` event, with its vector when the turn is worth a look (and may be shown)."""
    text = str(nlu.get("text") or "")
    if vector is None or not by or not text.strip() or REDACTED in text or not why(nlu):
        return nlu
    return {**nlu, "vec": pack_vector(vector), "vec_by": by}


def turns_to_review(b, *, since=None, until=None, flow=None, channel: str | None = "phone",
                    limit: int = 10_000, skip=None) -> list[dict]:
    """The queue, newest first: one dict per turn with its call, flow version, node, words, what
    the line did (intent, confidence, source, runners-up, escalation trigger) and `reasons`.
    `skip(turn)`: turns to leave out (reviewed already), before `limit` is counted."""
    where, params = _call_filters(b, flow=flow, since=since, until=until, channel=channel)
    select = ("SELECT e.id, e.call_id, e.seq, e.ts, e.data, calls.flow, calls.flow_version FROM events e"
              " JOIN calls ON calls.call_id = e.call_id")
    order = " ORDER BY e.ts DESC, e.id DESC LIMIT ?"
    out: list[dict] = []
    after: tuple | None = None
    with b.reader() as conn:
        while len(out) < limit:  # most turns are fine: read pages until the queue is full
            # Each page starts where the last ended (not OFFSET, which sorts and skips again).
            more = [] if after is None else ["(e.ts, e.id) < (?, ?)"]
            rows = conn.execute(b.sql(select + _where(where + ["e.type = 'nlu'"] + more) + order),
                                params + ([] if after is None else [after[0], after[1]]) + [PAGE]).fetchall()
            for _id, call_id, seq, ts, raw, flow_name, version in rows:
                turn = _queued(loads(raw))
                if turn is not None:
                    turn = {"call_id": call_id, "seq": seq, "ts": ts, "flow": flow_name, "flow_version": version, **turn}
                    if skip is None or not skip(turn):
                        out.append(turn)
            if len(rows) < PAGE:
                break
            after = (rows[-1][3], rows[-1][0])
    return out[:limit]


def review_actions(b, *, flow=None, limit: int | None = 10_000) -> list[dict]:
    """The reviewers' decisions (`review` events: the audit trail), newest first (all of them
    with `limit=None`: what settles a turn may be years old)."""
    where = ["e.type = 'review'"]
    params: list = []
    if flow:
        where.append("calls.flow = ?")
        params.append(flow)
    sql = ("SELECT e.call_id, e.seq, e.ts, e.data FROM events e JOIN calls ON calls.call_id = e.call_id"
           + _where(where) + " ORDER BY e.ts DESC, e.id DESC" + (" LIMIT ?" if limit is not None else ""))
    with b.reader() as conn:
        rows = conn.execute(b.sql(sql), params + ([limit] if limit is not None else [])).fetchall()
    out = []
    for call_id, seq, ts, raw in rows:
        data = loads(raw)
        if isinstance(data, Mapping):
            out.append({"call_id": call_id, "seq": seq, "ts": ts, **data})
    return out


#: Decisions that take a turn out of the queue without changing a flow (an accepted turn is
#: left out through the flow's reviewed examples, so that deleting an entry brings it back).
SETTLING = ("dismissed", "proposed")


def latest_decisions(actions: list[dict]) -> dict[tuple[str, int], dict]:
    """Each turn's latest decision, by (call, turn seq) (`actions` newest first)."""
    latest: dict[tuple[str, int], dict] = {}
    for a in actions:
        if isinstance(a.get("turn"), int):
            latest.setdefault((a["call_id"], a["turn"]), a)
    return latest


def settled_turns(actions: list[dict]) -> set[tuple[str, int]]:
    """(call, turn seq) of the turns whose latest decision settles them (`actions` newest first)."""
    return {key for key, a in latest_decisions(actions).items() if a.get("action") in SETTLING}


def _queued(data) -> dict | None:
    if not isinstance(data, Mapping):
        return None
    text = str(data.get("text") or "").strip()
    if not text or REDACTED in text:
        return None
    reasons = why(data)
    if not reasons:
        return None
    decision = data.get("decision") if isinstance(data.get("decision"), Mapping) else {}
    return {"node": data.get("node"), "text": text, "intent": data.get("intent"), "confidence": data.get("confidence"),
            "source": data.get("source"), "ranked": data.get("ranked") or [], "trigger": decision.get("trigger"),
            "reasons": reasons, "speech": data.get("speech"), "vec": data.get("vec"), "vec_by": data.get("vec_by")}
