"""A whole call through the Twilio protocol: real server, real models, nothing mocked.

The simulator posts a signed webhook, streams piper's voice as 8 kHz mu-law at real-time pace,
presses keys, and transcribes the bot's audio with whisper. The call log says which nodes the
call went through; the bot's audio must say the prompts of those nodes.
"""

from __future__ import annotations

import asyncio
import difflib
import re

import pytest

from ivr.calllog.store import CallStore
from ivr.tools.simulate import CallerSimulator, Step

from .conftest import AUTH_TOKEN

pytestmark = pytest.mark.slow


_DIGIT_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine".split())}


def words(text: str) -> list[str]:
    """Lower-case words, a digit written either way as the digit: whisper writes the bot's
    "1 2 3" as "one two three" on some runs (a fresh clone's run failed on that alone)."""
    return [_DIGIT_WORDS.get(w, w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def similar(heard: str, expected: str) -> float:
    return difflib.SequenceMatcher(None, words(heard), words(expected)).ratio()


def call_log(server, call_sid):
    store = CallStore(server.data_dir / "ivr.sqlite3", recover=False)
    try:
        return store.get_call(call_sid)
    finally:
        store.close()


def test_spoken_intent_then_keypad_entry(server, caller_voice, listener):
    sim = CallerSimulator(server.url, voice=caller_voice, stt=listener, auth_token=AUTH_TOKEN)
    report = asyncio.run(sim.run([Step("say", "I want to check on my order"), Step("dtmf", "123456")]))
    print("\n".join(report.lines()))

    assert report.answer_to_first_audio_ms is not None
    assert similar(report.greeting_text, "Thanks for calling Acme. You can ask about our opening hours, "
                   "check on an order, or talk to an agent. How can I help?") > 0.6, report.greeting_text
    spoken, keyed = report.turns
    assert spoken.latency_ms is not None and keyed.latency_ms is not None
    assert similar(spoken.reply_text, "Please say or key in your six digit order number.") > 0.6, spoken.reply_text
    assert similar(keyed.reply_text, "I heard order 1 2 3 4 5 6. Is that right?") > 0.5, keyed.reply_text

    import time

    deadline = time.time() + 10
    call = None
    while time.time() < deadline:
        call = call_log(server, report.call_sid)
        if call and call["ended_at"]:
            break
        time.sleep(0.2)
    assert call is not None, server.log()
    nodes = [e["data"]["node"] for e in call["events"] if e["type"] == "node"]
    assert nodes == ["main_menu", "ask_order", "confirm_order"], nodes
    nlu = [e["data"] for e in call["events"] if e["type"] == "nlu"]
    assert nlu[0]["intent"] == "order", nlu
    slots = [e["data"] for e in call["events"] if e["type"] == "slot"]
    assert slots == [{"name": "order_number", "value": "123456"}]
    assert call["models"]["slm"]["name"] and call["flow_version"]
    turns = [e["data"] for e in call["events"] if e["type"] == "turn_end"]
    assert turns and "stt_ms" in turns[0]
    assert call["outcome"] == "caller_hangup"


def test_unsigned_webhook_is_refused(server):
    import httpx

    r = httpx.post(server.url + "/twilio/voice", data={"CallSid": "CAx"})
    assert r.status_code == 403


def test_caller_talks_over_the_greeting(server, caller_voice, listener):
    """Barge-in: speech during a prompt stops it (Twilio `clear`) and is understood."""
    sim = CallerSimulator(server.url, voice=caller_voice, stt=listener, auth_token=AUTH_TOKEN)
    report = asyncio.run(sim.run([Step("barge", "I want to check on my order")]))
    print("\n".join(report.lines()))
    assert report.clears >= 1
    # The greeting was cut short: far less than its full ~9 s was heard.
    heard = sum(u.end - u.start for u in report.greeting)
    assert heard < 6, heard
    assert similar(report.turns[0].reply_text, "Please say or key in your six digit order number.") > 0.6


def test_two_calls_at_once_share_the_models(server, caller_voice, listener):
    """Each call keeps its own state; both are answered by the one loaded copy of each model."""

    async def both():
        a = CallerSimulator(server.url, voice=caller_voice, stt=None, auth_token=AUTH_TOKEN)
        b = CallerSimulator(server.url, voice=caller_voice, stt=None, auth_token=AUTH_TOKEN)
        return await asyncio.gather(
            a.run([Step("dtmf", "2"), Step("dtmf", "654321")]),
            b.run([Step("say", "what time do you open on saturday")]),
        )

    ra, rb = asyncio.run(both())
    import time

    time.sleep(1.0)
    a, b = call_log(server, ra.call_sid), call_log(server, rb.call_sid)
    assert [e["data"]["node"] for e in a["events"] if e["type"] == "node"] == ["main_menu", "ask_order", "confirm_order"]
    assert [e["data"]["value"] for e in a["events"] if e["type"] == "slot"] == ["654321"]
    assert [e["data"]["node"] for e in b["events"] if e["type"] == "node"][:2] == ["main_menu", "hours"]
    assert all(t.latency_ms is not None for t in ra.turns + rb.turns)


def test_a_number_read_in_two_parts(server, caller_voice, listener):
    """The start of an order number is never taken as the whole: the line says what it got and
    asks for the rest, held the turn open meanwhile, and adds the rest to it. The caller answers
    what the bot said (a simulator whose next step is a function of the call so far)."""
    said = ["I want to check on my order", "four five seven", "two one nine"]

    async def caller(report):
        return Step("say", said[len(report.turns)]) if len(report.turns) < len(said) else None

    sim = CallerSimulator(server.url, voice=caller_voice, stt=listener, auth_token=AUTH_TOKEN)
    report = asyncio.run(sim.run(caller))
    print("\n".join(report.lines()))
    assert similar(report.turns[1].reply_text, "I got 4 5 7. What comes next?") > 0.5, report.turns[1].reply_text
    import time

    deadline, call = time.time() + 10, None
    while time.time() < deadline:
        call = call_log(server, report.call_sid)
        if call and call["ended_at"]:
            break
        time.sleep(0.2)
    kinds = [e["data"].get("kind") for e in call["events"] if e["type"] == "prompt"]
    assert "ask_rest" in kinds, kinds
    slots = [e["data"] for e in call["events"] if e["type"] == "slot"]
    assert slots == [{"name": "order_number", "value": "457219"}], slots


def _ended_call(server, call_sid):
    import time

    deadline, call = time.time() + 10, None
    while time.time() < deadline:
        call = call_log(server, call_sid)
        if call and call["ended_at"]:
            break
        time.sleep(0.2)
    return call


def test_a_caller_who_pauses_for_a_word_is_heard_whole(server, caller_voice, listener):
    """"I'd like to check on ... my order": words that stop mid-phrase hold the turn open
    longer than the usual silence, so the pause never ends the turn."""
    sim = CallerSimulator(server.url, voice=caller_voice, stt=listener, auth_token=AUTH_TOKEN)
    report = asyncio.run(sim.run([Step("say", "I'd like to check on <pause 0.45> my order"), Step("dtmf", "123456")]))
    print("\n".join(report.lines()))
    assert not report.turns[0].cut_off
    call = _ended_call(server, report.call_sid)
    heard = [e["data"]["text"] for e in call["events"] if e["type"] == "transcript" and e["data"]["text"]]
    assert len(heard) == 1 and "my order" in heard[0].lower(), heard
    nodes = [e["data"]["node"] for e in call["events"] if e["type"] == "node"]
    assert nodes == ["main_menu", "ask_order", "confirm_order"], nodes


def test_a_caller_who_goes_on_after_a_whole_request_is_heard_whole(server, caller_voice, listener):
    """"I'm checking on an order ... that I placed last week": the words before the pause are a
    request, so the line may answer it at once; when the caller goes on, that turn is withdrawn
    (its reply stops, the flow is put back) and the joined words are the turn."""
    sim = CallerSimulator(server.url, voice=caller_voice, stt=listener, auth_token=AUTH_TOKEN)
    report = asyncio.run(sim.run([Step("say", "I'm checking on an order <pause 0.45> that I placed last week"),
                                  Step("dtmf", "123456")]))
    print("\n".join(report.lines()))
    call = _ended_call(server, report.call_sid)
    events = call["events"]
    heard = [e["data"] for e in events if e["type"] == "transcript" and e["data"]["text"]]
    withdrawn = [e["data"] for e in events if e["type"] == "turn_withdrawn"]
    assert "last week" in heard[-1]["text"].lower(), heard
    assert len(withdrawn) == len(heard) - 1, (heard, withdrawn)  # every earlier part was taken back
    assert all(t.get("joined") for t in heard[1:]), heard
    nodes = [e["data"]["node"] for e in events if e["type"] == "node"]
    assert nodes[0] == "main_menu" and nodes[-2:] == ["ask_order", "confirm_order"], nodes
    assert [e["data"] for e in events if e["type"] == "slot"] == [{"name": "order_number", "value": "123456"}]
