"""Text to speech: one shared piper voice, with a cache of synthesised prompts.

Flow prompts are fixed text, so they are synthesised once per flow version (at load, before any
call) and served from memory; only templated prompts ("Your balance is 42 dollars") are spoken
at run time, sentence by sentence so the caller hears the first sentence early.

The cache holds the voice's own audio (22.05 kHz for the default voice) and each call takes it
at its line's rate: 8 kHz for the phone, 16 kHz for a wideband browser call, so a wideband call
hears the cached prompts as fast as a phone call does. Resampling a 3 s prompt costs about
0.5 ms (soxr), against 100-220 ms for piper to speak a sentence; the cache is 2.75 times the
size an 8 kHz one would be (about 130 KB for a 3 s prompt).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from .audio import resample
from .workers import ModelWorker

log = logging.getLogger("ivr.tts")

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


class Synthesizer:
    def __init__(
        self,
        model_path: str | Path,
        config_path: str | Path | None = None,
        *,
        out_rate: int = 8000,
        cache_size: int = 512,
        concurrency: int = 1,
        timeout: float = 10.0,
    ):
        from piper import PiperVoice

        started = time.perf_counter()
        self.voice = PiperVoice.load(str(model_path), config_path=str(config_path) if config_path else None)
        self.native_rate = self.voice.config.sample_rate
        self.out_rate = out_rate
        self.worker = ModelWorker("tts", concurrency, timeout)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.load_seconds = time.perf_counter() - started
        log.info("piper voice loaded from %s in %.2fs", model_path, self.load_seconds)

    def synthesize_sync(self, text: str, rate: int | None = None) -> bytes:
        """int16 PCM at `rate` (default `out_rate`) for one sentence or a whole prompt (cached)."""
        key = text.strip()
        with self._lock:
            native = self._cache.get(key)
            if native is not None:
                self._cache.move_to_end(key)
        if native is None:
            chunks = [np.frombuffer(c.audio_int16_bytes, dtype=np.int16) for c in self.voice.synthesize(key)]
            native = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
            with self._lock:
                self._cache[key] = native
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return resample(native, self.native_rate, rate or self.out_rate).tobytes()

    def is_cached(self, text: str) -> bool:
        with self._lock:
            return text.strip() in self._cache

    async def synthesize(self, text: str, rate: int | None = None) -> bytes:
        if self.is_cached(text):
            return self.synthesize_sync(text, rate)
        return await self.worker.run(self.synthesize_sync, text, rate)

    async def stream(self, text: str, rate: int | None = None) -> AsyncIterator[bytes]:
        """Audio sentence by sentence: the first sentence plays while the next is synthesised."""
        for sentence in split_sentences(text):
            yield await self.synthesize(sentence, rate)

    def warm(self, texts: list[str]) -> int:
        """Synthesise prompts ahead of calls (blocking; run at flow load). Returns the count."""
        count = 0
        for text in texts:
            for sentence in split_sentences(text):
                if not self.is_cached(sentence):
                    self.synthesize_sync(sentence)
                    count += 1
        return count
