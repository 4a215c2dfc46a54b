"""Piper through pipecat's TTS service, on the process's one shared voice.

Pipecat's PiperTTSService loads the voice per service instance (0.7 s, and a copy per call);
this one borrows the shared `Synthesizer`, whose cache already holds the flow's fixed prompts,
and takes them at the call's rate (8 kHz, or 16 kHz for a wideband browser call).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from pipecat.frames.frames import ErrorFrame, Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

from ivr.speech.tts import Synthesizer, split_sentences


class SharedPiperTTS(TTSService):
    def __init__(self, synthesizer: Synthesizer, *, rate: int | None = None, **kwargs):
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            push_text_frames=False,
            settings=TTSSettings(model=None, voice="piper", language=None),
            sample_rate=rate or synthesizer.out_rate,
            **kwargs,
        )
        self._synth = synthesizer
        self._rate = rate or synthesizer.out_rate

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        async def sentences():
            for sentence in split_sentences(text):
                yield await self._synth.synthesize(sentence, self._rate)

        try:
            async for frame in self._stream_audio_frames_from_iterator(
                sentences(), in_sample_rate=self._rate, context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except Exception as exc:
            yield ErrorFrame(error=f"TTS failed: {exc}")
