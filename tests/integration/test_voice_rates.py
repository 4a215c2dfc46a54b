"""The real piper voice at the phone's 8 kHz and a wideband call's 16 kHz, from one synthesis."""

from __future__ import annotations

import numpy as np

from ivr.speech.audio import resample

PROMPT = "Sure, what is your order number?"


def test_one_synthesis_serves_both_lines_and_both_are_understood(caller_voice, listener):
    calls = []
    speak = caller_voice.voice.synthesize
    caller_voice.voice.synthesize = lambda text, *a, **k: calls.append(text) or speak(text, *a, **k)
    try:
        phone = np.frombuffer(caller_voice.synthesize_sync(PROMPT), dtype=np.int16)
        wide = np.frombuffer(caller_voice.synthesize_sync(PROMPT, 16000), dtype=np.int16)
    finally:
        caller_voice.voice.synthesize = speak
    assert len(calls) <= 1  # the second rate came from the cache (none at all if another test spoke it first)
    assert abs(len(wide) - 2 * len(phone)) <= 2
    # the wideband copy keeps what the phone's cuts off: energy above 4 kHz
    spectrum = np.abs(np.fft.rfft(wide.astype(float))) ** 2
    freqs = np.fft.rfftfreq(len(wide), 1 / 16000)
    assert spectrum[freqs > 4200].sum() / spectrum.sum() > 1e-4
    for pcm, rate in ((phone, 8000), (wide, 16000)):
        heard = listener.transcribe_sync(resample(pcm, rate, 16000), full_window=True).text.lower()
        assert "order number" in heard, (rate, heard)
