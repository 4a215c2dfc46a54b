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
