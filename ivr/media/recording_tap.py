"""The call-recording tap, at the serializer: the one place that sees the caller's audio as
Twilio delivered it and the bot's audio as it leaves for Twilio (after pacing and barge-in
cuts), both as 8 kHz mu-law, so the recording holds what was on the line. A wideband browser
call's 16 kHz audio, both ways, is brought down to the phone's 8 kHz for it.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import numpy as np
import soxr

from pipecat.frames.frames import AudioRawFrame, Frame, InputAudioRawFrame, InterruptionFrame

from ivr.media.recording import CallRecording, recording_name
from ivr.speech.audio import ulaw_decode

from .serializer import WIDEBAND_RATE, SafeTwilioSerializer

log = logging.getLogger("ivr.media")


class RecordingSerializer(SafeTwilioSerializer):
    def __init__(self, stream_sid: str, call_sid: str | None = None, *, call_id: str = "", recording: CallRecording,
                 wideband: bool = False):
        super().__init__(stream_sid, call_sid, call_id=call_id, wideband=wideband)
        self.recording = recording
        # One resampler for the call: chunk by chunk, each 20 ms would start afresh and click.
        self._to_line = soxr.ResampleStream(WIDEBAND_RATE, 8000, 1, dtype="int16") if wideband else None
        self._bot_to_line = soxr.ResampleStream(WIDEBAND_RATE, 8000, 1, dtype="int16") if wideband else None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        rejected = self.rejected
        frame = await super().deserialize(data)
        if self.rejected == rejected and (frame is None or isinstance(frame, InputAudioRawFrame)):
            # Decode the validated mu-law here: the frame holds it resampled for whisper, and the
            # resampler returns nothing for the first frames (no frame, but the caller was heard).
            self._tap(lambda: self._caller(data))
        return frame

    def _caller(self, data: str | bytes) -> None:
        message = json.loads(data)
        if message.get("event") == "media":
            audio = base64.b64decode(message["media"]["payload"])
            if self._to_line is not None:  # the recording is the phone's 8 kHz, whatever the browser sent
                self.recording.caller(self._to_line.resample_chunk(np.frombuffer(audio, dtype="<i2")))
            else:
                self.recording.caller(ulaw_decode(audio))

    async def serialize(self, frame: Frame) -> str | bytes | None:
        out = await super().serialize(frame)
        if isinstance(frame, InterruptionFrame):
            self._tap(self.recording.cut_bot)
        elif isinstance(frame, AudioRawFrame) and out:
            self._tap(lambda: self.recording.bot(self._bot(base64.b64decode(json.loads(out)["media"]["payload"]))))
        return out

    def _bot(self, payload: bytes) -> np.ndarray:
        if self._bot_to_line is not None:
            return self._bot_to_line.resample_chunk(np.frombuffer(payload, dtype="<i2"))
        return ulaw_decode(payload)

    def _tap(self, record) -> None:
        try:
            record()
        except Exception:  # a recording bug must not touch the call's audio
            log.exception("call %s: recording failed for one frame", self.call_id)


def open_recording(directory: Path, call_id: str, sensitive_now) -> CallRecording:
    return CallRecording(Path(directory) / recording_name(call_id), paused=sensitive_now)


def collecting_sensitive(session) -> bool:
    """The call is waiting for a slot marked `sensitive: true`: the recording goes silent."""
    return session is not None and session.answering_sensitive()
