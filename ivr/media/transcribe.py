"""Cuts the caller's audio into utterances at the VAD's boundaries and transcribes each one.

Keeps a short pre-roll of audio from before the VAD fired, because the VAD needs ~0.2 s of
speech before it says "started" and the commonest digit error is a lost first digit
(DESIGN.md section 4). Transcription runs as a task on the shared whisper worker, so audio
keeps flowing (and barge-in keeps working) while a turn is transcribed.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from ivr.speech.stt import STT_RATE, Transcriber
from ivr.speech.workers import StageTimeout

from .frames import CallerTranscriptFrame

log = logging.getLogger("ivr.media")

PREROLL_SECONDS = 0.5
MAX_UTTERANCE_SECONDS = 30.0  # whisper's window; a caller talking longer is cut into turns


class UtteranceTranscriber(FrameProcessor):
    def __init__(self, transcriber: Transcriber, *, call_id: str = "", prompt_for=None, **kwargs):
        super().__init__(**kwargs)
        self._stt = transcriber
        self._call_id = call_id
        self._prompt_for = prompt_for  # () -> str | None: a recogniser hint for the current node
        self._preroll: deque[bytes] = deque()
        self._preroll_bytes = 0
        self._segment = bytearray()
        self._speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._on_audio(frame)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking = True
            self._segment = bytearray(b"".join(self._preroll))
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            await self._finish_segment(frame.stop_secs, frame.timestamp)
        elif isinstance(frame, (EndFrame, CancelFrame)):
            self._segment = bytearray()
        await self.push_frame(frame, direction)

    def _on_audio(self, frame: InputAudioRawFrame) -> None:
        if frame.sample_rate != STT_RATE:
            log.error("call %s: audio at %d Hz, expected %d", self._call_id, frame.sample_rate, STT_RATE)
            return
        if self._speaking:
            self._segment.extend(frame.audio)
            if len(self._segment) > MAX_UTTERANCE_SECONDS * STT_RATE * 2:
                self.create_task(self._transcribe(bytes(self._segment), time.time()))
                self._segment = bytearray()
        self._preroll.append(frame.audio)
        self._preroll_bytes += len(frame.audio)
        while self._preroll_bytes > PREROLL_SECONDS * STT_RATE * 2 and len(self._preroll) > 1:
            self._preroll_bytes -= len(self._preroll.popleft())

    async def _finish_segment(self, stop_secs: float, stopped_at: float) -> None:
        self._speaking = False
        audio, self._segment = bytes(self._segment), bytearray()
        if len(audio) < 0.1 * STT_RATE * 2:
            return
        self.create_task(self._transcribe(audio, stopped_at - stop_secs))

    async def _transcribe(self, audio: bytes, speech_end: float) -> None:
        prompt = self._prompt_for() if self._prompt_for else None
        try:
            result = await self._stt.transcribe(np.frombuffer(audio, dtype=np.int16), prompt=prompt)
        except StageTimeout as exc:
            log.error("call %s: %s", self._call_id, exc)
            result = None
        except Exception as exc:
            log.exception("call %s: transcription failed: %s", self._call_id, exc)
            result = None
        if result is None:
            await self.push_frame(CallerTranscriptFrame(text="", speech_end=speech_end, stt_ms=-1))
            return
        log.info("call %s: caller said %r (%.0f ms for %.1f s)", self._call_id, result.text, result.latency_ms, result.audio_seconds)
        await self.push_frame(
            CallerTranscriptFrame(
                text=result.text,
                speech_end=speech_end,
                stt_ms=result.latency_ms,
                audio_seconds=result.audio_seconds,
            )
        )
