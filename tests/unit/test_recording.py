"""Call recording: both legs time-aligned in one stereo WAV, barge-in cuts, sensitive pauses,
retention, and a whole in-process call through the real pipeline writing its file."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import wave

import numpy as np
import pytest

from ivr.media.recording import RATE, CallRecording, RecordingWriter, purge_recordings, recording_name
from ivr.speech.audio import ulaw_decode, ulaw_encode

FRAME = RATE // 50  # 20 ms


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def read_stereo(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, RATE, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)


def loud(channel: np.ndarray, start_s: float, end_s: float) -> float:
    """Share of 20 ms frames in [start, end) that carry sound."""
    seg = channel[int(start_s * RATE): int(end_s * RATE)]
    frames = seg[: len(seg) // FRAME * FRAME].reshape(-1, FRAME)
    return float((np.abs(frames).max(axis=1) > 100).mean()) if len(frames) else 0.0


def caller_frames(rec, clock, seconds, speech=lambda t: False):
    """Real-time caller frames: a tone while `speech(t)`, line silence otherwise."""
    tone = (3000 * np.sin(np.arange(FRAME) * 2 * np.pi * 440 / RATE)).astype(np.int16)
    for _ in range(int(round(seconds * 50))):
        rec.caller(tone if speech(clock.now - rec.t0) else np.zeros(FRAME, np.int16))
        clock.now += 0.02


@pytest.fixture
def writer():
    return RecordingWriter()


def test_bot_audio_sent_in_a_burst_plays_end_to_end_from_when_it_was_sent(tmp_path, writer):
    clock = Clock()
    rec = CallRecording(tmp_path / "a.wav", writer=writer, clock=clock)
    caller_frames(rec, clock, 1.0)
    # At t=1.0 the bot sends 2 s of audio at once (pipecat sends faster than real time).
    bot = np.full(2 * RATE, 2000, np.int16)
    for i in range(0, len(bot), 800):
        rec.bot(bot[i:i + 800])
    caller_frames(rec, clock, 3.0, speech=lambda t: 3.5 <= t < 3.9)
    info = rec.finish()
    assert writer.drain()
    audio = read_stereo(tmp_path / "a.wav")
    assert info.file == "a.wav" and info.duration_s == pytest.approx(4.0, abs=0.05)
    assert len(audio) == pytest.approx(4 * RATE, abs=FRAME)
    left, right = audio[:, 0], audio[:, 1]
    assert loud(right, 0.0, 0.98) == 0 and loud(right, 1.02, 2.98) == 1 and loud(right, 3.02, 4.0) == 0
    assert loud(left, 0.0, 3.48) == 0 and loud(left, 3.52, 3.88) == 1 and loud(left, 3.92, 4.0) == 0
    assert not (tmp_path / "a.wav.part").exists()


def test_barge_in_cuts_the_bot_audio_twilio_dropped(tmp_path, writer):
    clock = Clock()
    rec = CallRecording(tmp_path / "b.wav", writer=writer, clock=clock)
    caller_frames(rec, clock, 0.5)
    rec.bot(np.full(3 * RATE, 2000, np.int16))  # 3 s sent at t=0.5, buffered by Twilio
    caller_frames(rec, clock, 1.0, speech=lambda t: t >= 1.2)  # caller talks over it
    rec.cut_bot()  # `clear` at t=1.5
    rec.bot(np.full(RATE // 2, 1500, np.int16))  # the next prompt, right after
    caller_frames(rec, clock, 1.5)
    rec.finish()
    writer.drain()
    right = read_stereo(tmp_path / "b.wav")[:, 1]
    assert loud(right, 0.52, 1.48) == 1
    assert loud(right, 1.52, 1.98) == 1 and np.abs(right[int(1.52 * RATE):int(1.98 * RATE)]).max() == 1500
    assert loud(right, 2.02, 3.5) == 0  # the rest of the first prompt was never heard


def test_sensitive_collect_is_silent_in_both_legs_and_timing_is_kept(tmp_path, writer):
    clock = Clock()
    paused = {"on": False}
    rec = CallRecording(tmp_path / "c.wav", writer=writer, clock=clock, paused=lambda: paused["on"])
    caller_frames(rec, clock, 1.0, speech=lambda t: True)
    paused["on"] = True
    rec.bot(np.full(RATE // 2, 2000, np.int16))
    caller_frames(rec, clock, 1.0, speech=lambda t: True)
    paused["on"] = False
    caller_frames(rec, clock, 1.0, speech=lambda t: True)
    info = rec.finish()
    writer.drain()
    audio = read_stereo(tmp_path / "c.wav")
    assert info.paused_s == pytest.approx(1.0, abs=0.05)
    assert loud(audio[:, 0], 0, 0.98) == 1 and loud(audio[:, 0], 1.02, 1.98) == 0 and loud(audio[:, 0], 2.02, 3.0) == 1
    assert loud(audio[:, 1], 0, 3.0) == 0
    assert len(audio) == pytest.approx(3 * RATE, abs=FRAME)


def test_long_call_is_written_as_it_goes(tmp_path, writer):
    clock = Clock()
    rec = CallRecording(tmp_path / "d.wav", writer=writer, clock=clock)
    caller_frames(rec, clock, 5.0, speech=lambda t: True)
    writer.drain()
    part = tmp_path / "d.wav.part"
    assert part.stat().st_size > 44 + 3 * RATE * 4  # more than 3 s of 5 are on disk before the end
    assert rec._legs[0].end - rec._legs[0].start < 2 * RATE  # and out of memory
    rec.finish()
    rec.finish()  # idempotent
    writer.drain()
    assert len(read_stereo(tmp_path / "d.wav")) == pytest.approx(5 * RATE, abs=FRAME)


def test_recording_names_are_safe():
    assert recording_name("CA0123abc") == "CA0123abc.wav"
    assert recording_name("../../etc/passwd") == "______etc_passwd.wav"


def test_retention_deletes_old_recordings_only(tmp_path):
    old, new, other, part = (tmp_path / n for n in ("old.wav", "new.wav", "notes.txt", "x.wav.part"))
    for p in (old, new, other, part):
        p.write_bytes(b"x")
    month_ago = time.time() - 31 * 86400
    for p in (old, other, part):
        os.utime(p, (month_ago, month_ago))
    assert purge_recordings(tmp_path, 30) == 2
    assert not old.exists() and not part.exists() and new.exists() and other.exists()
    assert purge_recordings(tmp_path, 0) == 0 and new.exists()
    assert purge_recordings(tmp_path / "missing", 30) == 0


async def test_serializer_taps_both_legs_and_clear(tmp_path, writer):
    from pipecat.frames.frames import InterruptionFrame, OutputAudioRawFrame, StartFrame

    from ivr.media.recording_tap import RecordingSerializer

    clock = Clock()
    rec = CallRecording(tmp_path / "e.wav", writer=writer, clock=clock)
    ser = RecordingSerializer("MZ1", "CA1", recording=rec)
    await ser.setup(StartFrame(audio_in_sample_rate=16000, audio_out_sample_rate=8000))
    tone = (3000 * np.sin(np.arange(FRAME) * 0.3)).astype(np.int16)
    message = json.dumps({"event": "media", "streamSid": "MZ1",
                          "media": {"payload": base64.b64encode(ulaw_encode(tone)).decode()}})
    frames = [await ser.deserialize(message) for _ in range(10)]
    assert any(f is not None and f.sample_rate == 16000 for f in frames)  # the pipeline still gets its audio
    clock.now += 0.2
    out = await ser.serialize(OutputAudioRawFrame(audio=np.full(RATE, 2000, np.int16).tobytes(), sample_rate=8000,
                                                  num_channels=1))
    assert json.loads(out)["event"] == "media"
    clock.now += 0.3
    assert json.loads(await ser.serialize(InterruptionFrame()))["event"] == "clear"
    rec.finish()
    writer.drain()
    audio = read_stereo(tmp_path / "e.wav")
    assert np.array_equal(audio[:10 * FRAME, 0], np.tile(ulaw_decode(ulaw_encode(tone)), 10))
    assert loud(audio[:, 1], 0, 0.18) == 0 and loud(audio[:, 1], 0.22, 0.48) == 1
    assert len(audio) == pytest.approx(0.5 * RATE, abs=FRAME)  # cut by the clear


async def test_a_wideband_call_is_recorded_at_the_lines_8_khz_both_ways(tmp_path, writer):
    from pipecat.frames.frames import OutputAudioRawFrame, StartFrame

    from ivr.media.recording_tap import RecordingSerializer

    clock = Clock()
    rec = CallRecording(tmp_path / "w.wav", writer=writer, clock=clock)
    ser = RecordingSerializer("MZ1", "BR1", recording=rec, wideband=True)
    await ser.setup(StartFrame(audio_in_sample_rate=16000, audio_out_sample_rate=16000))
    caller = (3000 * np.sin(2 * np.pi * 300 * np.arange(320 * 25) / 16000)).astype("<i2")  # 0.5 s, 300 Hz
    for i in range(25):
        message = json.dumps({"event": "media", "streamSid": "MZ1",
                              "media": {"payload": base64.b64encode(caller[320 * i:320 * (i + 1)].tobytes()).decode()}})
        assert (await ser.deserialize(message)).sample_rate == 16000
    clock.now += 0.5
    bot = (3000 * np.sin(2 * np.pi * 500 * np.arange(8000) / 16000)).astype("<i2")  # 0.5 s, 500 Hz
    out = json.loads(await ser.serialize(OutputAudioRawFrame(audio=bot.tobytes(), sample_rate=16000, num_channels=1)))
    assert base64.b64decode(out["media"]["payload"]) == bot.tobytes()  # the page gets 16 kHz
    rec.finish()
    writer.drain()
    audio = read_stereo(tmp_path / "w.wav")  # 8 kHz stereo, as a phone call's

    def pitch(channel: np.ndarray) -> float:  # the strongest frequency: the tone at its own pitch, not doubled or halved
        spectrum = np.abs(np.fft.rfft(channel.astype(float)))
        return float(np.fft.rfftfreq(len(channel), 1 / RATE)[np.argmax(spectrum)])

    assert np.abs(audio[:, 0]).max() > 2000 and np.abs(audio[:, 1]).max() > 2000
    assert pitch(audio[:, 0]) == pytest.approx(300, abs=5) and pitch(audio[:, 1]) == pytest.approx(500, abs=5)


def test_a_whole_call_is_recorded_with_its_event(tmp_path):
    from tests.unit.test_media_protocol import hang_up, make_client, media, receive_until, start_msg
    from ivr.calllog.store import CallStore

    store = CallStore(tmp_path / "calls.sqlite3")
    try:
        client, runtime = make_client(store, recording=True, recording_dir=tmp_path / "rec")
        with client, client.websocket_connect("/twilio/media") as ws:
            ws.send_text(start_msg())
            receive_until(ws, "media")  # the greeting is playing
            for _ in range(50):
                ws.send_text(media(ulaw_encode(np.full(FRAME, 2000, np.int16))))
            hang_up(ws)
        store.flush()
        call = store.get_call("CA123")
        event = next(e["data"] for e in call["events"] if e["type"] == "recording")
        assert event["file"] == "CA123.wav" and event["duration_s"] > 0.2
        from ivr.media.recording import shared_writer

        assert shared_writer().drain()
        audio = read_stereo(tmp_path / "rec" / "CA123.wav")
        assert np.abs(audio[:, 0]).max() > 1000 and np.abs(audio[:, 1]).max() > 100
    finally:
        store.close()


def test_sensitive_collect_is_silenced_on_a_real_call(tmp_path):
    """Bank flow: key 1 -> the account-number collect (sensitive); what the caller says there
    never reaches the file, what they said before does."""
    from tests.unit.test_media_protocol import dtmf, hang_up, make_client, media, receive_until, start_msg, wait_for
    from ivr.calllog.store import CallStore
    from ivr.media.recording import shared_writer

    store = CallStore(tmp_path / "calls.sqlite3")
    tone = ulaw_encode((3000 * np.sin(np.arange(FRAME) * 0.3)).astype(np.int16))
    try:
        client, runtime = make_client(store, recording=True, recording_dir=tmp_path / "rec")
        with client, client.websocket_connect("/twilio/media") as ws:
            ws.send_text(start_msg(flow="bank"))
            receive_until(ws, "media")
            for _ in range(25):
                ws.send_text(media(tone))
            ws.send_text(dtmf("1"))
            session = runtime.active_calls["CA123"]["session"]
            assert wait_for(lambda: session.expectation is not None and session.expectation.slot == "account_number")
            for _ in range(25):
                ws.send_text(media(tone))
            hang_up(ws)  # after the frames: the transport reads (and records) them in order
        store.flush()
        event = next(e["data"] for e in store.get_call("CA123")["events"] if e["type"] == "recording")
        assert event["paused_s"] == pytest.approx(0.5, abs=0.05)
        assert shared_writer().drain()
        left = read_stereo(tmp_path / "rec" / "CA123.wav")[:, 0]
        heard = np.abs(left.astype(np.int64)).sum()
        assert heard == 25 * np.abs(ulaw_decode(tone).astype(np.int64)).sum()  # only the frames before the collect
    finally:
        store.close()
