"""The transcriber's end-of-turn logic: speculative whisper at the first pause, kept when the
caller stays quiet, dropped when they go on; and the barge-in signal after sustained speech.

Driven through a real pipecat pipeline (pipecat.tests.utils.run_test) with a fake recogniser
whose latency we choose, so the overlap can be seen in the frames' timestamps.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from pipecat.frames.frames import InputAudioRawFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.tests.utils import SleepFrame, run_test

from ivr.media.frames import CallerResumedFrame, CallerSpeakingFrame, CallerTranscriptFrame, TurnKeyedFrame
from ivr.media.transcribe import JOIN_GRACE_SECONDS, PREROLL_SECONDS, RESUME_MARGIN_SECONDS, UtteranceTranscriber
from ivr.speech.stt import STT_RATE, Transcript

PAUSE = 0.1  # the VAD's stop window in these tests


class FakeRecogniser:
    """Says how many samples it was given; takes `delay` seconds; counts starts and cancels."""

    def __init__(self, delay: float):
        self.delay = delay
        self.started = 0
        self.cancelled = 0
        self.lengths: list[int] = []

    async def transcribe(self, pcm16, prompt=None, full_window=False) -> Transcript:
        self.started += 1
        self.lengths.append(len(pcm16))
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Transcript(f"{len(pcm16)} samples", len(pcm16) / STT_RATE, self.delay * 1000, 0.0, -0.1)


def audio(seconds: float, loud: bool = True) -> list:
    """20 ms frames of 16 kHz PCM."""
    n = int(seconds / 0.02)
    sample = np.full(320, 3000 if loud else 0, dtype=np.int16).tobytes()
    return [InputAudioRawFrame(audio=sample, sample_rate=STT_RATE, num_channels=1) for _ in range(n)]


def paused() -> VADUserStoppedSpeakingFrame:
    return VADUserStoppedSpeakingFrame(stop_secs=PAUSE)  # stamped when it arrives (Transcriber)


class Transcriber(UtteranceTranscriber):
    """Stamps the VAD's stop event as it arrives, as a live VAD does when it makes it.

    The frame list is built before the pipeline starts, so a stamp taken there is early by the
    pipeline's start-up time, which on a loaded machine was 0.45 s and failed a timing test.
    """

    async def process_frame(self, frame, direction):
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            frame.timestamp = time.time()
        await super().process_frame(frame, direction)


def transcripts(frames) -> list[CallerTranscriptFrame]:
    return [f for f in frames if isinstance(f, CallerTranscriptFrame)]


@pytest.mark.asyncio
async def test_whisper_runs_during_the_end_of_turn_silence_and_its_result_is_the_turn():
    stt = FakeRecogniser(delay=0.25)
    proc = Transcriber(stt, endpoint_for=lambda: 0.4)
    before = time.time()
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.4), paused(), *audio(0.1, loud=False), SleepFrame(0.6)])
    [t] = transcripts(down)
    assert stt.started == 1 and stt.cancelled == 0
    assert t.discarded == 0
    # The turn is judged over once the node's 0.4 s of silence has passed (0.3 s after the pause)
    # and whisper, started at the pause, took 0.25 s of that time: so no extra wait.
    assert t.decided_at - t.speech_end == pytest.approx(0.4, abs=0.08)
    assert t.decided_at > before
    assert before <= t.speech_start <= t.decided_at  # where the words are in the call's recording (from the VAD's start)


@pytest.mark.asyncio
async def test_speech_after_a_pause_drops_the_guess_and_the_turn_has_all_the_words():
    stt = FakeRecogniser(delay=0.5)  # still running when the caller goes on
    proc = Transcriber(stt, endpoint_for=lambda: 0.6)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), *audio(0.1, loud=False), SleepFrame(0.1),
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.2)])
    [t] = transcripts(down)
    assert stt.started == 2 and stt.cancelled == 1
    assert t.discarded == 1
    # The kept transcription heard both stretches of speech and the gap between them.
    assert stt.lengths[1] > stt.lengths[0] + int(0.3 * STT_RATE)


@pytest.mark.asyncio
async def test_two_separate_turns_give_two_transcripts():
    stt = FakeRecogniser(delay=0.05)
    proc = Transcriber(stt, endpoint_for=lambda: 0.2)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.2), paused(), SleepFrame(0.4),
        VADUserStartedSpeakingFrame(), *audio(0.2), paused(), SleepFrame(0.4)])
    assert [t.discarded for t in transcripts(down)] == [0, 0]
    assert stt.cancelled == 0


@pytest.mark.asyncio
async def test_sustained_speech_signals_a_barge_in_once_and_a_short_sound_never_does():
    stt = FakeRecogniser(delay=0.01)
    proc = Transcriber(stt, endpoint_for=lambda: 0.2, barge_in_after=0.5)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(0.3),  # "mhm"
        VADUserStartedSpeakingFrame(), *audio(1.0), paused(), SleepFrame(0.3)])  # a real interruption
    speaking = [f for f in down if isinstance(f, CallerSpeakingFrame)]
    assert len(speaking) == 1 and speaking[0].seconds == pytest.approx(0.5, abs=0.03)
    order = [type(f).__name__ for f in down if isinstance(f, (CallerSpeakingFrame, CallerTranscriptFrame))]
    assert order == ["CallerTranscriptFrame", "CallerSpeakingFrame", "CallerTranscriptFrame"]


@pytest.mark.asyncio
async def test_words_that_already_answer_the_node_end_the_turn_without_the_rest_of_the_silence():
    stt = FakeRecogniser(delay=0.1)
    proc = Transcriber(stt, endpoint_for=lambda: 1.0, complete_for=lambda text: text.endswith("samples"))
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.2)])
    [t] = transcripts(down)
    assert t.decided_at - t.speech_end < 0.5  # the pause (0.1 s) and whisper (0.1 s), not the full 1 s


@pytest.mark.asyncio
async def test_words_that_do_not_answer_the_node_wait_for_the_whole_silence():
    stt = FakeRecogniser(delay=0.1)
    proc = Transcriber(stt, endpoint_for=lambda: 0.6, complete_for=lambda text: False)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.0)])
    [t] = transcripts(down)
    assert t.decided_at - t.speech_end == pytest.approx(0.6, abs=0.08)


@pytest.mark.asyncio
async def test_the_start_of_a_number_holds_the_turn_open_through_a_pause_between_groups():
    stt = FakeRecogniser(delay=0.05)
    proc = Transcriber(stt, endpoint_for=lambda: 0.4, complete_for=lambda text: False,
                                longer_for=lambda text: 1.2)  # "4 5 7 2": twelve digits to come
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(0.7),
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.6)])
    [t] = transcripts(down)  # a 0.7 s pause did not end the turn, as 0.4 s of silence would have
    assert t.discarded == 1


@pytest.mark.asyncio
async def test_a_slow_whisper_still_decides_whether_a_number_goes_on():
    stt = FakeRecogniser(delay=0.6)  # slower than the 0.4 s the turn would otherwise wait
    proc = Transcriber(stt, endpoint_for=lambda: 0.4, complete_for=lambda text: False,
                                longer_for=lambda text: 1.5, full_window_for=lambda: True)  # a number node
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(0.9),
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(2.4)])
    [t] = transcripts(down)  # one turn: the first words were the start of a number
    assert t.discarded == 1


@pytest.mark.asyncio
async def test_a_number_left_incomplete_is_heard_again_with_the_silence_after_it():
    stt = FakeRecogniser(delay=0.05)  # says how many samples it heard: the second pass heard more
    more = lambda first, second: int(second.split()[0]) > int(first.split()[0])  # noqa: E731
    proc = Transcriber(stt, endpoint_for=lambda: 0.4, complete_for=lambda text: False,
                                longer_for=lambda text: 0.8, more_of_it=more, full_window_for=lambda: True)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), *audio(0.8, loud=False), SleepFrame(1.0)])
    [t] = transcripts(down)
    assert stt.started == 2 and stt.lengths[1] > stt.lengths[0]
    assert t.text == f"{stt.lengths[1]} samples"


@pytest.mark.asyncio
async def test_the_words_so_far_are_offered_during_the_silence_and_the_turn_still_waits_it_out():
    stt = FakeRecogniser(delay=0.1)
    early = []
    proc = Transcriber(stt, endpoint_for=lambda: 0.6, complete_for=lambda text: False, heard_early=early.append)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.0)])
    [t] = transcripts(down)
    assert early == [t.text]
    assert t.decided_at - t.speech_end == pytest.approx(0.6, abs=0.08)


@pytest.mark.asyncio
@pytest.mark.parametrize("reading_numbers, before", [(False, 0.5), (True, 1.0)])
async def test_a_number_is_heard_with_more_of_the_audio_before_the_vad_started(reading_numbers, before):
    stt = FakeRecogniser(delay=0.0)
    proc = Transcriber(stt, endpoint_for=lambda: 0.2, long_preroll_for=lambda: reading_numbers)
    await run_test(proc, frames_to_send=[*audio(1.5, loud=False), VADUserStartedSpeakingFrame(), *audio(0.3), paused(),
                                         SleepFrame(0.5)])
    assert stt.lengths == [int((before + 0.3) * STT_RATE)]


@pytest.mark.asyncio
async def test_a_menu_request_the_nlu_settles_in_time_ends_the_turn_at_the_first_pause():
    stt = FakeRecogniser(delay=0.1)

    async def settled(text):
        await asyncio.sleep(0.05)  # the router
        return True

    proc = Transcriber(stt, endpoint_for=lambda: 1.0, complete_for=settled, heard_early=lambda text: None)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.4)])
    [t] = transcripts(down)
    assert t.early and t.decided_at - t.speech_end < 0.5  # pause, whisper, router: not the full 1 s
    assert t.settles_at - t.speech_end == pytest.approx(1.0 + JOIN_GRACE_SECONDS + RESUME_MARGIN_SECONDS, abs=0.01)


@pytest.mark.asyncio
async def test_an_nlu_answer_that_comes_after_the_silence_does_not_hold_the_turn():
    stt = FakeRecogniser(delay=0.1)

    async def slow(text):
        await asyncio.sleep(2.0)  # the small model, busy
        return True

    proc = Transcriber(stt, endpoint_for=lambda: 0.6, complete_for=slow)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.0)])
    [t] = transcripts(down)
    assert not t.early and t.decided_at - t.speech_end == pytest.approx(0.6, abs=0.08)


async def early_turn_then_more(stt) -> list:
    """Words that answer the node at once, a 0.2 s pause, then more words: what came down."""
    proc = Transcriber(stt, endpoint_for=lambda: 0.6, complete_for=lambda text: True)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), *audio(0.2, loud=False), SleepFrame(0.2),
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.0)])
    return down


@pytest.mark.asyncio
async def test_going_on_right_after_an_early_turn_withdraws_it_and_the_next_turn_has_all_the_words():
    stt = FakeRecogniser(delay=0.05)
    down = await early_turn_then_more(stt)
    first, second = transcripts(down)
    [resumed] = [f for f in down if isinstance(f, CallerResumedFrame)]
    assert first.early and resumed.text == first.text
    assert second.joined and stt.lengths[-1] > stt.lengths[0] + int(0.3 * STT_RATE)
    order = [type(f).__name__ for f in down if isinstance(f, (CallerTranscriptFrame, CallerResumedFrame))]
    assert order == ["CallerTranscriptFrame", "CallerResumedFrame", "CallerTranscriptFrame"]


@pytest.mark.asyncio
async def test_speech_after_the_turn_has_settled_is_a_new_turn():
    stt = FakeRecogniser(delay=0.05)
    proc = Transcriber(stt, endpoint_for=lambda: 0.3, complete_for=lambda text: True)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(0.8),
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(0.8)])
    assert [t.joined for t in transcripts(down)] == [False, False]
    assert not [f for f in down if isinstance(f, CallerResumedFrame)]
    assert stt.lengths[1] <= int((PREROLL_SECONDS + 0.3) * STT_RATE)  # its own audio, not the last turn's


@pytest.mark.asyncio
async def test_going_on_before_a_slow_whisper_gave_the_turn_joins_it_without_withdrawing_anything():
    stt = FakeRecogniser(delay=0.5)  # still busy when the 0.3 s silence has passed
    proc = Transcriber(stt, endpoint_for=lambda: 0.3)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), *audio(0.2, loud=False),
        SleepFrame(0.25),  # past the silence (0.2 s after the pause): committed, its words not yet given
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.2)])
    [t] = transcripts(down)  # the commit never gave its words: one transcript, of all of them
    assert not [f for f in down if isinstance(f, CallerResumedFrame)]
    assert t.discarded == 1 and stt.cancelled >= 1


@pytest.mark.asyncio
async def test_words_that_stop_mid_phrase_wait_longer_and_are_not_heard_twice():
    stt = FakeRecogniser(delay=0.05)
    proc = Transcriber(stt, endpoint_for=lambda: 0.4, complete_for=lambda text: False,
                       longer_for=lambda text: 0.9, more_of_it=lambda a, b: True, full_window_for=lambda: False)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.3)])
    [t] = transcripts(down)
    assert t.decided_at - t.speech_end == pytest.approx(0.9, abs=0.08) and stt.started == 1


class FailsSecond(FakeRecogniser):
    """Hears the first utterance, fails on the next (a whisper timeout)."""

    async def transcribe(self, pcm16, prompt=None, full_window=False):
        result = await super().transcribe(pcm16, prompt, full_window)
        return result if self.started == 1 else None


@pytest.mark.asyncio
async def test_when_the_joined_words_cannot_be_heard_the_withdrawn_turns_words_stand():
    down = await early_turn_then_more(FailsSecond(delay=0.05))
    first, second = transcripts(down)
    assert second.joined and second.text == first.text


@pytest.mark.asyncio
async def test_a_key_after_a_turn_closes_it_and_the_next_words_are_a_turn_of_their_own():
    stt = FakeRecogniser(delay=0.05)
    proc = Transcriber(stt, endpoint_for=lambda: 0.6, complete_for=lambda text: True)
    down, _ = await run_test(proc, frames_to_send=[
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(0.2), TurnKeyedFrame(),
        VADUserStartedSpeakingFrame(), *audio(0.3), paused(), SleepFrame(1.0)])
    assert [t.joined for t in transcripts(down)] == [False, False]
    assert not [f for f in down if isinstance(f, CallerResumedFrame)]
