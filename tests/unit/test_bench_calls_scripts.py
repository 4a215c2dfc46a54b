"""Scripted callers who pause mid-sentence, and the turn answered too early (the caller cut off)."""

from __future__ import annotations

import asyncio
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ivr.bench.calls import _WORDS, PAUSE, PAUSE_S, SCRIPTS, draw_pauses, scripts_for
from ivr.speech.audio import FRAME_BYTES, TWILIO_RATE
from ivr.tools.simulate import (
    BotUtterance,
    CallerSimulator,
    SimulationReport,
    Step,
    TurnReport,
    answered_early,
    early_start,
    join_with_pauses,
    pause_before,
    split_pauses,
)

FLOW = Path(__file__).resolve().parents[2] / "flows" / "customer_service.yaml"
MARK = re.compile(r"<pause (\d\.\d\d)>")


# ---------------------------------------------------------------- split_pauses
def test_text_without_marks_is_one_part_as_written():
    assert split_pauses("hi, what time do you open on saturday?") == (["hi, what time do you open on saturday?"], [])
    assert split_pauses("I need a pause, please") == (["I need a pause, please"], [])


def test_marks_split_the_text_into_parts_and_pauses():
    parts, pauses = split_pauses("what time do you <pause 0.4> open on <pause .35> sunday?")
    assert parts == ["what time do you", "open on", "sunday?"]
    assert pauses == [0.4, 0.35]
    assert split_pauses("my order<pause 1>and more") == (["my order", "and more"], [1.0])


@pytest.mark.parametrize("text", [
    "what time do you <pause> open",  # no length: a script's mark that scripts_for did not fill in
    "what time do you <pause soon> open",
    "what time do you <pause -0.4> open",
    "what time do you <pause 0.4 open",
    "what time do you pause 0.4> open",
])
def test_a_malformed_mark_is_an_error_that_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="malformed pause mark.*<pause SECONDS>"):
        split_pauses(text)


@pytest.mark.parametrize("text", ["<pause 0.4> open", "what time <pause 0.4>", "what <pause 0.3> <pause 0.3> time"])
def test_a_pause_must_fall_between_words(text):
    with pytest.raises(ValueError, match="between words"):
        split_pauses(text)


# ---------------------------------------------------------------- the audio of a paused line
def test_parts_are_joined_by_that_much_digital_silence():
    a, b = np.full(800, 1000, dtype=np.int16), np.full(400, -1000, dtype=np.int16)
    joined, spans = join_with_pauses([a, b], [0.37])
    gap = round(0.37 * TWILIO_RATE)
    assert len(joined) == 800 + gap + 400
    assert spans == [(800, 800 + gap)]
    assert not joined[800:800 + gap].any() and (joined[:800] == 1000).all() and (joined[800 + gap:] == -1000).all()
    one, none = join_with_pauses([a], [])
    assert np.array_equal(one, a) and none == []


class _Voice:
    """A word is 0.2 s of tone between 0.1 s of silence each side (trimmed by the simulator)."""

    def __init__(self):
        self.said: list[str] = []

    def synthesize_sync(self, text: str) -> bytes:
        self.said.append(text)
        words = len(text.split())
        quiet = np.zeros(int(0.1 * TWILIO_RATE), dtype=np.int16)
        t = np.arange(int(0.2 * TWILIO_RATE * words))
        tone = (8000 * np.sin(2 * np.pi * 440 * t / TWILIO_RATE)).astype(np.int16)
        return np.concatenate([quiet, tone, quiet]).tobytes()


def test_a_paused_line_is_spoken_part_by_part_with_the_frames_around_each_pause():
    voice = _Voice()
    sim = CallerSimulator("http://127.0.0.1:1", voice=voice)
    audio, frames = sim._caller_audio(Step("say", "what time <pause 0.4> open"))
    assert voice.said == ["what time", "open"]
    first, gap, second = 2 * 0.2 * TWILIO_RATE, 0.4 * TWILIO_RATE, 0.2 * TWILIO_RATE
    assert len(audio) % FRAME_BYTES == 0 and len(audio) == pytest.approx(first + gap + second, abs=FRAME_BYTES)
    (ends, starts), = frames
    assert ends == int(first - 1) // FRAME_BYTES and starts == int(first + gap) // FRAME_BYTES
    # a line without marks: one synthesis, no pauses, as before
    plain, none = sim._caller_audio(Step("say", "what time"))
    assert none == [] and len(plain) == int(first) and voice.said[-1] == "what time"


# ---------------------------------------------------------------- scripts with pauses
def test_the_first_six_scripts_are_the_ones_the_bench_always_ran():
    assert [s.name for s in SCRIPTS[:6]] == ["hours", "order by voice", "order by keypad", "a person",
                                             "hours then order", "order, number up front"]
    assert not any(PAUSE in st.value for s in SCRIPTS[:6] for st in s.steps)


def test_some_scripts_pause_mid_sentence_and_one_speaks_in_one_breath():
    paused = [s for s in SCRIPTS if any(PAUSE in st.value for st in s.steps)]
    assert len(paused) >= 3
    assert any(len(st.value.split()) >= 20 and PAUSE not in st.value for s in SCRIPTS for st in s.steps)


def test_every_expected_node_is_in_the_flow():
    nodes = set(yaml.safe_load(FLOW.read_text())["nodes"])
    for script in SCRIPTS:
        assert script.expect and set(script.expect) <= nodes, script.name


def test_scripts_for_draws_each_pause_within_range_and_by_the_seed():
    calls = scripts_for(2 * len(SCRIPTS), seed=7)
    assert calls == scripts_for(2 * len(SCRIPTS), seed=7)
    assert calls != scripts_for(2 * len(SCRIPTS), seed=8)
    drawn = []
    for call, script in zip(calls, SCRIPTS * 2, strict=True):
        for said, written in zip(call.steps, script.steps, strict=True):
            assert PAUSE not in said.value
            marks = [float(m) for m in MARK.findall(said.value)]
            assert len(marks) == written.value.count(PAUSE)
            parts, pauses = split_pauses(said.value)  # what the simulator will play parses
            assert pauses == marks and len(parts) == len(marks) + 1
            drawn += marks
    assert drawn and all(PAUSE_S[0] <= p <= PAUSE_S[1] for p in drawn)
    assert len(set(drawn)) > 1  # drawn per mark and per call, not one length for all


def test_the_first_six_calls_get_the_order_numbers_they_always_got():
    # scripts_for before the paused callers: one six-digit draw per call and nothing else
    rng = random.Random(3)
    for call, script in zip(scripts_for(6, seed=3), SCRIPTS[:6], strict=True):
        number = "".join(str(rng.randrange(10)) for _ in range(6))
        words = " ".join(_WORDS[int(d)] for d in number)
        assert call.steps == tuple(Step(st.kind, st.value.replace("{number}", words if st.kind == "say" else number))
                                   for st in script.steps)


def test_draw_pauses_leaves_text_without_marks_alone():
    rng = random.Random(0)
    assert draw_pauses("when are you open", rng) == "when are you open"
    assert rng.random() == random.Random(0).random()  # nothing drawn


# ---------------------------------------------------------------- answered too early
def test_a_reply_that_starts_in_the_caller_turn_is_answered_too_early():
    assert answered_early([10.5], step_started=10.0, speech_end=12.0)
    assert early_start([9.0, 10.5, 11.0], 10.0, 12.0) == 10.5
    assert not answered_early([9.0, 12.3], step_started=10.0, speech_end=12.0)  # before the turn, the reply
    assert not answered_early([], 10.0, 12.0)


def test_the_pause_the_bot_answered_in():
    spans = [(10.5, 10.9), (11.5, 11.9)]
    assert pause_before(10.6, spans) == 0
    assert pause_before(11.2, spans) == 0  # talked over the words after the first pause
    assert pause_before(11.6, spans) == 1
    assert pause_before(10.2, spans) is None  # spoke up while the caller was still on the first part


def test_the_report_says_which_turn_was_answered_too_early():
    report = SimulationReport(call_sid="CA1", flow="customer_service")
    turn = TurnReport(Step("say", "what time do you <pause 0.4> open"), 12.0, step_started=10.0,
                      pause_spans=[(10.5, 10.9)], cut_off=True, cut_off_at_pause=0)
    report.turns.append(turn)
    assert "(answered too early, in or after pause 1)" in "\n".join(report.lines())
    row = report.to_dict()["turns"][0]
    assert row["cut_off"] is True and row["pauses"] == 1 and row["cut_off_at_pause"] == 0


class _Socket:
    def __init__(self):
        self.frames = 0

    async def send(self, message: str) -> None:
        if '"media"' in message:
            self.frames += 1


async def _turn(bot_speaks_after_frames: int, text: str = "what time <pause 0.4> open") -> TurnReport:
    """One spoken turn against a bot that starts to talk once that many caller frames went out."""
    sim = CallerSimulator("http://127.0.0.1:1", voice=_Voice(), idle_gap=0.2, reply_timeout=1.0)
    sim._sent_start = time.time()
    ws = _Socket()
    sender = asyncio.create_task(sim._send_audio(ws, "MZ1"))

    async def bot():
        while ws.frames < bot_speaks_after_frames:
            await asyncio.sleep(0.005)
        now = time.time()
        sim._utterances.append(BotUtterance(now, now))
        sim._last_speech = now

    speaking = asyncio.create_task(bot())
    try:
        return await sim._do_step(ws, "MZ1", Step("say", text), until_idle=False)
    finally:
        sender.cancel()
        speaking.cancel()
        await asyncio.gather(sender, speaking, return_exceptions=True)


async def test_a_bot_that_answers_in_the_pause_cut_the_caller_off():
    # "what time" is 20 frames, the pause 20, "open" 10: the bot speaks up 0.2 s into the pause
    turn = await _turn(bot_speaks_after_frames=30)
    assert turn.pauses == 1 and turn.cut_off and turn.cut_off_at_pause == 0
    (began, ended), = turn.pause_spans
    assert turn.step_started < began < ended < turn.speech_end
    assert 0.25 < ended - began < 0.8  # 0.4 s and a frame, give or take a busy machine
    assert turn.first_reply_at is None  # the early start is not taken for the reply


async def test_a_bot_that_waits_for_the_end_did_not():
    turn = await _turn(bot_speaks_after_frames=60)  # 0.2 s after the turn's last frame
    assert not turn.cut_off and turn.cut_off_at_pause is None
    assert turn.first_reply_at is not None and turn.first_reply_at > turn.speech_end


async def test_a_caller_whose_call_ends_mid_turn_is_not_left_waiting():
    sim = CallerSimulator("http://127.0.0.1:1", voice=_Voice())
    sim._closed.set()  # the sender is gone: no frame will ever go out
    times = await asyncio.wait_for(sim._speak(b"\xff" * FRAME_BYTES * 3, [0, 2]), timeout=2)
    assert len(times) == 2


def test_the_slowest_turns_say_where_their_time_went():
    from ivr.bench.calls import slowest_lines

    turns = [(float(ms), f"s{ms}", {"turn": 1, "endpoint_ms": ms - 100, "voice_to_voice_ms": ms}) for ms in range(400, 2400, 100)]
    [line] = slowest_lines(turns)  # 5% of 20
    assert line == "slow turn: s2300, turn 1: endpoint 2200, voice_to_voice 2300"
    assert slowest_lines([]) == []
