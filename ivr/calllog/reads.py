"""Read queries over the call log, the same SQL on every backend.

The backend supplies the connection and the few dialect-specific SQL fragments (placeholder
style, JSON field access, substring tests, time buckets); everything else is shared so the
dashboard, the CLI and the tests see the same answers from SQLite and PostgreSQL.

``summary`` aggregates counts, outcomes, durations and volume in SQL; escalations, latency
percentiles and token sums need the events' JSON, so only the events that can carry them are
fetched and folded in Python (exact percentiles, identical on both databases).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Iterable, Mapping

CALL_COLUMNS = ("call_id", "flow", "flow_version", "caller", "called", "models", "meta",
                "started_at", "ended_at", "outcome", "summary", "last_node")
_JSON_COLUMNS = ("models", "meta", "summary")
_CALL_SELECT = "SELECT " + ", ".join(f"calls.{c}" for c in CALL_COLUMNS) + " FROM calls"
_EVENT_SELECT = "SELECT call_id, seq, ts, type, data FROM events"

#: Outcomes of calls that broke on our side: neither contained nor escalated, counted apart.
FAILED_OUTCOMES = ("abnormal", "error", "stalled")

#: ``summary`` refuses to return more time buckets than this (a too small ``bucket_s``).
MAX_BUCKETS = 10_000


def loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def epoch(t: float | datetime | None) -> float | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return t.timestamp()
    value = float(t)
    if not math.isfinite(value):
        raise ValueError(f"time bound must be a finite epoch, got {t!r}")
    return value


def call_dict(row: Iterable) -> dict:
    d = dict(zip(CALL_COLUMNS, row))
    for col in _JSON_COLUMNS:
        d[col] = loads(d[col])
    d["duration"] = d["ended_at"] - d["started_at"] if d["ended_at"] is not None else None
    return d


def event_dict(row: Iterable) -> dict:
    call_id, seq, ts, type_, data = row
    return {"call_id": call_id, "seq": seq, "ts": ts, "type": type_, "data": loads(data)}


#: A browser call's id starts with this (ivr/serving/browser_routes.py), a Twilio CallSid with
#: `CA`: the id, the indexed key, says which calls are a designer's tests, not the line's.
BROWSER_CALL_PREFIX = "BR"


def is_browser_call(call_id: str) -> bool:
    return str(call_id).startswith(BROWSER_CALL_PREFIX)


def _call_filters(b, *, flow=None, outcome=None, since=None, until=None, caller=None,
                  handoff_reason=None, q=None, channel=None) -> tuple[list[str], list]:
    """SQL conditions on ``calls`` (and its events) for the dashboard's filters. ``channel``:
    ``phone`` or ``browser`` (test calls from the dashboard), told by ``BROWSER_CALL_PREFIX``:
    ``meta.channel`` says the same, but is JSON to parse on every row."""
    where: list[str] = []
    params: list = []
    if channel is not None:
        if channel not in ("phone", "browser"):
            raise ValueError(f"channel: phone or browser, got {channel!r}")
        where.append(f"calls.call_id {'' if channel == 'browser' else 'NOT '}LIKE ?")
        params.append(BROWSER_CALL_PREFIX + "%")
    if flow is not None:
        where.append("calls.flow = ?")
        params.append(str(flow))
    if outcome is not None:
        where.append("calls.outcome = ?")
        params.append(str(outcome))
    if since is not None:
        where.append("calls.started_at >= ?")
        params.append(epoch(since))
    if until is not None:
        where.append("calls.started_at < ?")
        params.append(epoch(until))
    if caller:
        where.append(b.contains_ci("calls.caller"))
        params.append(str(caller))
    if handoff_reason:
        where.append(
            "EXISTS (SELECT 1 FROM events e WHERE e.call_id = calls.call_id AND e.type = 'handoff'"
            f" AND ({b.contains_ci(b.json_text('e.data', 'trigger'))}"
            f" OR {b.contains_ci(b.json_text('e.data', 'reason'))}))")
        params += [str(handoff_reason), str(handoff_reason)]
    if q:
        where.append(
            f"({b.contains_ci('calls.call_id')} OR EXISTS (SELECT 1 FROM events e"
            " WHERE e.call_id = calls.call_id AND e.type = 'transcript'"
            f" AND {b.contains_ci(b.json_text('e.data', 'text'))}))")
        params += [str(q), str(q)]
    return where, params


def _where(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def _page(limit: int, offset: int) -> tuple[int, int]:
    limit, offset = int(limit), int(offset)
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0 (got limit={limit}, offset={offset})")
    return limit, offset


def list_calls(b, limit: int = 50, offset: int = 0, **filters) -> list[dict]:
    limit, offset = _page(limit, offset)
    where, params = _call_filters(b, **filters)
    sql = _CALL_SELECT + _where(where) + " ORDER BY calls.started_at DESC, calls.call_id DESC LIMIT ? OFFSET ?"
    with b.reader() as conn:
        rows = conn.execute(b.sql(sql), params + [limit, offset]).fetchall()
    return [call_dict(r) for r in rows]


def count_calls(b, **filters) -> int:
    where, params = _call_filters(b, **filters)
    with b.reader() as conn:
        return int(conn.execute(b.sql("SELECT COUNT(*) FROM calls" + _where(where)), params).fetchone()[0])


def get_call(b, call_id: str) -> dict | None:
    with b.reader() as conn:
        b.begin_read(conn)  # one snapshot for the row and its events
        try:
            row = conn.execute(b.sql(_CALL_SELECT + " WHERE calls.call_id = ?"), (str(call_id),)).fetchone()
            events = [] if row is None else conn.execute(
                b.sql(_EVENT_SELECT + " WHERE call_id = ? ORDER BY seq, id"), (str(call_id),)).fetchall()
        finally:
            conn.execute("COMMIT")
    if row is None:
        return None
    call = call_dict(row)
    call["events"] = [event_dict(e) for e in events]
    return call


def events_after(b, call_id: str, seq: int = 0, limit: int | None = None) -> list[dict]:
    """The call's events with a sequence number above ``seq``, in order (for live views)."""
    sql = _EVENT_SELECT + " WHERE call_id = ? AND seq > ? ORDER BY seq, id"
    params: list = [str(call_id), int(seq)]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(_page(limit, 0)[0])
    with b.reader() as conn:
        return [event_dict(r) for r in conn.execute(b.sql(sql), params).fetchall()]


def active_calls(b) -> list[dict]:
    with b.reader() as conn:
        rows = conn.execute(b.sql(_CALL_SELECT + " WHERE calls.ended_at IS NULL"
                                  " ORDER BY calls.started_at, calls.call_id")).fetchall()
    return [call_dict(r) for r in rows]


# --------------------------------------------------------------------------- summary


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and v >= 0 else None


def percentile(sorted_values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def event_latencies(type_: str, data: Mapping) -> dict[str, float]:
    """Stage -> ms of one event: its ``latency_ms`` mapping; for ``turn_end`` events that have
    none, their ``<stage>_ms`` fields (what the call session writes today). A scalar
    ``latency_ms`` (the nlu event's own timing) names no stage and is not counted.

    A keypad turn (``source: dtmf``) has no speech to end, transcribe or classify: its only
    stage is ``keypad_to_first_audio`` (key press -> first audio), so keypad turns (~10 ms) do
    not pull the spoken turns' voice-to-voice percentiles down."""
    lat = data.get("latency_ms")
    out: dict[str, float] = {}
    if isinstance(lat, Mapping):
        for stage, v in lat.items():
            if (n := _number(v)) is not None:
                out[str(stage)] = n
    elif type_ == "turn_end":
        for key, v in data.items():
            if key.endswith("_ms") and (n := _number(v)) is not None:
                out[key[:-3]] = n
    if type_ == "turn_end" and data.get("source") == "dtmf":
        return {"keypad_to_first_audio": out["voice_to_voice"]} if "voice_to_voice" in out else {}
    return out


def escalation_reason(data: Mapping) -> str | None:
    """The reason a ``handoff`` event counts under, or None for a handoff's progress records
    (the LLM handoff logs ``event: turn/tool/fallback/end`` records besides its ``start``)."""
    if data.get("event") not in (None, "start"):
        return None
    reason = data.get("trigger") or data.get("reason")
    return str(reason) if reason else "unspecified"


def is_human_escalation(type_: str, data: Mapping) -> bool:
    return type_ == "transfer" or (type_ == "handoff" and data.get("target") == "human")


def summary(b, since=None, until=None, flow=None, bucket_s: float = 3600, channel: str | None = "phone") -> dict:
    """Totals for the dashboard over calls started in [since, until) (optionally one flow), of the
    phone line only unless ``channel`` says otherwise: a designer's test calls from the browser
    are not the line's containment, latency or volume (``test_calls`` counts them apart).

    * ``contained``: ended calls that never had a ``transfer`` event nor a ``handoff`` event with
      ``target == "human"`` and did not end in failure; ``containment_rate`` = contained / ended
      (None with no ended call). ``failed``: ended calls whose outcome is one of
      ``FAILED_OUTCOMES`` (the server crashed, errored or lost the media): a dropped call was
      not contained by the bot, whatever it said before.
    * ``escalations``: ``handoff`` events by ``data.trigger``, else ``data.reason`` (see
      ``escalation_reason``).
    * ``latency_ms``: per stage p50/p95/n over every event's latencies (``event_latencies``).
    * ``volume``: calls per ``bucket_s`` bucket, aligned to multiples of ``bucket_s`` since the
      epoch, empty buckets included, from ``since`` (or the first call) to ``until`` (or the last).
      More than ``MAX_BUCKETS`` buckets: a ValueError when both bounds were given, else only the
      non-empty buckets.
    * ``minutes``: summed duration of ended calls; ``tokens``: ``data.tokens.slm/llm`` summed.
    """
    bucket_s = float(bucket_s)
    if not math.isfinite(bucket_s) or bucket_s <= 0:
        raise ValueError(f"bucket_s must be a positive number of seconds, got {bucket_s!r}")
    since, until = epoch(since), epoch(until)
    where, params = _call_filters(b, flow=flow, since=since, until=until, channel=channel)
    w = _where(where)
    others, other_params = _call_filters(b, flow=flow, since=since, until=until,
                                         channel={"phone": "browser", "browser": "phone"}.get(channel))
    with b.reader() as conn:
        b.begin_read(conn)
        try:
            test_calls = conn.execute(b.sql("SELECT COUNT(*) FROM calls" + _where(others)), other_params).fetchone()[0] \
                if channel is not None else 0
            calls, ended, active, duration = conn.execute(b.sql(
                "SELECT COUNT(*), COUNT(calls.ended_at), SUM(CASE WHEN calls.ended_at IS NULL THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN calls.ended_at IS NULL THEN 0 ELSE calls.ended_at - calls.started_at END)"
                " FROM calls" + w), params).fetchone()
            outcomes = conn.execute(b.sql(
                "SELECT calls.outcome, COUNT(*) FROM calls" + _where(where + ["calls.outcome IS NOT NULL"])
                + " GROUP BY calls.outcome ORDER BY calls.outcome"), params).fetchall()
            bucket = b.bucket_expr("calls.started_at")
            volume = conn.execute(b.sql(
                f"SELECT {bucket} AS bucket, COUNT(*) FROM calls{w} GROUP BY bucket ORDER BY bucket"),
                [bucket_s] + params).fetchall()
            events = conn.execute(b.sql(
                "SELECT e.call_id, e.type, e.data, calls.ended_at, calls.outcome FROM events e"
                " JOIN calls ON calls.call_id = e.call_id"
                + _where(where + ["(e.type IN ('handoff', 'transfer', 'turn_end')"
                                  f" OR {b.contains('e.data')} OR {b.contains('e.data')})"])),
                params + ['"latency_ms"', '"tokens"']).fetchall()
        finally:
            conn.execute("COMMIT")

    escalations: dict[str, int] = {}
    escalated: set[str] = set()
    stages: dict[str, list[float]] = {}
    tokens = {"slm": 0, "llm": 0}
    for call_id, type_, raw, ended_at, outcome in events:
        data = loads(raw)
        if not isinstance(data, Mapping):
            continue
        if type_ == "handoff" and (reason := escalation_reason(data)) is not None:
            escalations[reason] = escalations.get(reason, 0) + 1
        if ended_at is not None and outcome not in FAILED_OUTCOMES and is_human_escalation(type_, data):
            escalated.add(call_id)
        for stage, ms in event_latencies(type_, data).items():
            stages.setdefault(stage, []).append(ms)
        used = data.get("tokens")
        if isinstance(used, Mapping):
            for kind in tokens:
                if (n := _number(used.get(kind))) is not None:
                    tokens[kind] += int(n)

    latency = {}
    for stage in sorted(stages):
        values = sorted(stages[stage])
        latency[stage] = {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}

    ended = int(ended or 0)
    by_outcome = {str(o): int(n) for o, n in outcomes}
    failed = sum(by_outcome.get(o, 0) for o in FAILED_OUTCOMES)
    contained = ended - len(escalated) - failed
    return {
        "calls": int(calls or 0),
        "ended": ended,
        "active": int(active or 0),
        "contained": contained,
        "failed": failed,
        "containment_rate": (contained / ended) if ended else None,
        "test_calls": int(test_calls or 0),
        "outcomes": by_outcome,
        "escalations": dict(sorted(escalations.items(), key=lambda kv: (-kv[1], kv[0]))),
        "latency_ms": latency,
        "volume": _fill_volume(volume, bucket_s, since, until),
        "minutes": float(duration or 0.0) / 60.0,
        "tokens": tokens,
    }


def _fill_volume(rows, bucket_s: float, since: float | None, until: float | None) -> list[dict]:
    counts = {int(k): int(n) for k, n in rows}
    lo = [math.floor(since / bucket_s)] if since is not None else []
    hi = [math.ceil(until / bucket_s) - 1] if until is not None else []
    keys = list(counts)
    if not keys and not (lo and hi):
        return []
    first = lo[0] if lo else min(keys)
    last = hi[0] if hi else max(keys)
    if last - first + 1 > MAX_BUCKETS:
        if since is None or until is None:
            # The span comes from the data (years of calls, say), not from the caller's
            # question: answer with the non-empty buckets only rather than fail.
            return [{"t": _bucket_start(k, bucket_s), "calls": n} for k, n in sorted(counts.items())]
        raise ValueError(f"{last - first + 1} time buckets of {bucket_s:g} s; use a larger bucket_s "
                         f"(at most {MAX_BUCKETS} buckets)")

    return [{"t": _bucket_start(k, bucket_s), "calls": counts.get(k, 0)} for k in range(first, last + 1)]


def _bucket_start(k: int, bucket_s: float) -> float | int:
    t = k * bucket_s
    return int(t) if t.is_integer() else t
