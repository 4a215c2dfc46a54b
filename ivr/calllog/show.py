"""Terminal views of the call log, for `ivr calls list|show|tail`."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Iterable


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def call_rows(calls: Iterable[dict]) -> list[str]:
    lines = [f"{'call':36}  {'started':19}  {'dur':>6}  {'flow':18}  {'outcome':15}  last node"]
    for c in calls:
        duration = f"{c['duration']:.0f}s" if c.get("duration") is not None else "live"
        lines.append(
            f"{c['call_id'][:36]:36}  {_when(c['started_at'])}  {duration:>6}  {str(c['flow'])[:18]:18}  "
            f"{str(c.get('outcome') or 'in progress')[:15]:15}  {c.get('last_node') or '-'}"
        )
    return lines


def event_line(event: dict, start: float | None = None) -> str:
    data = event.get("data") or {}
    at = f"+{event['ts'] - start:6.2f}s" if start else _when(event["ts"])
    kind = event["type"]
    if kind == "transcript":
        detail = f"caller: {data.get('text')!r}" + (f"  (stt {data['stt_ms']:.0f} ms)" if data.get("stt_ms") else "")
    elif kind == "prompt":
        detail = f"bot: {data.get('text')!r}" + (f"  [{data['kind']}]" if data.get("kind") not in (None, "prompt") else "")
    elif kind == "nlu":
        detail = (f"intent={data.get('intent')} confidence={data.get('confidence')} via {data.get('source')}"
                  f" ({data.get('latency_ms')} ms)")
    elif kind == "node":
        detail = f"-> {data.get('node')}"
    elif kind == "turn_end":
        stages = {k: v for k, v in data.items() if k.endswith("_ms")}
        detail = "latency " + " ".join(f"{k.removesuffix('_ms')}={v:.0f}ms" for k, v in stages.items())
    else:
        detail = " ".join(f"{k}={v}" for k, v in data.items())
    return f"{at}  {kind:10}  {detail}"


def call_detail(call: dict) -> list[str]:
    lines = [
        f"call {call['call_id']}  flow {call['flow']} v{call['flow_version']}",
        f"  caller {call.get('caller') or '-'} -> {call.get('called') or '-'}",
        f"  started {_when(call['started_at'])}, ended {_when(call.get('ended_at'))}, outcome {call.get('outcome') or 'in progress'}",
    ]
    for role, model in (call.get("models") or {}).items():
        lines.append(f"  {role}: {model.get('version') or model.get('name')}")
    summary = call.get("summary") or {}
    if summary.get("reason"):
        lines.append(f"  reason: {summary['reason']}")
    lines.append("")
    lines.extend(event_line(e, call["started_at"]) for e in call.get("events", []))
    return lines


def tail(store, *, interval: float = 0.5, out=print, stop=lambda: False) -> None:
    """Follow new events of every call as they are written (Ctrl-C to stop).

    Asks only for events after the last one printed per call, so a busy call log costs one
    small query per live or recent call and poll.
    """
    last_seq: dict[str, int] = {}
    first = True
    while not stop():
        calls = {c["call_id"]: c for c in store.active_calls() + store.list_calls(limit=20)}
        for call_id in calls:
            events = store.events_after(call_id, last_seq.get(call_id, 0))
            if not events:
                continue
            if not first:  # the first poll only notes where each call stands
                for event in events:
                    out(f"{call_id[:12]}  {event_line(event)}")
            last_seq[call_id] = events[-1]["seq"]
        first = False
        time.sleep(interval)
