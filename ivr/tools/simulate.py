"""`ivr simulate`: play Twilio for a running server, so a flow can be called without a phone.

It posts the signed voice webhook, follows the TwiML to the media websocket, streams the
caller's audio as 20 ms mu-law frames at real-time pace (silence between turns, as Twilio does),
answers `mark`s, records what the bot says and transcribes it. Latency is taken where a caller
feels it: from the last frame of the caller's speech to the first non-silent frame of the reply.
A spoken step may pause mid-sentence (`<pause 0.4>` in its text); a turn whose reply began
before the caller had finished (in such a pause, or while they went on) was answered too early:
the caller was cut off.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import httpx
import numpy as np

from ivr.speech.audio import FRAME_BYTES, TWILIO_RATE, resample, rms_dbfs, ulaw_decode, ulaw_encode
from ivr.telephony.security import twilio_signature

SPEECH_DBFS = -45.0  # a reply frame louder than this is speech, not line silence
SILENCE_FRAME = b"\xff" * FRAME_BYTES  # mu-law digital silence
JITTER_BUFFER_S = 0.06  # the playout delay a phone network's jitter buffer adds to a talk spurt
SPURT_GAP_S = 0.5  # this long with nothing to play: the bot finished talking, not an underrun


@dataclass(frozen=True)
class Step:
    # "say", "barge" (say it over the bot's prompt), "dtmf", "wav", "pause" (seconds of line
    # silence between turns). A "say"/"barge" text may hold `<pause 0.4>` marks: the caller stops
    # mid-sentence for that many seconds and goes on, all in one turn.
    kind: str
    value: str


_PAUSE_MARK = re.compile(r"<pause\s+(\d+(?:\.\d*)?|\.\d+)\s*>", re.IGNORECASE)
_BROKEN_MARK = re.compile(r"<\s*pause|pause\s*[-+\w.]*\s*>", re.IGNORECASE)  # what is left of a mark that did not parse


def split_pauses(text: str) -> tuple[list[str], list[float]]:
    """The parts of a spoken step's text and the seconds of silence between them:
    "what time do you <pause 0.4> open" -> (["what time do you", "open"], [0.4])."""
    parts, pauses, at = [], [], 0
    for mark in _PAUSE_MARK.finditer(text):
        parts.append(text[at:mark.start()])
        pauses.append(float(mark.group(1)))
        at = mark.end()
    parts.append(text[at:])
    for part in parts:
        if (broken := _BROKEN_MARK.search(part)) is not None:
            raise ValueError(f"malformed pause mark near {part[broken.start():broken.end() + 8]!r} in {text!r}: "
                             "write <pause SECONDS>, e.g. <pause 0.4>")
    if not pauses:
        return [text], []
    parts = [part.strip() for part in parts]
    if not all(parts):
        raise ValueError(f"a pause mark must sit between words, not at either end or next to another: {text!r}")
    return parts, pauses


def join_with_pauses(parts: list[np.ndarray], pauses: list[float],
                     rate: int = TWILIO_RATE) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The parts with `pauses[i]` seconds of digital silence after part i, and for each pause
    the sample where it begins and the one where the next part begins."""
    out: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    at = 0
    for i, part in enumerate(parts):
        if i:
            gap = np.zeros(round(pauses[i - 1] * rate), dtype=np.int16)
            spans.append((at, at + len(gap)))
            out.append(gap)
            at += len(gap)
        out.append(part.astype(np.int16, copy=False))
        at += len(part)
    return (np.concatenate(out) if out else np.zeros(0, dtype=np.int16)), spans


def early_start(utterance_starts: list[float], step_started: float, speech_end: float) -> float | None:
    """When the bot first began to speak after the caller began this turn and before they
    finished it (in a mid-sentence pause, or over the words after one), or None."""
    return next((start for start in sorted(utterance_starts) if step_started < start < speech_end), None)


def answered_early(utterance_starts: list[float], step_started: float, speech_end: float) -> bool:
    """Whether the caller was cut off: the bot spoke up before they had finished the turn."""
    return early_start(utterance_starts, step_started, speech_end) is not None


def pause_before(at: float, pause_spans: list[tuple[float, float]]) -> int | None:
    """The last mid-sentence pause that had begun by `at` (0-based), None if none had: the
    pause the bot answered in, or the one after which it talked over the caller."""
    begun = [i for i, (start, _end) in enumerate(pause_spans) if start <= at]
    return begun[-1] if begun else None


@dataclass
class BotUtterance:
    start: float
    end: float
    samples: list = field(default_factory=list)
    text: str = ""

    def audio(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.zeros(0, dtype=np.int16)


@dataclass
class TurnReport:
    step: Step
    speech_end: float
    first_reply_at: float | None = None
    reply: list[BotUtterance] = field(default_factory=list)
    step_started: float | None = None
    """When the caller's first frame (or key) of this turn went out."""
    pause_spans: list[tuple[float, float]] = field(default_factory=list)
    """(began, ended) on the caller's clock for each mid-sentence pause: the send times of the
    frame that ends one part and of the frame that starts the next."""
    cut_off: bool = False
    """The bot began to speak while the caller was still mid-turn: answered too early."""
    cut_off_at_pause: int | None = None

    @property
    def pauses(self) -> int:
        return len(self.pause_spans)

    @property
    def latency_ms(self) -> float | None:
        if self.first_reply_at is None:
            return None
        return (self.first_reply_at - self.speech_end) * 1000

    @property
    def reply_text(self) -> str:
        return " ".join(u.text for u in self.reply if u.text).strip()


@dataclass
class SimulationReport:
    call_sid: str
    flow: str
    answer_to_first_audio_ms: float | None = None
    greeting: list[BotUtterance] = field(default_factory=list)
    turns: list[TurnReport] = field(default_factory=list)
    clears: int = 0
    closed_by: str = ""
    close_code: int | None = None
    underruns: int = 0
    """Times the bot's audio ran dry mid-speech: a caller would hear it stutter."""
    late_pauses: int = 0
    """Times it ran dry in the voice's own pause (between sentences or prompts): a longer pause."""
    underrun_ms: float = 0.0
    underrun_gaps: list = field(default_factory=list)
    """(seconds into the spurt, gap ms, whether the audio before the gap was speech) for each
    underrun: a gap after speech cuts a word, a gap after the voice's own pause between
    sentences only makes that pause longer."""

    @property
    def greeting_text(self) -> str:
        return " ".join(u.text for u in self.greeting if u.text).strip()

    def to_dict(self) -> dict:
        return {
            "call_sid": self.call_sid,
            "flow": self.flow,
            "answer_to_first_audio_ms": _round(self.answer_to_first_audio_ms),
            "greeting": self.greeting_text,
            "turns": [
                {
                    "caller": f"{t.step.kind}: {t.step.value}",
                    "bot": t.reply_text,
                    "voice_to_voice_ms": _round(t.latency_ms),
                    "pauses": t.pauses,
                    "cut_off": t.cut_off,
                    "cut_off_at_pause": t.cut_off_at_pause,
                }
                for t in self.turns
            ],
            "clears": self.clears,
            "underruns": self.underruns,
            "underrun_ms": round(self.underrun_ms, 1),
            "late_pauses": self.late_pauses,
            "closed_by": self.closed_by,
        }

    def lines(self) -> list[str]:
        out = [f"call {self.call_sid} on flow {self.flow}"]
        out.append(f"  answer -> first bot audio: {_fmt_ms(self.answer_to_first_audio_ms)}")
        out.append(f"  bot    : {self.greeting_text or '(silence)'}")
        for t in self.turns:
            said = t.step.value if t.step.kind == "say" else f"[{t.step.kind} {t.step.value}]"
            out.append(f"  caller : {said}" + (f"    (answered too early{_at_pause(t.cut_off_at_pause)})" if t.cut_off else ""))
            out.append(f"  bot    : {t.reply_text or '(no reply)'}    [voice-to-voice {_fmt_ms(t.latency_ms)}]")
        out.append(f"  call ended by {self.closed_by}" + (f" ({self.clears} barge-in clears)" if self.clears else ""))
        return out


def _round(v):
    return None if v is None else round(v, 1)


def _fmt_ms(v) -> str:
    return "n/a" if v is None else f"{v:.0f} ms"


def _at_pause(index: int | None) -> str:
    return "" if index is None else f", in or after pause {index + 1}"


class CallerSimulator:
    """One simulated call. `voice` turns text into 8 kHz int16 audio; `stt` transcribes replies."""

    def __init__(self, base_url: str, *, voice=None, stt=None, auth_token: str | None = None, flow: str | None = None,
                 caller: str = "+15555550123", called: str = "+15555550100", idle_gap: float = 1.2,
                 reply_timeout: float = 20.0):
        self.base_url = base_url.rstrip("/")
        self.voice = voice
        self.stt = stt
        self.auth_token = auth_token
        self.flow = flow
        self.caller, self.called = caller, called
        self.idle_gap = idle_gap
        self.reply_timeout = reply_timeout
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._utterances: list[BotUtterance] = []
        self._last_speech = 0.0
        self._closed = asyncio.Event()
        self._report: SimulationReport | None = None
        self._sent_start = 0.0
        self._play_at: float | None = None  # when the audio received so far will have played out
        self._spurt_start = 0.0
        self._last_loud = False

    # ------------------------------------------------------------ webhook
    async def _webhook(self, call_sid: str) -> tuple[str, dict[str, str]]:
        url = f"{self.base_url}/twilio/voice" + (f"?flow={self.flow}" if self.flow else "")
        params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": self.caller, "To": self.called,
                  "CallStatus": "ringing", "Direction": "inbound"}
        headers = {}
        if self.auth_token:
            headers["X-Twilio-Signature"] = twilio_signature(self.auth_token, url, params)
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(url, data=params, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:200]}")
        root = ET.fromstring(response.text)
        stream = root.find("./Connect/Stream")
        if stream is None:
            raise RuntimeError(f"webhook did not answer with <Connect><Stream>: {response.text[:300]}")
        parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        return stream.get("url"), parameters

    # ------------------------------------------------------------ run
    async def run(self, steps) -> SimulationReport:
        """`steps`: a list of Steps, or an async function of the report so far that gives the
        next Step (None: hang up), for a caller who answers what the bot said."""
        from websockets.asyncio.client import connect

        call_sid = "CA" + uuid.uuid4().hex
        stream_sid = "MZ" + uuid.uuid4().hex
        ws_url, parameters = await self._webhook(call_sid)
        report = SimulationReport(call_sid=call_sid, flow=parameters.get("flow", ""))
        self._report = report
        async with connect(ws_url, max_size=2**20) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            await ws.send(json.dumps({
                "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                "start": {"streamSid": stream_sid, "callSid": call_sid, "accountSid": "AC" + "0" * 32,
                          "tracks": ["inbound"], "customParameters": parameters,
                          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
            }))
            self._sent_start = time.time()
            receiver = asyncio.create_task(self._receive(ws, report))
            sender = asyncio.create_task(self._send_audio(ws, stream_sid))
            try:
                barge_first = not callable(steps) and bool(steps) and steps[0].kind == "barge"
                await (self._wait_speaking() if barge_first else self._wait_idle(first=True))
                greeting_end = time.time()
                report.greeting = [u for u in self._utterances if u.start <= greeting_end]
                if callable(steps):  # a caller who answers what the bot said: steps(report) -> the next, or None
                    while not self._closed.is_set() and (step := await steps(report)) is not None:
                        report.turns.append(await self._do_step(ws, stream_sid, step))
                for i, step in enumerate(() if callable(steps) else steps):
                    if self._closed.is_set():
                        break
                    if step.kind == "barge" and i > 0:
                        await self._wait_speaking()
                    barge_next = i + 1 < len(steps) and steps[i + 1].kind == "barge"
                    report.turns.append(await self._do_step(ws, stream_sid, step, until_idle=not barge_next))
                if not self._closed.is_set():
                    await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {"callSid": call_sid}}))
                    report.closed_by = "caller"
                else:
                    report.closed_by = "bot"
            finally:
                sender.cancel()
                if report.closed_by == "caller":
                    await ws.close()
                await asyncio.gather(receiver, sender, return_exceptions=True)
        if report.answer_to_first_audio_ms is None and self._utterances:
            report.answer_to_first_audio_ms = (self._utterances[0].start - self._sent_start) * 1000
        await self._transcribe(report)
        return report

    async def _do_step(self, ws, stream_sid: str, step: Step, until_idle: bool = True) -> TurnReport:
        if step.kind == "pause":
            await asyncio.sleep(float(step.value))
            return TurnReport(step, time.time())
        if step.kind == "dtmf":
            step_started = time.time()
            for i, digit in enumerate(step.value):
                if i:
                    await asyncio.sleep(0.15)  # a person's pace between keys
                await ws.send(json.dumps({"event": "dtmf", "streamSid": stream_sid, "dtmf": {"track": "inbound_track", "digit": digit}}))
            speech_end = time.time()  # the last key: the bot may answer within milliseconds
            turn = TurnReport(step, speech_end, step_started=step_started)
        else:
            audio, pause_frames = self._caller_audio(step)
            if not audio:
                raise RuntimeError(f"nothing to send for {step.kind} {step.value!r}")
            last = (len(audio) - 1) // FRAME_BYTES
            times = await self._speak(audio, [0, *(f for pair in pause_frames for f in pair), last])
            spans = list(zip(times[1:-1:2], times[2:-1:2], strict=True))
            turn = TurnReport(step, times[-1], step_started=times[0], pause_spans=spans)
        await self._wait_reply(turn, until_idle)
        return turn

    async def _speak(self, audio: bytes, at_frames: list[int]) -> list[float]:
        """Queue the caller's audio as frames; the time each frame in `at_frames` was sent (taken
        by the sender right after it went out). If the call ends first, the time it ended."""
        loop = asyncio.get_running_loop()
        frames = [audio[i:i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
        sent = {i: loop.create_future() for i in at_frames}
        for i, frame in enumerate(frames):
            self._outgoing.put_nowait((frame, sent[i]) if i in sent else frame)
        # A bot that hangs up mid-turn (say it took "no, that's <pause> all" as goodbye) stops the
        # sender: waiting on its frames alone would wait forever.
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait([asyncio.gather(*sent.values()), closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        now = time.time()
        return [sent[i].result() if sent[i].done() else now for i in at_frames]

    def _caller_audio(self, step: Step) -> tuple[bytes, list[tuple[int, int]]]:
        """The step's audio as mu-law, and for each mid-sentence pause the frame that ends the
        part before it and the frame that starts the part after it."""
        spans: list[tuple[int, int]] = []
        if step.kind == "wav":
            from ivr.speech.audio import read_wav

            samples, rate = read_wav(step.value)
            samples = _trim_silence(resample(samples, rate, TWILIO_RATE))
        else:
            if self.voice is None:
                raise RuntimeError("a caller voice is needed to speak text")
            parts, pauses = split_pauses(step.value)
            spoken = [_trim_silence(np.frombuffer(self.voice.synthesize_sync(p), dtype=np.int16)) for p in parts]
            samples, spans = join_with_pauses(spoken, pauses)
        pad = (-len(samples)) % FRAME_BYTES
        samples = np.concatenate([samples, np.zeros(pad, dtype=np.int16)])
        frames = [(max(began - 1, 0) // FRAME_BYTES, ended // FRAME_BYTES) for began, ended in spans]
        return ulaw_encode(samples), frames

    async def _wait_reply(self, turn: TurnReport, until_idle: bool = True) -> None:
        deadline = time.time() + self.reply_timeout
        while time.time() < deadline and not self._closed.is_set():
            first = next((u for u in self._utterances if u.start > turn.speech_end), None)
            if first is not None:
                turn.first_reply_at = first.start
                break
            await asyncio.sleep(0.02)
        if until_idle:
            await self._wait_idle()
        turn.reply = [u for u in self._utterances if u.start > turn.speech_end]
        if turn.step_started is not None:
            # Counted apart from the reply above: a bot that spoke up in a pause may still answer
            # (again) once the caller has finished, and that answer's latency is still the turn's.
            early = early_start([u.start for u in self._utterances], turn.step_started, turn.speech_end)
            turn.cut_off = early is not None
            turn.cut_off_at_pause = None if early is None else pause_before(early, turn.pause_spans)

    async def _wait_speaking(self, into: float = 0.6) -> None:
        """Until the bot has been talking for `into` seconds: the moment to talk over it."""
        deadline = time.time() + self.reply_timeout
        while time.time() < deadline and not self._closed.is_set():
            current = self._utterances[-1] if self._utterances else None
            if current is not None and time.time() - self._last_speech < 0.1 and time.time() - current.start >= into:
                return
            await asyncio.sleep(0.02)

    async def _wait_idle(self, first: bool = False) -> None:
        """Until the bot has said something (if `first`) and then kept quiet for `idle_gap`."""
        deadline = time.time() + self.reply_timeout
        while time.time() < deadline and not self._closed.is_set():
            now = time.time()
            spoke = bool(self._utterances)
            if (spoke or not first) and now - max(self._last_speech, self._sent_start) >= self.idle_gap:
                return
            await asyncio.sleep(0.05)

    async def _send_audio(self, ws, stream_sid: str) -> None:
        """20 ms frames at real-time pace, forever: the caller's speech when queued, else silence."""
        seq, next_at, chunk = 0, time.perf_counter(), 0
        while not self._closed.is_set():
            item = SILENCE_FRAME if self._outgoing.empty() else self._outgoing.get_nowait()
            frame, done = item if isinstance(item, tuple) else (item, None)
            seq += 1
            chunk += 1
            try:
                await ws.send(json.dumps({
                    "event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid,
                    "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                              "payload": base64.b64encode(frame).decode()},
                }))
            except Exception:
                return
            if done is not None and not done.done():
                done.set_result(time.time())
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def _receive(self, ws, report: SimulationReport) -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                event = message.get("event")
                if event == "media":
                    now = time.time()
                    payload = base64.b64decode(message["media"]["payload"])
                    self._play_out(now, len(payload) / TWILIO_RATE, report)
                    samples = ulaw_decode(payload)
                    self._last_loud = loud = rms_dbfs(samples) > SPEECH_DBFS
                    if loud:
                        if not self._utterances or now - self._last_speech > self.idle_gap * 0.6:
                            self._utterances.append(BotUtterance(now, now))
                            if report.answer_to_first_audio_ms is None:
                                report.answer_to_first_audio_ms = (now - self._sent_start) * 1000
                        self._last_speech = now
                        self._utterances[-1].end = now
                    if self._utterances and now - self._last_speech < self.idle_gap * 0.6:
                        self._utterances[-1].samples.append(samples)
                elif event == "mark":
                    # Twilio echoes a mark once the audio before it has played; we play in real time.
                    await ws.send(json.dumps({"event": "mark", "streamSid": message.get("streamSid"), "mark": message.get("mark")}))
                elif event == "clear":
                    report.clears += 1
                    self._play_at = None  # Twilio drops what it had buffered
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            report.close_code = code
        finally:
            report.close_code = report.close_code or getattr(ws, "close_code", None)
            self._closed.set()

    def _play_out(self, now: float, seconds: float, report: SimulationReport) -> None:
        """Play the bot's audio the way the phone network does: a short jitter buffer at the
        start of each talk spurt, then real time. Audio that arrives after the buffer ran dry
        mid-spurt while the voice was speaking is an underrun (the server fell behind its
        pacing, and a word is cut); after the voice's own pause it is a late pause (the pause
        between two sentences or prompts is heard a little longer)."""
        if self._play_at is None or now - self._play_at > SPURT_GAP_S:
            self._play_at = now + JITTER_BUFFER_S
            self._spurt_start = now
        elif now > self._play_at:
            if self._last_loud:
                report.underruns += 1
                report.underrun_ms += (now - self._play_at) * 1000
            else:
                report.late_pauses += 1
            report.underrun_gaps.append((round(now - self._spurt_start, 2), round((now - self._play_at) * 1000),
                                         self._last_loud))
            self._play_at = now + JITTER_BUFFER_S
        self._play_at += seconds

    async def _transcribe(self, report: SimulationReport) -> None:
        if self.stt is None:
            return
        for utterance in self._utterances:
            audio = resample(utterance.audio(), TWILIO_RATE, 16000)
            if audio.size:
                utterance.text = (await asyncio.to_thread(self.stt.transcribe_sync, audio)).text


def _trim_silence(samples: np.ndarray, frame: int = 160, threshold_dbfs: float = -50.0) -> np.ndarray:
    """Drop leading/trailing silence so 'end of speech' is when the words end."""
    n = len(samples) // frame
    if n == 0:
        return samples
    loud = [i for i in range(n) if rms_dbfs(samples[i * frame:(i + 1) * frame]) > threshold_dbfs]
    if not loud:
        return samples
    return samples[loud[0] * frame:(loud[-1] + 1) * frame]
