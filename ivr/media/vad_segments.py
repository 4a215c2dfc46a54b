"""Where a call's VAD hears speech in a recording, offline: the same Silero analyzer and settings
as the live pipeline (ivr/media/pipeline.py), fed 20 ms frames, for benchmarks that ask how a
caller's audio is cut into turns (`ivr bench digits`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from ivr.speech.stt import STT_RATE

FRAME_SECONDS = 0.02


@dataclass(frozen=True)
class Speech:
    """When the VAD said speech started and stopped (seconds from the start of the recording):
    the events the live transcriber acts on, so `start` is `start_secs` into the speech and
    `end` is the VAD's stop window after it."""

    start: float
    end: float


async def speech_spans(pcm16: np.ndarray, *, confidence: float, start_secs: float, stop_secs: float) -> list[Speech]:
    """The stretches the VAD calls speech, each ending at a pause of at least `stop_secs`."""
    vad = SileroVADAnalyzer(sample_rate=STT_RATE, params=VADParams(confidence=confidence, start_secs=start_secs,
                                                                    stop_secs=stop_secs))
    vad.set_sample_rate(STT_RATE)
    step = int(FRAME_SECONDS * STT_RATE)
    spans: list[Speech] = []
    speaking_since: float | None = None
    previous = VADState.QUIET
    for i in range(0, len(pcm16) - step + 1, step):
        state = await vad.analyze_audio(pcm16[i:i + step].astype(np.int16).tobytes())
        now = (i + step) / STT_RATE
        if state == VADState.SPEAKING and previous != VADState.SPEAKING and speaking_since is None:
            speaking_since = now
        elif state == VADState.QUIET and previous != VADState.QUIET and speaking_since is not None:
            spans.append(Speech(speaking_since, now))
            speaking_since = None
        previous = state
    if speaking_since is not None:
        spans.append(Speech(speaking_since, len(pcm16) / STT_RATE))
    return spans


def turns(spans: list[Speech], end_of_turn: float, stop_secs: float, *, goes_on=None,
          longer: float | None = None) -> list[tuple[float, float]]:
    """Spans joined into the caller's turns as the transcriber decides (ivr/media/transcribe.py):
    after the VAD's stop event it waits `end_of_turn - stop_secs` more, and speech starting
    within that wait is the same turn. `goes_on(start, end)`: the words of the turn so far are
    the start of a number with more to come, and then the wait is `longer - stop_secs`."""
    out: list[list[float]] = []
    for s in spans:
        if out:
            gap = s.start - out[-1][1]
            if gap < end_of_turn - stop_secs or (
                    goes_on is not None and longer is not None and gap < longer - stop_secs and goes_on(*out[-1])):
                out[-1][1] = s.end
                continue
        out.append([s.start, s.end])
    return [(a, b) for a, b in out]


def speech_spans_sync(pcm16: np.ndarray, **params) -> list[Speech]:
    return asyncio.run(speech_spans(pcm16, **params))
