"""Cuts the caller's audio into utterances at the VAD's boundaries and transcribes each one.

Keeps a short pre-roll of audio from before the VAD fired, because the VAD needs ~0.1 s of
speech before it says "started" and the commonest digit error is a lost first digit
(docs/architecture.md, "Speech recognition settings"). Transcription runs as a task on the shared whisper worker, so audio
keeps flowing (and barge-in keeps working) while a turn is transcribed.

Speculative transcription: the VAD reports a pause after a short silence (its stop window,
~0.2 s), but a turn ends only after the node's end-of-turn silence (0.5 s after a question,
1 s while digits are read). Whisper starts at the first pause and runs during the rest of that
silence; if the caller stays quiet its result is the turn, if they go on it is thrown away
and the utterance continues. So the silence and the transcription overlap instead of adding up.

A turn may end before that silence has passed: when the words already answer the node (a
yes/no, all the digits, or a menu request the NLU settled with confidence: `complete_for`).
Either way, a turn stays open a moment after it is committed (`JOIN_GRACE_SECONDS` past the
node's full silence): a caller who goes on within it was pausing mid-sentence, so the committed
turn is withdrawn (`CallerResumedFrame`) and the next transcript has all of their words.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from dataclasses import dataclass

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

from .frames import CallerResumedFrame, CallerSpeakingFrame, CallerTranscriptFrame, TurnKeyedFrame

log = logging.getLogger("ivr.media")

PREROLL_SECONDS = 0.5
#: Audio kept from before the VAD's start event where the caller reads a number: the VAD often
#: starts late on a quiet first digit, and whisper then drops it (`ivr bench digits`: six-digit
#: numbers exact at the first try on real voices 0.48 -> 0.62 and 0.42 -> 0.53, two seeds of 60).
LONG_PREROLL_SECONDS = 1.0
MAX_UTTERANCE_SECONDS = 30.0  # whisper's window; a caller talking longer is cut into turns
#: How long past the node's full end-of-turn silence a committed turn can still be joined by
#: more speech: the VAD reports speech ~0.1 s after it starts, so a caller who resumed just
#: inside the silence is heard just after it.
JOIN_GRACE_SECONDS = 0.15
#: Added to that window in what the session is told (`settles_at`): the last resume the
#: transcriber accepts must reach the session before it takes a step that cannot be undone.
RESUME_MARGIN_SECONDS = 0.1


@dataclass
class _Committed:
    """The last turn committed, while the caller may still go on with it."""

    until: float  # epoch seconds
    task: asyncio.Task  # the commit, until its transcript is pushed
    pushed: bool = False
    text: str = ""


class UtteranceTranscriber(FrameProcessor):
    def __init__(self, transcriber: Transcriber, *, call_id: str = "", prompt_for=None, endpoint_for=None,
                 full_window_for=None, complete_for=None, heard_early=None, long_preroll_for=None,
                 longer_for=None, more_of_it=None, barge_in_after: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self._stt = transcriber
        self._call_id = call_id
        self._prompt_for = prompt_for  # () -> str | None: a recogniser hint for the current node
        self._endpoint_for = endpoint_for  # () -> seconds of silence that end a turn on this node
        self._full_window_for = full_window_for  # () -> bool: digits are read, whisper's full window
        self._complete_for = complete_for  # (text) -> bool: these words already answer the node
        # (text) -> seconds | None: these words are the start of something with more to come (a
        # number, a phrase), so the turn ends only after this much silence (a pause between
        # groups is not the end). If a number's caller then says no more, whisper hears the
        # turn again with the silence after it, and the words with more digits are kept: on the
        # words up to the pause it often drops the last digits (`ivr bench digits`, "cut");
        # `more_of_it(first, second)` says.
        self._longer_for = longer_for
        self._more_of_it = more_of_it
        # (text) -> None: the words so far, while the end-of-turn silence is waited out, so the
        # turn can be understood meanwhile (its time overlaps the silence instead of following it)
        self._heard_early = heard_early
        self._long_preroll_for = long_preroll_for  # () -> bool: keep LONG_PREROLL_SECONDS before speech
        self._barge_in_after = barge_in_after  # seconds of speech that make it an interruption
        self._preroll: deque[bytes] = deque()
        self._preroll_bytes = 0
        self._segment = bytearray()
        self._speaking = False
        self._speech_bytes = 0  # speech heard in this utterance (VAD speaking), for barge-in
        self._signalled = False
        self._hold: asyncio.Task | None = None  # waiting out the end-of-turn silence
        self._spec: asyncio.Task | None = None  # the speculative transcription
        self._discarded = 0
        self._committed: _Committed | None = None
        self._joined = ""  # the withdrawn turn's words, while the utterance that goes on from it is heard
        self._utterance_started = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self._on_audio(frame)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            await self._on_started()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._on_paused(frame.stop_secs, frame.timestamp)
        elif isinstance(frame, TurnKeyedFrame):
            if self._committed is not None and not (self._speaking or self._hold):
                self._committed, self._segment = None, bytearray()  # keys answered: the spoken turn stands
            return  # ours, from downstream: nobody upstream wants it
        elif isinstance(frame, (EndFrame, CancelFrame)):
            self._drop_speculation()
            self._cancel_hold()
            self._committed = None
            self._segment = bytearray()
        await self.push_frame(frame, direction)

    async def _on_audio(self, frame: InputAudioRawFrame) -> None:
        if frame.sample_rate != STT_RATE:
            log.error("call %s: audio at %d Hz, expected %d", self._call_id, frame.sample_rate, STT_RATE)
            return
        if self._speaking or self._hold is not None or self._still_open():
            self._segment.extend(frame.audio)  # through a pause too: the caller may go on
            if self._speaking:
                self._speech_bytes += len(frame.audio)
                await self._maybe_signal_speaking()
            if len(self._segment) > MAX_UTTERANCE_SECONDS * STT_RATE * 2:
                if self._speaking or self._hold is not None:
                    self._drop_speculation()
                    self._cancel_hold()
                    self.create_task(self._commit(bytes(self._segment), time.time(), None))
                self._committed, self._segment = None, bytearray()  # given now, or already: start afresh
        self._preroll.append(frame.audio)
        self._preroll_bytes += len(frame.audio)
        while self._preroll_bytes > LONG_PREROLL_SECONDS * STT_RATE * 2 and len(self._preroll) > 1:
            self._preroll_bytes -= len(self._preroll.popleft())

    async def _maybe_signal_speaking(self) -> None:
        if self._signalled or self._barge_in_after is None:
            return
        seconds = self._speech_bytes / (STT_RATE * 2)
        if seconds >= self._barge_in_after:
            self._signalled = True
            await self.push_frame(CallerSpeakingFrame(seconds=seconds))

    def _still_open(self) -> bool:
        """Whether the last committed turn can still be joined; forgets it (and its audio) once not."""
        if self._committed is None:
            return False
        if time.time() <= self._committed.until:
            return True
        self._committed = None
        if not self._speaking and self._hold is None:
            self._segment = bytearray()
        return False

    async def _on_started(self) -> None:
        if self._hold is not None:
            # Speech again within the end-of-turn silence: same utterance, the guess is stale.
            self._cancel_hold()
            self._drop_speculation()
            self._discarded += 1
        elif self._still_open():
            # Speech again just after the turn was committed early (or at the very end of its
            # silence): the caller paused mid-sentence. The turn is withdrawn and heard again
            # with what follows, from the audio kept since.
            committed, self._committed = self._committed, None
            if committed.pushed:
                if committed.text:
                    await self.push_frame(CallerResumedFrame(text=committed.text))
                    self._joined = committed.text
            else:
                committed.task.cancel()  # its words never left: they are simply this turn's start
            self._discarded += 1
            self._speech_bytes = 0
            self._signalled = False
        else:
            keep = LONG_PREROLL_SECONDS if self._long_preroll_for and self._long_preroll_for() else PREROLL_SECONDS
            self._segment = bytearray(b"".join(self._preroll)[-int(keep * STT_RATE) * 2:])
            self._utterance_started = time.time()  # a new utterance (one that goes on keeps its start)
            self._speech_bytes = 0
            self._signalled = False
            self._discarded = 0
        self._speaking = True

    def _on_paused(self, stop_secs: float, stopped_at: float) -> None:
        if not self._speaking:
            return
        self._speaking = False
        speech_end = stopped_at - stop_secs
        audio = bytes(self._segment)
        if len(audio) < 0.1 * STT_RATE * 2:
            self._segment = bytearray()
            return
        endpoint = self._endpoint_for() if self._endpoint_for else stop_secs
        self._spec = self.create_task(self._transcribe(audio))
        self._hold = self.create_task(self._hold_then_commit(speech_end, max(0.0, endpoint - stop_secs), stop_secs))

    async def _hold_then_commit(self, speech_end: float, seconds: float, stop_secs: float = 0.0) -> None:
        spec, again, whole = self._spec, False, False
        if spec is not None and (self._complete_for or self._heard_early or self._longer_for) and seconds > 0:
            started = asyncio.get_running_loop().time()
            done, _ = await asyncio.wait({spec}, timeout=seconds)
            if spec not in done and self._longer_for is not None and self._full_window_for and self._full_window_for():
                # The turn is committed with these words anyway, so waiting for them costs
                # nothing; and they say whether a number goes on (whisper, busy with the
                # guesses of earlier pauses, can take longer than the silence).
                done, _ = await asyncio.wait({spec})
            result = spec.result() if spec in done and not spec.cancelled() and not spec.exception() else None
            text = result.text if result is not None else ""
            if text and self._heard_early is not None:
                self._heard_early(text)
            # The words so far may already be the whole answer ("four one seven two nine three"
            # for a six-digit number, "yes"): then waiting out the rest of the silence buys nothing.
            whole = bool(text) and self._complete_for is not None and self._complete_for(text)
            if inspect.isawaitable(whole):  # the NLU's view of the words, within the silence left
                whole = await _within(whole, seconds - (asyncio.get_running_loop().time() - started))
            if not whole:
                longer = self._longer_for(text) if text and self._longer_for is not None else None
                if longer is not None:
                    seconds = max(seconds, longer - stop_secs)
                    again = self._more_of_it is not None and bool(self._full_window_for and self._full_window_for())
                await asyncio.sleep(max(0.0, seconds - (asyncio.get_running_loop().time() - started)))
        else:
            await asyncio.sleep(seconds)
        self._hold = None
        spec, self._spec = self._spec, None
        audio = bytes(self._segment)  # kept, and added to, while the turn can still be joined
        decided_at = time.time()
        silence_ends_at = speech_end + stop_secs + seconds
        joinable_until = silence_ends_at + JOIN_GRACE_SECONDS
        committed = self._committed = _Committed(joinable_until, asyncio.current_task())
        settles_at = joinable_until + RESUME_MARGIN_SECONDS
        result = await spec if spec is not None else None
        if again and result is not None:
            second = await self._transcribe(audio)
            if second is not None and self._more_of_it(result.text, second.text):
                result = second
        committed.pushed, committed.text = True, result.text if result is not None else ""
        await self._push_result(result, speech_end, decided_at, early=whole, settles_at=settles_at,
                                silence_ends_at=silence_ends_at)

    async def _commit(self, audio: bytes, speech_end: float, decided_at: float | None) -> None:
        await self._push_result(await self._transcribe(audio), speech_end, decided_at or time.time())

    def _cancel_hold(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None

    def _drop_speculation(self) -> None:
        if self._spec is not None:
            self._spec.cancel()  # a run not yet started is never started; one running finishes unseen
            self._spec = None

    async def _transcribe(self, audio: bytes):
        prompt = self._prompt_for() if self._prompt_for else None
        full = bool(self._full_window_for and self._full_window_for())
        try:
            return await self._stt.transcribe(np.frombuffer(audio, dtype=np.int16), prompt=prompt, full_window=full)
        except StageTimeout as exc:
            log.error("call %s: %s", self._call_id, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("call %s: transcription failed: %s", self._call_id, exc)
        return None

    async def _push_result(self, result, speech_end: float, decided_at: float, *, early: bool = False,
                           settles_at: float = 0.0, silence_ends_at: float = 0.0) -> None:
        discarded, self._discarded = self._discarded, 0
        joined, self._joined = self._joined, ""
        if result is None and joined:
            # The whole could not be heard (whisper failed or timed out): the words of the turn
            # the caller went on from were heard, and are better than nothing.
            log.warning("call %s: the joined utterance was not transcribed; keeping %r", self._call_id, joined)
            await self.push_frame(CallerTranscriptFrame(text=joined, speech_end=speech_end, stt_ms=-1, decided_at=decided_at,
                                                        discarded=discarded, joined=True))
            return
        if result is None:
            await self.push_frame(CallerTranscriptFrame(text="", speech_end=speech_end, stt_ms=-1,
                                                        decided_at=decided_at, discarded=discarded,
                                                        settles_at=settles_at, silence_ends_at=silence_ends_at))
            return
        log.info("call %s: caller said %r (%.0f ms for %.1f s)", self._call_id, result.text, result.latency_ms, result.audio_seconds)
        await self.push_frame(
            CallerTranscriptFrame(
                text=result.text,
                speech_end=speech_end,
                stt_ms=result.latency_ms,
                audio_seconds=result.audio_seconds,
                speech_start=self._utterance_started,
                decided_at=decided_at,
                discarded=discarded,
                unsure=result.unsure,
                early=early,
                settles_at=settles_at,
                silence_ends_at=silence_ends_at,
                joined=bool(joined),
            )
        )


async def _within(check, seconds: float) -> bool:
    """The answer of `check` if it comes within `seconds`, else False (the turn then waits out
    its silence as usual). `check` must not own work the turn needs later: it is cancelled."""
    try:
        return bool(await asyncio.wait_for(check, max(0.0, seconds)))
    except asyncio.TimeoutError:
        return False
