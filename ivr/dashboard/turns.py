"""A call's event stream as the turns an operator reads: what the caller said or keyed, what the
NLU made of it, where the flow went, what the bot said, and how long each stage took.

Turn 0 is the greeting (everything before the caller's first input). A new turn starts with
each non-empty transcript, the first key of a keypad entry, or a no-input timeout; everything
up to the next such input belongs to it (the NLU result, node changes, slots, prompts, the
`turn_end` latencies the session writes when the reply's first audio plays).
"""

from __future__ import annotations

from typing import Any

_INPUT_TYPES = ("transcript", "dtmf", "no_input")
_BOT_TYPES = ("nlu", "node", "prompt", "slot", "action", "handoff", "transfer")


def _new_turn(index: int, kind: str, ts: float, start: float) -> dict:
    return {
        "index": index, "kind": kind, "at_s": round(ts - start, 3), "caller": None, "keys": "",
        "nlu": None, "nodes": [], "slots": [], "prompts": [], "actions": [], "escalations": [],
        "barge_in": False, "noise": 0, "errors": [], "latency_ms": {}, "waterfall": [],
        "early": False, "joined": False, "withdrawn": False,
    }


def group_turns(events: list[dict], started_at: float | None = None) -> list[dict]:
    start = started_at if started_at is not None else (events[0]["ts"] if events else 0.0)
    turns = [_new_turn(0, "greeting", start, start)]
    replied = False  # the bot has answered since the current turn's input
    heard: dict[str, str] = {}  # slot -> who found it in passing (parser, model), until it is kept

    for event in events:
        type_, data, ts = event.get("type"), event.get("data") or {}, float(event.get("ts") or start)
        turn = turns[-1]
        if type_ == "transcript":
            text = data.get("text") or ""
            if not text.strip():
                turn["noise"] += 1
                continue
            turn = _new_turn(len(turns), "speech", ts, start)
            turn["caller"] = text
            turn["early"], turn["joined"] = bool(data.get("early")), bool(data.get("joined"))
            if data.get("stt_ms") is not None:
                turn["latency_ms"].setdefault("stt", data["stt_ms"])
            turns.append(turn)
            replied = False
        elif type_ == "dtmf":
            digit = str(data.get("digit") or data.get("digits") or "")
            if turn["kind"] != "dtmf" or replied:
                turn = _new_turn(len(turns), "dtmf", ts, start)
                turns.append(turn)
                replied = False
            turn["keys"] += digit
            turn["caller"] = f"[keys {turn['keys']}]"
        elif type_ == "no_input":
            turn = _new_turn(len(turns), "no_input", ts, start)
            turn["caller"] = f"[silence {data.get('after_s', '?')} s]"
            turns.append(turn)
            replied = False
        elif type_ == "nlu":
            turn["nlu"] = {k: data.get(k) for k in ("intent", "confidence", "source", "ranked", "latency_ms", "signals")}
            turn["nlu"]["heard"] = [{"slot": h.get("slot"), "value": h.get("value"), "source": h.get("source")}
                                    for h in data.get("slots") or []]
            heard.update({h.get("slot"): h.get("source") for h in data.get("slots") or []})
        elif type_ == "node":
            turn["nodes"].append(data.get("node") or data.get("to"))
        elif type_ == "prompt":
            turn["prompts"].append({"text": data.get("text"), "kind": data.get("kind") or "prompt",
                                    "at_s": round(ts - start, 3)})
        elif type_ == "slot":
            # how it was filled: the answer to its question, or words said in passing (and by whom)
            turn["slots"].append({"name": data.get("name"), "value": data.get("value"),
                                  "heard": heard.pop(data.get("name"), None)})
        elif type_ == "action":
            turn["actions"].append({k: data.get(k) for k in ("method", "url", "ok", "status", "latency_ms", "error")})
        elif type_ in ("handoff", "transfer"):
            turn["escalations"].append({"type": type_, **{k: v for k, v in data.items() if k != "slots"}})
        elif type_ == "barge_in":
            turn["barge_in"] = True
        elif type_ == "turn_withdrawn":  # the caller went on: the next turn has these words and more
            turn["withdrawn"] = True
        elif type_ == "error":
            turn["errors"].append(data)
        elif type_ == "turn_end":
            turn["latency_ms"].update(_stage_latencies(data))
            turn["waterfall"] = waterfall(turn["latency_ms"])
        if type_ in _BOT_TYPES:
            replied = True
    return turns


def _stage_latencies(data: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    nested = data.get("latency_ms")
    if isinstance(nested, dict):
        out.update({str(k): v for k, v in nested.items() if _num(v)})
    for key, value in data.items():
        if key.endswith("_ms") and key != "latency_ms" and _num(value):
            out[key[:-3]] = value
    return out


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def waterfall(lat: dict[str, float]) -> list[dict]:
    """Bars on one time axis from the end of the caller's speech (0 ms) to the bot's first audio:
    waiting for the transcript (with whisper's own time at its end), understanding, and getting
    the reply's first audio out. Missing stages are left out, never guessed."""
    bars: list[dict] = []
    to_transcript = lat.get("to_transcript")
    total = lat.get("voice_to_voice")
    to_audio = lat.get("to_first_audio")
    if lat.get("endpoint") is not None:  # whisper runs inside this silence (speculative STT)
        bars.append({"stage": "end-of-turn silence", "start_ms": 0.0, "end_ms": lat["endpoint"]})
    if to_transcript is not None:
        bars.append({"stage": "end of speech → transcript", "start_ms": 0.0, "end_ms": to_transcript})
        stt = lat.get("stt")
        if stt is not None and stt <= to_transcript:
            bars.append({"stage": "speech recognition", "start_ms": to_transcript - stt, "end_ms": to_transcript})
    if to_transcript is not None and total is not None and to_audio is not None:
        nlu_end = max(total - to_audio, to_transcript)
        bars.append({"stage": "understanding (NLU)", "start_ms": to_transcript, "end_ms": nlu_end})
        bars.append({"stage": "→ first audio", "start_ms": nlu_end, "end_ms": total})
    elif to_audio is not None and total is not None:
        bars.append({"stage": "→ first audio", "start_ms": max(total - to_audio, 0.0), "end_ms": total})
    if total is not None:
        bars.append({"stage": "voice to voice", "start_ms": 0.0, "end_ms": total})
    return [{**b, "start_ms": round(b["start_ms"], 1), "end_ms": round(b["end_ms"], 1)} for b in bars]


def call_view(call: dict) -> dict:
    """One call for the call page: the row, its turns, its recording (if any) and raw events."""
    events = call.get("events") or []
    recording = next((e["data"] for e in reversed(events) if e.get("type") == "recording"), None)
    handoffs = [e["data"] for e in events if e.get("type") in ("handoff", "transfer")]
    out = {k: v for k, v in call.items() if k != "events"}
    out["turns"] = group_turns(events, call.get("started_at"))
    out["recording"] = recording
    out["escalations"] = handoffs
    out["events"] = events
    return out
