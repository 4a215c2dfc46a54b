"""Speech to text: one shared faster-whisper model for every call in the process.

Settings chosen by measurement on a 2-core CPU (DESIGN.md section 4): int8, beam 1, no
timestamps, 2 threads cost ~0.3 s per utterance with tiny.en where pipecat's defaults
(float32, beam 5) cost ~0.55 s. Pipecat's WhisperSTTService cannot set beam size or threads
and loads a model per service instance, so the media layer calls this instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import pcm16_to_float
from .workers import ModelWorker

log = logging.getLogger("ivr.stt")

STT_RATE = 16000


@dataclass(frozen=True)
class STTSettings:
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 1
    language: str | None = "en"
    no_speech_threshold: float = 0.6
    """Segments whisper thinks are more likely silence than this are dropped (noise, breath)."""
    concurrency: int = 1
    timeout: float = 10.0


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_seconds: float
    latency_ms: float
    no_speech_prob: float
    avg_logprob: float


class Transcriber:
    def __init__(self, model_path: str | Path, settings: STTSettings = STTSettings()):
        from faster_whisper import WhisperModel

        started = time.perf_counter()
        self.settings = settings
        self.model = WhisperModel(
            str(model_path),
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=max(1, settings.concurrency),
        )
        self.worker = ModelWorker("stt", settings.concurrency, settings.timeout)
        self.load_seconds = time.perf_counter() - started
        log.info("whisper loaded from %s in %.2fs", model_path, self.load_seconds)

    def transcribe_sync(self, pcm16: np.ndarray | bytes, *, prompt: str | None = None) -> Transcript:
        audio = pcm16_to_float(pcm16)
        started = time.perf_counter()
        segments, _info = self.model.transcribe(
            audio,
            language=self.settings.language,
            beam_size=self.settings.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=prompt,
            vad_filter=False,  # the pipeline's VAD already cut this segment
            temperature=0.0,  # no fallback retries: they cost seconds (DESIGN.md section 4)
        )
        texts, no_speech, logprob = [], [], []
        for seg in segments:
            no_speech.append(seg.no_speech_prob)
            logprob.append(seg.avg_logprob)
            if seg.no_speech_prob < self.settings.no_speech_threshold:
                texts.append(seg.text.strip())
        latency = (time.perf_counter() - started) * 1000
        return Transcript(
            text=" ".join(t for t in texts if t).strip(),
            audio_seconds=len(audio) / STT_RATE,
            latency_ms=latency,
            no_speech_prob=min(no_speech) if no_speech else 1.0,
            avg_logprob=float(np.mean(logprob)) if logprob else -10.0,
        )

    async def transcribe(self, pcm16: np.ndarray | bytes, *, prompt: str | None = None) -> Transcript:
        return await self.worker.run(self.transcribe_sync, pcm16, prompt=prompt)
