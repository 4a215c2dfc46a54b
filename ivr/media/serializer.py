"""Twilio Media Streams <-> pipecat frames, hardened against bad input.

Pipecat's TwilioFrameSerializer raises on a bad base64 payload, which ends the transport's
receive loop and with it the call; it also drops `mark` and `stop`. This subclass turns every
malformed message into one clear log line and carries on, and passes `mark`/`stop` on as
transport messages so the dialog layer can track playback and end the call cleanly.

The dashboard's browser calls speak the same protocol (ivr/serving/browser_routes.py), so they
enter the same pipeline; with `wideband` their `media` payloads, both ways, are 16 kHz 16-bit
little-endian PCM instead of 8 kHz mu-law.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging

import numpy as np
from pipecat.frames.frames import AudioRawFrame, Frame, InputAudioRawFrame, InputTransportMessageFrame
from pipecat.serializers.twilio import TwilioFrameSerializer

from ivr.speech.audio import resample
from ivr.telephony.guard import MAX_MESSAGE_BYTES  # uvicorn closes a socket over it (1009); this is for other servers

log = logging.getLogger("ivr.media")

KNOWN_EVENTS = {"connected", "start", "media", "dtmf", "mark", "stop"}
WIDEBAND_RATE = 16000  # a wideband browser call's audio: whisper's own rate, so never resampled


def heard_on_the_line(ulaw: bytes, out_rate: int) -> bytes:
    """8 kHz mu-law as a call's pipeline hears it: decoded and resampled by the serializer's own
    path, 20 ms at a time (`ivr bench digits` compares it with its own resampling)."""
    import asyncio

    from pipecat.audio.resamplers.soxr_stream_resampler import SOXRStreamAudioResampler
    from pipecat.audio.utils import ulaw_to_pcm

    resampler = SOXRStreamAudioResampler(clear_after_secs=None)

    async def run() -> bytes:
        out = bytearray()
        for i in range(0, len(ulaw), 160):
            out += await ulaw_to_pcm(ulaw[i:i + 160], 8000, out_rate, resampler) or b""
        return bytes(out)

    return asyncio.run(run())


class SafeTwilioSerializer(TwilioFrameSerializer):
    def __init__(self, stream_sid: str, call_sid: str | None = None, *, call_id: str = "", wideband: bool = False):
        super().__init__(
            stream_sid,
            call_sid=call_sid,
            # Twilio sends a frame every 20 ms, silence included: a gap means this server's loop
            # stalled (whisper busy on both cores), not a new stream, and clearing the stream
            # resampler then (pipecat's default, after 0.2 s) throws away the audio it holds.
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False, resampler_clear_after_secs=None),
        )
        self.call_id = call_id or call_sid or stream_sid
        self.wideband = wideband
        self.rejected = 0

    def _reject(self, why: str, data) -> None:
        self.rejected += 1
        preview = data[:80] if isinstance(data, (str, bytes)) else repr(data)[:80]
        log.warning("call %s: dropped media-stream message: %s (%r)", self.call_id, why, preview)

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if len(data) > MAX_MESSAGE_BYTES:
            self._reject(f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES} limit", data)
            return None
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            self._reject("not JSON", data)
            return None
        if not isinstance(message, dict):
            self._reject("not a JSON object", data)
            return None
        event = message.get("event")
        if not isinstance(event, str) or event not in KNOWN_EVENTS:
            self._reject(f"unknown event {event!r}", data)
            return None
        if event == "media":
            body = message.get("media")
            payload = body.get("payload") if isinstance(body, dict) else None
            if not isinstance(payload, str):
                self._reject("media event without a payload", data)
                return None
            try:
                audio = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                self._reject("media payload is not valid base64", data)
                return None
            if self.wideband:
                return self._wideband(audio, data)
            try:
                return await super().deserialize(data)
            except Exception as exc:
                self._reject(f"media payload could not be decoded ({exc})", data)
                return None
        if event == "dtmf":
            body = message.get("dtmf")
            digit = body.get("digit") if isinstance(body, dict) else None
            if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#":
                self._reject(f"DTMF digit {digit!r} is not a keypad key", data)
                return None
            return await super().deserialize(data)
        if event in ("mark", "stop"):
            return InputTransportMessageFrame(message=message)
        if event == "start":
            self._reject("second `start` on a running stream", data)
        return None  # `connected`: nothing to do

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if self.wideband and isinstance(frame, AudioRawFrame):
            return self._wideband_out(frame)
        return await super().serialize(frame)

    def _wideband_out(self, frame: AudioRawFrame) -> str | None:
        audio = frame.audio
        if frame.sample_rate != WIDEBAND_RATE:  # the pipeline speaks at 16 kHz on a wideband call; anything else is converted
            audio = resample(np.frombuffer(audio, dtype="<i2"), frame.sample_rate, WIDEBAND_RATE).astype("<i2").tobytes()
        if not audio:
            return None
        return json.dumps({"event": "media", "streamSid": self._stream_sid,
                           "media": {"payload": base64.b64encode(audio).decode("ascii")}})

    def _wideband(self, audio: bytes, data) -> Frame | None:
        if len(audio) % 2:
            self._reject("wideband media payload is not whole 16-bit samples", data)
            return None
        if not audio:
            return None
        if self._sample_rate != WIDEBAND_RATE:  # the pipeline always runs at 16 kHz in; say so if not
            self._reject(f"wideband audio is {WIDEBAND_RATE} Hz, the pipeline takes {self._sample_rate} Hz", data)
            return None
        return InputAudioRawFrame(audio=audio, num_channels=1, sample_rate=WIDEBAND_RATE)
