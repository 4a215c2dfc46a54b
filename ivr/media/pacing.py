"""How far ahead of the caller's ear the bot's audio is sent.

Pipecat's websocket output sends each 40 ms chunk and then sleeps one chunk's length
(`chunk bytes / rate / 2` for 16-bit audio), so the phone is never more than about one chunk
ahead of its playout. Twilio buffers what it is sent and drops it all on `clear`, so there is
no reason to run that thin: a stall of the event loop longer than a chunk (another call's
whisper or model turn on the same two cores) was an underrun the caller hears as a cut word.
`PlayoutClock` keeps a fixed lead instead: it sends at once until the phone has `lead` seconds
queued, then stays that far ahead. Barge-in is unaffected: `clear` empties Twilio's buffer, and
the clock starts again from the caller's ear; at a hang-up the stream closes only once the
phone has played what it holds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from pipecat.frames.frames import EndFrame, Frame, InterruptionFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.websocket.fastapi import FastAPIWebsocketOutputTransport, FastAPIWebsocketTransport


class PlayoutClock:
    """Tracks when the phone will have played everything sent so far. Pure apart from the clock,
    which tests replace."""

    def __init__(self, lead: float, now: Callable[[], float] = time.monotonic):
        self.lead = lead
        self._now = now
        self.played_until = 0.0

    def sent(self, seconds: float) -> float:
        """Account for `seconds` of audio just sent; returns how long to wait before the next."""
        now = self._now()
        self.played_until = max(self.played_until, now) + seconds
        return max(0.0, self.played_until - now - self.lead)

    def remaining(self) -> float:
        """Seconds of sent audio the phone has still to play."""
        return max(0.0, self.played_until - self._now())

    def reset(self) -> None:
        """The phone dropped its buffer (`clear`): nothing is queued there any more."""
        self.played_until = 0.0


class LeadPacedOutput(FastAPIWebsocketOutputTransport):
    def __init__(self, *args, lead: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = PlayoutClock(lead)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self.clock.reset()

    async def _write_frame(self, frame: Frame) -> bool:
        if isinstance(frame, EndFrame):
            # The stream closes after this; Twilio would drop what it still holds (the end of
            # the goodbye), so the phone plays it out first. A hang-up by the caller is a
            # CancelFrame and does not wait.
            wait = min(self.clock.remaining(), self.clock.lead + 0.1)
            if wait:
                await asyncio.sleep(wait)
        return await super()._write_frame(frame)

    async def _write_audio_sleep(self):
        # one chunk of `audio_chunk_size` bytes of 16-bit mono was just sent
        wait = self.clock.sent(self.audio_chunk_size / 2 / self.sample_rate)
        if wait:
            await asyncio.sleep(wait)


class LeadPacedTransport(FastAPIWebsocketTransport):
    """Pipecat's FastAPI websocket transport with `LeadPacedOutput` (lead 0: pipecat's own)."""

    def __init__(self, websocket, params, *, lead: float, **kwargs):
        super().__init__(websocket, params, **kwargs)
        if lead > 0:
            self._output = LeadPacedOutput(self, self._client, self._params, lead=lead, name=self._output_name)
