"""Fakes for unit tests: deterministic NLU, recording outputs, tiny speech engines.

Integration tests use the real models; these exist so the protocol and session logic can be
tested in milliseconds.
"""

from __future__ import annotations

import asyncio

import numpy as np

from ivr.conversation.session import RecordedEvents
from ivr.nlu.understanding import NLUOutcome, Understanding


class KeywordNLU:
    """Picks the intent one of whose examples' words appears in the text; else out_of_scope."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.delay, self.fail = delay, fail
        self.calls: list[tuple[str, str]] = []

    def prepare_all(self, nodes) -> int:
        return 0

    async def understand(self, candidates, text: str) -> NLUOutcome:
        self.calls.append((candidates.key, text))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model exploded")
        words = set(text.lower().replace("'", " ").split())
        best, score = "out_of_scope", 0
        for option in candidates.intents:
            for example in option.examples:
                overlap = len(words & set(example.lower().split()))
                if overlap > score:
                    best, score = option.name, overlap
        return NLUOutcome(Understanding(best, 0.9 if score else 0.1, "fake"), [(best, 0.9)], 1.0)


class RecordingOutput:
    def __init__(self, transfer_ok: bool = True):
        self.said: list[str] = []
        self.interrupts = 0
        self.hangups: list[str] = []
        self.transfers: list[tuple[str, str]] = []
        self.transfer_ok = transfer_ok

    async def speak(self, text: str) -> None:
        self.said.append(text)

    async def interrupt(self) -> None:
        self.interrupts += 1

    async def hang_up(self, reason: str) -> None:
        self.hangups.append(reason)

    async def transfer(self, target: str, reason: str, summary: str = "") -> bool:
        self.transfers.append((target, reason))
        return self.transfer_ok


# The sessions' own in-memory sink: `.of(type)` and `.items` as (type, data) pairs.
EventList = RecordedEvents


class ToneSynthesizer:
    """Stands in for piper: a 440 Hz tone, 60 ms per character, at 8 kHz (or the rate asked)."""

    out_rate = 8000

    def __init__(self):
        self.spoken: list[str] = []
        self.rates: list[int] = []

    def synthesize_sync(self, text: str, rate: int | None = None) -> bytes:
        rate = rate or self.out_rate
        n = int(rate * 0.06 * max(1, len(text)))
        t = np.arange(n) / rate
        return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes()

    async def synthesize(self, text: str, rate: int | None = None) -> bytes:
        self.spoken.append(text)
        self.rates.append(rate or self.out_rate)
        return self.synthesize_sync(text, rate)

    def warm(self, texts) -> int:
        return 0


class ScriptedTranscriber:
    """Stands in for whisper: returns queued texts in order, one per utterance."""

    def __init__(self, texts: list[str] | None = None):
        self.texts = list(texts or [])
        self.heard: list[int] = []

    async def transcribe(self, pcm16, *, prompt=None, full_window=False):
        from ivr.speech.stt import Transcript

        self.heard.append(len(pcm16))
        text = self.texts.pop(0) if self.texts else ""
        return Transcript(text, len(pcm16) / 16000, 1.0, 0.0, -0.1)
