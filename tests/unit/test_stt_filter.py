"""Which of whisper's segments are words and which are noise (ivr.speech.stt), with a stand-in
model so the rule itself is what is tested."""

from types import SimpleNamespace

import numpy as np
import pytest

from ivr.speech.stt import STTSettings, Transcriber


def transcriber_returning(*segments):
    t = Transcriber.__new__(Transcriber)
    t.settings = STTSettings(window_pad_s=None)
    t.model = SimpleNamespace(transcribe=lambda *a, **k: (iter(segments), None))
    return t


def seg(text, no_speech, logprob):
    return SimpleNamespace(text=text, no_speech_prob=no_speech, avg_logprob=logprob)


@pytest.mark.parametrize("segment, heard", [
    (seg(" Yes.", 0.65, -0.3), "Yes."),  # a one-word answer whisper is half sure is silence
    (seg(" Yes.", 0.2, -0.2), "Yes."),
    (seg(" . . . . .", 0.97, -0.02), ""),  # hiss: no words, however confident
    (seg(" Thank you.", 0.95, -0.4), ""),  # surely silence: the classic hallucination
    (seg(" So it goes", 0.7, -1.5), ""),  # probably silence and unsure of the words
])
def test_noise_is_dropped_and_short_answers_are_kept(segment, heard):
    assert transcriber_returning(segment).transcribe_sync(np.zeros(8000, dtype=np.int16)).text == heard


def transcriber_answering(*decodings):
    """A stand-in whose successive decodings give these segments; records each call's options."""
    t = Transcriber.__new__(Transcriber)
    t.settings = STTSettings(window_pad_s=None)
    calls = []

    def transcribe(*a, **k):
        calls.append(k)
        return iter(decodings[len(calls) - 1]), None

    t.model = SimpleNamespace(transcribe=transcribe)
    return t, calls


LOOP = " 6, 5, 9, 3, 8, 7, 8, 7, 8, 8, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8"


@pytest.mark.parametrize("looped", [LOOP, " zero zero zero zero zero zero zero zero zero zero"])
def test_a_decoding_that_loops_is_heard_again_with_a_beam(looped):
    t, calls = transcriber_answering([seg(looped, 0.1, -0.3)], [seg(" 6, 5, 9, 3, 8, 7.", 0.1, -0.3)])
    heard = t.transcribe_sync(np.zeros(32000, dtype=np.int16), full_window=True)  # 2 s
    assert heard.text == "6, 5, 9, 3, 8, 7."
    assert [c["beam_size"] for c in calls] == [1, 3]
    # the loop's cost is bounded: no decoding may run to whisper's 448 tokens
    assert all(c["max_new_tokens"] < 448 for c in calls)


@pytest.mark.parametrize("said, seconds", [
    (" 6, 5, 9, 3, 8, 7.", 3.0),  # six digits read in three seconds
    (" 1, 1, 1, 1, 1, 1.", 3.0),  # a number of one digit repeated is still a number
    (" I'd like to check on my order, it still hasn't arrived and I ordered it two weeks ago.", 5.0),
])
def test_ordinary_decodings_are_not_taken_for_loops(said, seconds):
    t, calls = transcriber_answering([seg(said, 0.1, -0.3)])
    assert t.transcribe_sync(np.zeros(int(16000 * seconds), dtype=np.int16)).text == said.strip()
    assert len(calls) == 1
