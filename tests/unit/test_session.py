"""CallSession: turns, DTMF collection, timers, barge-in, transfer and teardown (fake NLU)."""

import asyncio
from pathlib import Path

import pytest

from ivr.conversation.session import CallSession
from ivr.dialog.loader import load_flow, load_flow_text
from tests.fakes import EventList, KeywordNLU, RecordingOutput

REPO = Path(__file__).parent.parent.parent


@pytest.fixture
def flow():
    return load_flow(REPO / "flows" / "customer_service.yaml")


def make(flow, **kw):
    out = RecordingOutput(**{k: kw.pop(k) for k in list(kw) if k == "transfer_ok"})
    events = EventList()
    session = CallSession("CA1", flow, out, nlu=kw.pop("nlu", KeywordNLU()), events=events, **kw)
    return session, out, events


async def test_spoken_turn_goes_through_nlu_and_logs(flow):
    session, out, events = make(flow)
    await session.start()
    assert out.said[0].startswith("Thanks for calling Acme")
    await session.on_transcript("I want to check on my order", speech_end=1.0, stt_ms=250.0)
    assert session.engine.node_name == "ask_order"
    assert out.said[-1] == "Please say or key in your six digit order number."
    nlu = events.of("nlu")[0]
    assert nlu["intent"] == "order" and nlu["node"] == "main_menu"
    assert [e["node"] for e in events.of("node")] == ["main_menu", "ask_order"]


async def test_dtmf_collects_exact_length_then_moves_on(flow):
    session, out, events = make(flow)
    await session.start()
    await session.on_dtmf("2")
    assert session.engine.node_name == "ask_order"
    for d in "12345":
        await session.on_dtmf(d)
    assert session.engine.node_name == "ask_order"  # five digits: still waiting
    await session.on_dtmf("6")
    assert session.engine.node_name == "confirm_order"
    assert events.of("slot") == [{"name": "order_number", "value": "123456"}]
    assert out.said[-1] == "I heard order 1 2 3 4 5 6. Is that right?"


async def test_finish_key_submits_early_and_short_entry_is_no_match(flow):
    session, out, _ = make(flow)
    await session.start()
    await session.on_dtmf("2")
    for d in "123#":
        await session.on_dtmf(d)
    assert session.engine.node_name == "ask_order"
    assert out.said[-2] == "That didn't sound like six digits."


async def test_inter_digit_timeout_submits():
    text = """
flow: t
start: ask
slots:
  pin: {type: digits, min_length: 4, max_length: 8}
nodes:
  ask:
    say: PIN please.
    collect: pin
    digits: {inter_digit_timeout: 0.05}
    next: done
  done: {say: Thanks., hangup: true}
"""
    session, out, _ = make(load_flow_text(text))
    await session.start()
    for d in "4321":
        await session.on_dtmf(d)
    await asyncio.sleep(0.15)
    assert out.said[-1] == "Thanks." and out.hangups


async def test_barge_in_interrupts_only_while_bot_speaks(flow):
    session, out, events = make(flow)
    await session.start()
    await session.on_user_started_speaking()
    assert out.interrupts == 0
    await session.on_bot_started_speaking()
    await session.on_user_started_speaking()
    assert out.interrupts == 1 and events.of("barge_in")


async def test_with_barge_in_after_the_first_sound_does_not_stop_the_prompt_sustained_speech_does(flow):
    session, out, events = make(flow, barge_in_after=0.6)
    await session.start()
    await session.on_bot_started_speaking()
    await session.on_user_started_speaking()
    assert out.interrupts == 0  # could be "mhm", a cough, the TV
    await session.on_caller_speaking(0.6)
    assert out.interrupts == 1
    assert events.of("barge_in")[-1]["by"] == "speech"


@pytest.mark.parametrize("said", ["mhm", "Okay.", "uh-huh, right", "yeah okay"])
async def test_a_backchannel_over_a_prompt_is_ignored(flow, said):
    session, out, events = make(flow, barge_in_after=0.6)
    await session.start()
    await session.on_bot_started_speaking()
    await session.on_transcript(said, speech_end=1.0)
    assert out.interrupts == 0
    assert session.engine.node_name == "main_menu" and not events.of("nlu")
    assert events.of("backchannel")[0]["text"] == said
    await session.on_bot_stopped_speaking()
    await session.on_transcript(said, speech_end=2.0)  # the same words after the prompt are a turn
    assert events.of("nlu")


async def test_real_words_over_a_prompt_stop_it_and_are_the_turn(flow):
    session, out, events = make(flow, barge_in_after=0.6)
    await session.start()
    await session.on_bot_started_speaking()
    await session.on_transcript("I want to check on my order", speech_end=1.0)
    assert out.interrupts == 1 and events.of("barge_in")[-1]["by"] == "words"
    assert session.engine.node_name == "ask_order"


async def test_yes_over_a_yes_no_question_is_an_answer_not_a_backchannel(flow):
    session, out, events = make(flow, barge_in_after=0.6)
    await session.start()
    await session.on_dtmf("2")
    for d in "123456":
        await session.on_dtmf(d)
    assert session.engine.node_name == "confirm_order"
    await session.on_bot_started_speaking()
    await session.on_transcript("yeah", speech_end=1.0)
    assert out.interrupts >= 1 and not events.of("backchannel")
    assert session.engine.node_name != "confirm_order"


async def test_barge_in_off_for_node():
    text = """
flow: t
start: legal
nodes:
  legal:
    say: Please listen to this whole notice.
    barge_in: false
    dtmf: {"1": done}
  done: {say: Bye., hangup: true}
"""
    session, out, _ = make(load_flow_text(text))
    await session.start()
    await session.on_bot_started_speaking()
    await session.on_user_started_speaking()
    assert out.interrupts == 0
    await session.on_dtmf("1")  # keys still cut the prompt short
    assert out.interrupts == 1


async def test_no_input_timer_fires_after_bot_stops(flow):
    text = (REPO / "flows" / "customer_service.yaml").read_text().replace("timeout: 7", "timeout: 0.05")
    session, out, events = make(load_flow_text(text))
    await session.start()
    await session.on_bot_started_speaking()
    await session.on_bot_stopped_speaking()
    await asyncio.sleep(0.2)
    assert "Are you still there?" in out.said


async def test_transfer_failure_apologises_and_hangs_up(flow):
    session, out, events = make(flow, transfer_ok=False)
    await session.start()
    await session.on_dtmf("0")
    assert out.transfers and out.transfers[0][0] == "+15550100"
    assert "couldn't connect you" in out.said[-1]
    assert out.hangups == ["transfer failed"]
    assert session.result.outcome == "transfer_failed"


async def test_transfer_records_outcome(flow):
    session, out, events = make(flow)
    await session.start()
    await session.on_transcript("can I talk to a real person")
    assert session.result.outcome == "transferred"
    assert events.of("transfer")[0]["target"] == "+15550100"


async def test_nlu_failure_is_a_no_match_not_a_crash(flow):
    session, out, events = make(flow, nlu=KeywordNLU(fail=True))
    await session.start()
    await session.on_transcript("where is my order")
    assert session.engine.node_name == "main_menu"
    assert events.of("error")[0]["stage"] == "nlu"
    assert out.said[-2].startswith("Sorry")


async def test_empty_transcript_is_ignored(flow):
    session, out, _ = make(flow)
    await session.start()
    before = list(out.said)
    await session.on_transcript("   ")
    assert out.said == before


async def test_end_is_idempotent_and_stops_input(flow):
    session, out, events = make(flow)
    await session.start()
    await session.end("caller_hangup", "stop")
    await session.end("completed", "again")
    assert session.result.outcome == "caller_hangup"
    assert len(events.of("hangup")) == 1
    await session.on_transcript("where is my order")
    await session.on_dtmf("1")
    assert session.engine.node_name == "main_menu"


async def test_turn_latency_stages_logged(flow):
    session, out, events = make(flow)
    await session.start()
    import time

    t0 = time.time()
    await session.on_transcript("where is my order", speech_end=t0 - 0.3, stt_ms=200.0)
    await session.on_bot_started_speaking()
    stages = events.of("turn_end")[0]
    assert stages["stt_ms"] == 200.0 and stages["voice_to_voice_ms"] >= 300
    assert {"nlu_ms", "to_transcript_ms", "to_first_audio_ms"} <= set(stages)


async def test_handoff_without_llm_apologises_and_returns():
    text = """
flow: t
start: menu
nodes:
  menu:
    say: Menu.
    intents:
      hard: {examples: [complicated question], goto: llm}
  llm: {handoff: llm, return_to: menu}
"""
    session, out, events = make(load_flow_text(text))
    await session.start()
    await session.on_transcript("a complicated question")
    assert "can't help with that" in out.said[-2] and out.said[-1] == "Menu."
    assert events.of("handoff")[0]["target"] == "llm"


async def test_sensitive_slot_is_redacted_in_log():
    text = """
flow: t
start: ask
slots:
  card: {type: digits, length: 4, sensitive: true}
nodes:
  ask: {say: "Last four digits?", collect: card, next: done}
  done: {say: Thanks., hangup: true}
"""
    session, out, events = make(load_flow_text(text))
    await session.start()
    await session.on_transcript("one two three four")
    assert events.of("slot") == [{"name": "card", "value": "[redacted]"}]
    assert session.engine.state.slots["card"] == "1234"


async def test_sensitive_value_never_reaches_the_log():
    text = """
flow: t
start: ask
slots:
  account: {type: digits, length: 8, sensitive: true}
nodes:
  ask: {say: "Account number?", collect: account, confirm: true, next: look}
  look:
    action: {http: GET, url: "https://bank.test/accounts/{slots.account}", save_as: acct, on_error: done}
    next: done
  done: {say: Thanks., hangup: true}
"""
    import json as _json

    import httpx

    from ivr.conversation.actions import HttpActions

    session, out, events = make(load_flow_text(text),
                                actions=HttpActions(httpx.MockTransport(lambda r: httpx.Response(200, json={}))))
    await session.start()
    await session.on_transcript("four five seven two one one three nine")
    await session.enter_keys("1")  # yes, keyed
    assert out.said[1] == "I heard 4 5 7 2 1 1 3 9. Is that right?"  # the caller hears it...
    logged = _json.dumps(events.items)
    for leak in ("45721139", "4 5 7 2 1 1 3 9", "four five seven"):
        assert leak not in logged, leak  # ...the log never has it
    assert "[redacted]" in logged
