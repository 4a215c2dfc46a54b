"""Speech to text: one shared faster-whisper model for every call in the process.

Settings chosen by measurement on a 2-core CPU (docs/latency.md, "What each technique bought"): int8, beam 1, no
timestamps, 2 threads cost ~0.3 s per utterance with tiny.en where pipecat's defaults
(float32, beam 5) cost ~0.55 s. Pipecat's WhisperSTTService cannot set beam size or threads
and loads a model per service instance, so the media layer calls this instead.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import pcm16_to_float
from .workers import ModelWorker

log = logging.getLogger("ivr.stt")

STT_RATE = 16000
FRAMES_PER_SECOND = 100  # whisper's mel frames: one per 10 ms
FULL_WINDOW = 3000  # the 30 s window whisper was trained on

_window = threading.local()
_WORDS = re.compile(r"[A-Za-z0-9]")

#: A decoding that writes more words than WORDS_BASE + WORDS_PER_SECOND per second of audio
#: went round in a loop: callers say 2-4 words a second, and read at most 4-5 digits.
WORDS_BASE, WORDS_PER_SECOND = 3, 6
#: ... as does one whose text compresses like a repetition (openai/whisper's
#: `compression_ratio_threshold`: "zero zero zero ...").
LOOP_COMPRESSION = 2.4
#: A decoding's token budget per second of audio, far past the loop test, so it only bounds
#: what a loop costs (CTranslate2 stops at about half of it: 200 gave 101 tokens). At most
#: what whisper's 448 leave after the prompt (a budget past that is an error, not a cut).
TOKENS_BASE, TOKENS_PER_SECOND, MAX_TOKENS = 32, 48, 440
LOOP_BEAM = 3


def _install_window_hook() -> None:
    """Let each transcription choose its encoder window.

    faster-whisper pads every utterance's features to whisper's full 30 s window, so the encoder
    costs the same ~0.26 s for "yes" as for a 30 s monologue (docs/architecture.md, "Speech recognition settings"). CTranslate2's
    encoder takes shorter inputs, and its cost falls with the frames it is given (measured:
    3000 frames ~650 ms, 1000 ~110 ms, 500 ~50 ms under the same load). faster-whisper pads
    through one module-level function; this wraps it to pad to the window the calling thread
    asked for, so concurrent transcriptions on other threads keep their own.
    """
    from faster_whisper import transcribe as fw

    if getattr(fw.pad_or_trim, "_ivr_window", False):
        return
    original = fw.pad_or_trim

    def pad_or_trim(array, length: int = FULL_WINDOW, *, axis: int = -1):
        return original(array, getattr(_window, "frames", None) or length, axis=axis)

    pad_or_trim._ivr_window = True
    fw.pad_or_trim = pad_or_trim


def _looped(segments, seconds: float) -> bool:
    """Whether a decoding of `seconds` of audio went round in a loop."""
    text = " ".join(seg.text for seg in segments)
    raw = text.encode()
    return (len(text.split()) > WORDS_BASE + WORDS_PER_SECOND * seconds
            or len(raw) / max(1, len(zlib.compress(raw))) > LOOP_COMPRESSION)


@dataclass(frozen=True)
class STTSettings:
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 1
    language: str | None = "en"
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    surely_silent: float = 0.9
    """A segment is noise when whisper thinks it is silence (no-speech probability over
    `no_speech_threshold`) and is unsure of its words (average log-probability under
    `log_prob_threshold`), whisper's own rule; or when it is very sure it is silence
    (`surely_silent`); or when it has no words at all (hiss decodes as ". . . ." with a high
    log-probability). On no-speech alone, a one-word "yes" was sometimes dropped: its
    no-speech probability sits near 0.6."""
    concurrency: int = 1
    timeout: float = 10.0
    window_pad_s: float | None = 1.0
    """Encoder window = the utterance plus this much, at least `window_min_s`; None for whisper's
    full 30 s window. A caller reading digits always gets the full window (`full_window=True`):
    measured by `ivr bench stt` on phone audio, a 15 s window keeps sentences' and short
    answers' word error rate (0.050 vs 0.053, 0 vs 0) at 2.4x the speed, but on digit strings
    tiny.en then loops ("41729 3 41729 3 ...": WER 2.8) where the full window has 0.017."""
    window_min_s: float = 15.0


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_seconds: float
    latency_ms: float
    no_speech_prob: float
    avg_logprob: float
    unsure: bool = False
    """Whisper was unsure of the words it kept: their average log-probability is under its own
    threshold (`log_prob_threshold`, the noise filter's). A number heard so is read back."""


_LETTER = re.compile(r"[A-Za-z]")


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
        if settings.window_pad_s is not None:
            _install_window_hook()
        self.load_seconds = time.perf_counter() - started
        log.info("whisper loaded from %s in %.2fs", model_path, self.load_seconds)

    def transcribe_sync(self, pcm16: np.ndarray | bytes, *, prompt: str | None = None,
                        full_window: bool = False, keep_unsure: bool = False, digits_only: bool = False,
                        beam_size: int | None = None) -> Transcript:
        """keep_unsure: keep segments the noise filter would drop as unsure (not those with no
        words): what whisper heard before the filter. digits_only: whisper may write no token
        with a letter in it, so a number is written as digits ("for" cannot come out). Both,
        and `beam_size`, are levers `ivr bench digits` measures."""
        audio = pcm16_to_float(pcm16)
        started = time.perf_counter()
        seconds = len(audio) / STT_RATE
        beam = beam_size or self.settings.beam_size
        _window.frames = None if full_window else self.window_frames(seconds)
        try:
            segments = self._decode(audio, prompt, beam, digits_only, seconds)
            if _looped(segments, seconds):
                # tiny.en sometimes repeats a digit until it runs out of tokens ("6, 6, 6, ..."):
                # 11 of 1290 decodings of numbers read aloud (`ivr bench digits`' takes, three
                # seeds), each 1.2 s where the others took 0.26 s. A small beam hears the same
                # audio without the loop (10 of those 11), 0.65-1.4 s with the loop cut at its budget.
                log.info("whisper looped on %.1f s of audio; decoding again with a beam", seconds)
                segments = self._decode(audio, prompt, max(beam, LOOP_BEAM), digits_only, seconds)
        finally:
            _window.frames = None
        texts, no_speech, logprob, kept_logprob = [], [], [], []
        for seg in segments:
            no_speech.append(seg.no_speech_prob)
            logprob.append(seg.avg_logprob)
            st = self.settings
            silent = not _WORDS.search(seg.text) or (not keep_unsure and (
                seg.no_speech_prob >= st.surely_silent
                or (seg.no_speech_prob >= st.no_speech_threshold and seg.avg_logprob < st.log_prob_threshold)))
            if not silent:
                texts.append(seg.text.strip())
                kept_logprob.append(seg.avg_logprob)
        latency = (time.perf_counter() - started) * 1000
        return Transcript(
            text=" ".join(t for t in texts if t).strip(),
            audio_seconds=len(audio) / STT_RATE,
            latency_ms=latency,
            no_speech_prob=min(no_speech) if no_speech else 1.0,
            avg_logprob=float(np.mean(logprob)) if logprob else -10.0,
            unsure=bool(kept_logprob) and float(np.mean(kept_logprob)) < self.settings.log_prob_threshold,
        )

    def _decode(self, audio: np.ndarray, prompt: str | None, beam: int, digits_only: bool, seconds: float) -> list:
        segments, _info = self.model.transcribe(
            audio,
            language=self.settings.language,
            beam_size=beam,
            suppress_tokens=[-1, *self._letter_tokens()] if digits_only else [-1],
            without_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=prompt,
            vad_filter=False,  # the pipeline's VAD already cut this segment
            temperature=0.0,  # no fallback retries: they cost seconds (docs/latency.md)
            max_new_tokens=self._token_cap(seconds, prompt),
        )
        return list(segments)  # a generator: the decoding happens here

    def _token_cap(self, seconds: float, prompt: str | None = None) -> int:
        room = MAX_TOKENS - (len(self.model.hf_tokenizer.encode(" " + prompt.strip()).ids) + 1 if prompt else 0)
        return max(16, min(room, int(TOKENS_BASE + TOKENS_PER_SECOND * seconds)))

    def _letter_tokens(self) -> list[int]:
        """The vocabulary's tokens with a letter in them (not the special ones), computed once."""
        if not hasattr(self, "_letters"):
            tok = self.model.hf_tokenizer
            eot = tok.token_to_id("<|endoftext|>")
            self._letters = [i for i in range(eot) if _LETTER.search(tok.decode([i]) or "")]
        return self._letters

    def window_frames(self, seconds: float) -> int | None:
        s = self.settings
        if s.window_pad_s is None:
            return None
        return min(FULL_WINDOW, int(max(s.window_min_s, seconds + s.window_pad_s) * FRAMES_PER_SECOND))

    async def transcribe(self, pcm16: np.ndarray | bytes, *, prompt: str | None = None,
                         full_window: bool = False) -> Transcript:
        return await self.worker.run(self.transcribe_sync, pcm16, prompt=prompt, full_window=full_window)
