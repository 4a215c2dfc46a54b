"""Frames of our own that travel through the call pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from pipecat.frames.frames import SystemFrame


@dataclass
class CallerTranscriptFrame(SystemFrame):
    """What the caller said in one utterance, with the timing the latency budget needs.

    A system frame, so an interruption clearing the data queues cannot drop a caller's turn.
    """

    text: str = ""
    speech_end: float = 0.0
    """Epoch seconds when the caller stopped speaking (VAD stop time minus its stop window)."""
    stt_ms: float = 0.0
    audio_seconds: float = 0.0
    speech_start: float = 0.0
    """Epoch seconds when the VAD said the caller had begun this utterance (its words are in the
    call's recording from a little before this to `speech_end`)."""
    decided_at: float = 0.0
    """Epoch seconds when the turn was judged over (the node's end-of-turn silence had passed)."""
    discarded: int = 0
    """Speculative transcriptions started at a pause and thrown away because the caller went on."""
    unsure: bool = False
    """Whisper was unsure of the words (average log-probability under its own threshold)."""
    early: bool = False
    """The turn ended before the node's full end-of-turn silence (the words already answered)."""
    settles_at: float = 0.0
    """Epoch seconds until which the caller may still go on with this turn: speech that starts
    before then is the same utterance (a `CallerResumedFrame`, then one transcript of it all)."""
    silence_ends_at: float = 0.0
    """Epoch seconds when the node's full end-of-turn silence passed, or will have (an early turn)."""
    joined: bool = False
    """These words go on from a turn the caller resumed (they include that turn's words)."""


@dataclass
class CallerResumedFrame(SystemFrame):
    """The caller went on talking right after a turn was committed: that turn is withdrawn,
    and the words it had come again in the next transcript, joined with what follows."""

    text: str = ""
    """The withdrawn turn's words."""


@dataclass
class CallerSpeakingFrame(SystemFrame):
    """The caller has been talking long enough to be interrupting, not backchannelling."""

    seconds: float = 0.0


@dataclass
class TurnKeyedFrame(SystemFrame):
    """Upstream, from the session's side: the caller pressed a key, so the spoken turn before
    it stands and is no longer joined by what they say next."""
