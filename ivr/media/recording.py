"""Call recording: both legs of a call in one stereo WAV (left = caller, right = bot), 8 kHz 16-bit.

The media layer hands a `CallRecording` the caller's audio as it arrives and the bot's audio as
it is sent to Twilio, on the event loop; the recording only places samples on a timeline in
memory. Every second the settled part of the timeline (older than `SETTLE_S`, so nothing can
still land there) is interleaved and handed to one process-wide writer thread, so neither the
audio path nor the event loop ever waits on the disk, and a long call holds about a second of
audio in memory rather than all of it.

Alignment: each leg is written at max(its own cursor, the wall-clock moment it was seen). The
caller's frames arrive at real-time pace, so they line up with the clock; the bot's audio is sent
faster than real time and Twilio buffers and plays it back to back, so it is laid end to end from
when it was sent. A barge-in's `clear` makes Twilio drop what it has buffered: `cut_bot` removes
the bot audio placed after that moment, so the file holds what the caller actually heard.

Retention: `purge_recordings` deletes files older than the configured days (run at start-up and
daily by the app).
"""

from __future__ import annotations

import atexit
import logging
import queue
import re
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger("ivr.media.recording")

RATE = 8000
CHANNELS = 2
SETTLE_S = 0.5
FLUSH_EVERY_S = 1.0
CALLER, BOT = 0, 1
PART_SUFFIX = ".part"


def recording_name(call_id: str) -> str:
    """A file name for a call: call ids come from the network, so only safe characters survive."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", call_id)[:120] or "call"
    return f"{safe}.wav"


def wav_header(data_bytes: int) -> bytes:
    block = CHANNELS * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


class RecordingWriter:
    """One thread that owns every open recording file: appends chunks, then fixes the header and
    renames `<name>.wav.part` to `<name>.wav` when the call is finished."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ivr-recording-writer", daemon=True)
        self._thread.start()

    def open(self, path: Path) -> None:
        self._queue.put(("open", path, None))

    def append(self, path: Path, data: bytes) -> None:
        self._queue.put(("data", path, data))

    def close(self, path: Path, done: Callable[[Path | None], None] | None = None) -> None:
        self._queue.put(("close", path, done))

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is on disk (tests, shutdown)."""
        event = threading.Event()
        self._queue.put(("sync", None, event))
        return event.wait(timeout)

    def _run(self) -> None:
        files: dict[Path, tuple] = {}
        while True:
            op, path, arg = self._queue.get()
            try:
                if op == "sync":
                    arg.set()
                elif op == "open":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fh = open(path.with_name(path.name + PART_SUFFIX), "wb")
                    fh.write(wav_header(0))
                    files[path] = (fh, [0])
                elif op == "data" and path in files:
                    fh, size = files[path]
                    fh.write(arg)
                    size[0] += len(arg)
                elif op == "close":
                    entry = files.pop(path, None)
                    final = None
                    if entry is not None:
                        fh, size = entry
                        fh.seek(0)
                        fh.write(wav_header(size[0]))
                        fh.close()
                        path.with_name(path.name + PART_SUFFIX).replace(path)
                        final = path
                    if arg is not None:
                        arg(final)
            except Exception:
                # A full disk loses this recording, never the call: drop the file and go on.
                log.exception("recording %s: %s failed; the recording is incomplete", path, op)
                entry = files.pop(path, None) if path is not None else None
                if entry is not None:
                    try:
                        entry[0].close()
                    except OSError:
                        pass


_WRITER: RecordingWriter | None = None
_WRITER_LOCK = threading.Lock()


def shared_writer() -> RecordingWriter:
    global _WRITER
    with _WRITER_LOCK:
        if _WRITER is None:
            _WRITER = RecordingWriter()
            atexit.register(_WRITER.drain, 5.0)
        return _WRITER


class _Leg:
    """One channel's samples from `start` (the first sample not yet written) onwards."""

    def __init__(self):
        self.buf = np.zeros(RATE * 4, dtype=np.int16)
        self.start = 0
        self.end = 0  # one past the last sample placed (absolute index)

    def place(self, pos: int, samples: np.ndarray) -> None:
        pos = max(pos, self.start)
        need = pos + len(samples) - self.start
        if need > len(self.buf):
            grown = np.zeros(max(need, 2 * len(self.buf)), dtype=np.int16)
            grown[: self.end - self.start] = self.buf[: self.end - self.start]
            self.buf = grown
        if pos > self.end:
            self.buf[self.end - self.start: pos - self.start] = 0
        self.buf[pos - self.start: pos - self.start + len(samples)] = samples
        self.end = max(self.end, pos + len(samples))

    def cut(self, pos: int) -> None:
        if pos < self.end:
            self.end = max(pos, self.start)

    def take(self, upto: int) -> np.ndarray:
        """Samples [start, upto) with silence where nothing was placed; then forget them."""
        n = upto - self.start
        out = np.zeros(n, dtype=np.int16)
        have = min(max(self.end - self.start, 0), n)
        out[:have] = self.buf[:have]
        kept = max(self.end - upto, 0)
        self.buf[:kept] = self.buf[n: n + kept]
        self.start = upto
        self.end = max(self.end, upto)
        return out


@dataclass(frozen=True)
class RecordingInfo:
    file: str
    duration_s: float
    paused_s: float
    started_at: float = 0.0
    """Epoch seconds at the file's first sample: where a turn's words are in it (the review
    page's snippets)."""


class CallRecording:
    """One call's two legs on a shared timeline. Methods are called from one thread (the event
    loop); `at` is a `clock()` reading, defaulting to now."""

    def __init__(self, path: Path, *, writer: RecordingWriter | None = None, clock: Callable[[], float] = time.monotonic,
                 paused: Callable[[], bool] = lambda: False):
        self.path = Path(path)
        self._writer = writer or shared_writer()
        self._clock = clock
        self._paused = paused
        self.t0 = clock()
        self.started_at = time.time()
        self._legs = (_Leg(), _Leg())
        self._cursor = [0, 0]
        self._written = 0
        self._paused_samples = 0
        self._last_flush = self.t0
        self._finished: RecordingInfo | None = None
        self._writer.open(self.path)

    def _index(self, at: float | None) -> int:
        return max(int(round(((self._clock() if at is None else at) - self.t0) * RATE)), 0)

    def _place(self, leg: int, samples: np.ndarray, at: float | None) -> None:
        if self._finished is not None or not len(samples):
            return
        samples = np.asarray(samples, dtype=np.int16)
        if self._paused():
            # Keep the timeline, lose the words: a sensitive answer is being collected.
            self._paused_samples += len(samples) if leg == CALLER else 0
            samples = np.zeros_like(samples)
        pos = max(self._cursor[leg], self._index(at), self._written)
        self._legs[leg].place(pos, samples)
        self._cursor[leg] = pos + len(samples)
        now = self._clock() if at is None else at
        if now - self._last_flush >= FLUSH_EVERY_S:
            self._last_flush = now
            self._flush(self._index(now) - int(SETTLE_S * RATE))

    def caller(self, samples: np.ndarray, at: float | None = None) -> None:
        """The caller's audio (8 kHz int16) as it arrived."""
        self._place(CALLER, samples, at)

    def bot(self, samples: np.ndarray, at: float | None = None) -> None:
        """The bot's audio (8 kHz int16) as it was sent to Twilio."""
        self._place(BOT, samples, at)

    def cut_bot(self, at: float | None = None) -> None:
        """Twilio was told to `clear`: bot audio after this moment was never played."""
        pos = max(self._index(at), self._written)
        self._legs[BOT].cut(pos)
        self._cursor[BOT] = min(self._cursor[BOT], pos)

    def _flush(self, upto: int) -> None:
        if upto <= self._written:
            return
        stereo = np.empty((upto - self._written, CHANNELS), dtype="<i2")
        stereo[:, CALLER] = self._legs[CALLER].take(upto)
        stereo[:, BOT] = self._legs[BOT].take(upto)
        self._written = upto
        self._writer.append(self.path, stereo.tobytes())

    def finish(self, done: Callable[[Path | None], None] | None = None) -> RecordingInfo:
        """Write what is left and close the file (in the writer thread). Idempotent."""
        if self._finished is None:
            self._flush(max(self._cursor[CALLER], self._cursor[BOT], self._written))
            self._finished = RecordingInfo(self.path.name, round(self._written / RATE, 2),
                                           round(self._paused_samples / RATE, 2), round(self.started_at, 3))
            self._writer.close(self.path, done)
        return self._finished


def purge_recordings(directory: Path, days: int, now: float | None = None) -> int:
    """Delete recordings (and abandoned partial files) older than `days`; 0 keeps everything."""
    if days <= 0 or not Path(directory).is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - days * 86400
    removed = 0
    for path in Path(directory).iterdir():
        if not (path.name.endswith(".wav") or path.name.endswith(".wav" + PART_SUFFIX)):
            continue
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError as exc:
            log.warning("recording retention: cannot delete %s: %s", path, exc)
    if removed:
        log.info("recording retention: deleted %d recording(s) older than %d days from %s", removed, days, directory)
    return removed


async def retention_loop(directory: Path, days: int, every_s: float = 86400.0) -> None:
    """Apply the retention at start-up and then daily, off the event loop."""
    import asyncio

    while True:
        try:
            await asyncio.to_thread(purge_recordings, directory, days)
        except Exception:
            log.exception("recording retention failed; will retry in %.0f s", every_s)
        await asyncio.sleep(every_s)
