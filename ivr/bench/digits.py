"""Numbers read aloud by real people: where the digits are lost, stage by stage, and what the
line's own recovery gets back.

    .venv/bin/python -m ivr.bench.digits [--cases 60] [--length 6] [--seed 0] [--control] [--live]
        [--read-back unsure|always|never] [--levers no_hold,...] [--errors]

Data: the Free Spoken Digit Dataset's recordings ($IVR_FSDD, else shared/data/fsdd_dev in the
folder that holds the repository): real people saying one digit a take, 8 kHz. A case strings
one speaker's takes into a number the way people read one: a digit at a time with 0.1-0.4 s
between them, or in groups ("four five seven, two nine one"; four groups of four for a card)
with a longer pause between groups. The recordings have no "oh" or "double five"; those
readings are the parser's (tests/unit/test_slots.py). `--control` reads the same numbers with
the embedded piper voice.

Each case goes the way a call's audio goes (ivr/media/pipeline.py, with the server's defaults):
G.711 mu-law and back, 16 kHz, the Silero VAD with the live stop window, the digit node's
end-of-turn rule (`IVR_VAD_STOP_SECS_LONG`, held to `IVR_VAD_STOP_SECS_NUMBER` while the words
so far are the start of the number, and then heard again with the silence after it), whisper
with the node's prompt and the full window, the noise filter, and the flow engine's own node
for the number (ivr/dialog/number_reading.py). Columns, as shares of the cases, each stage
given the ones before it right:

  one turn      the VAD and the end-of-turn rule kept the number in one turn (not split, not lost)
  whisper       whisper on the whole recording (segmentation aside) heard the digits, before the
                noise filter
  kept          ... and the noise filter kept them
  first try     the first turn, transcribed and filtered, parsed as exactly the number (a
                partial or a wrong number is a miss)
  after recovery  the number the line kept within two more caller turns is the one read: the
                caller reads the rest when asked what comes next and the start was right (else
                the whole number), answers a read-back truly, reads it all again when re-asked
  keying when offered  ... had the caller keyed the number on the turn after the keypad offer
  wrong kept    the line kept a number that was not the one read (the costly miss)

and the losses of the first try by the first stage that failed: split (the turn ended inside the
number), cut (whisper hears the whole recording right but not the turn as cut), filter (whisper
heard it, the filter dropped a segment), whisper (misheard), parser (the digits were written,
the parser refused them). `--live` also calls a real `ivr serve` over the Twilio protocol with
the same readings in real time, one call at a time, the caller answering what the line said
(read from its call log), and reports the same outcomes and the digit turns' voice to voice.
The lever `no_hold` is the end-of-turn rule before the hold and the second hearing.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEAKERS = ("jackson", "nicolas", "theo")
#: The prompt digit nodes had until this benchmark showed it cost digits (a lever to compare).
DIGIT_PROMPT = "1234 5678 90"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def data_dir() -> Path:
    env = os.environ.get("IVR_FSDD")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data" / "fsdd_dev")


@dataclass(frozen=True)
class Case:
    digits: str
    speaker: str
    style: str  # "single" or "grouped"
    groups: tuple[int, ...]


def groups_for(length: int) -> tuple[int, ...]:
    """How people group a number of this length: 3-3 (six), 3-3-4 (phone), 4-4-4-4 (card)."""
    return {6: (3, 3), 10: (3, 3, 4), 11: (1, 3, 3, 4), 16: (4, 4, 4, 4)}.get(length, (length,))


def make_cases(n: int, length: int, rng: random.Random) -> list[Case]:
    out = []
    for i in range(n):
        digits = "".join(rng.choice("0123456789") for _ in range(length))
        style = "grouped" if (i % 2 or length > 10) else "single"
        out.append(Case(digits, SPEAKERS[i % len(SPEAKERS)], style, groups_for(length)))
    return out


def recorded(case: Case, rng: random.Random, takes: Path) -> np.ndarray:
    """The case as 8 kHz int16: the speaker's takes with the pauses a reader leaves."""
    from ivr.speech.audio import read_wav

    parts = [np.zeros(int(0.4 * 8000), dtype=np.int16)]
    ends = np.cumsum(case.groups)
    for k, d in enumerate(case.digits):
        audio, rate = read_wav(str(takes / f"{d}_{case.speaker}_{rng.randrange(50)}.wav"))
        assert rate == 8000, rate
        parts.append(audio.astype(np.int16))
        if k + 1 < len(case.digits):
            if case.style == "grouped" and (k + 1) in ends:
                gap = rng.uniform(0.5, 0.8)
            elif case.style == "grouped":
                gap = rng.uniform(0.05, 0.2)
            else:
                gap = rng.uniform(0.1, 0.4)
            parts.append(np.zeros(int(gap * 8000), dtype=np.int16))
    parts.append(np.zeros(int(1.6 * 8000), dtype=np.int16))
    audio = np.concatenate(parts)
    # a line is never digitally silent: about -60 dBFS of hiss
    hiss = np.random.default_rng(rng.randrange(2**32)).normal(0, 30, len(audio)).astype(np.float32)
    return np.clip(audio.astype(np.float32) + hiss, -32768, 32767).astype(np.int16)


def spoken(case: Case, tts) -> np.ndarray:
    """The control: the same number read by the embedded piper voice, in the same grouping."""
    out, k = [], 0
    for size in (case.groups if case.style == "grouped" else (1,) * len(case.digits)):
        out.append(" ".join(WORDS[int(d)] for d in case.digits[k:k + size]))
        k += size
    text = ", ".join(out)
    pcm = np.frombuffer(tts.synthesize_sync(text), dtype=np.int16)
    pad = np.zeros(int(0.4 * 8000), dtype=np.int16)
    return np.concatenate([pad, pcm, np.zeros(int(1.6 * 8000), dtype=np.int16)])


@dataclass
class Result:
    one_turn: bool
    whisper: bool
    kept: bool
    first_try: bool
    loss: str | None
    heard: str
    turns: int
    stt_ms: float
    recovered: bool = False
    """The number the line kept, within two more caller turns after the first, is the one read."""
    wrong: bool = False
    """The line kept a number that is not the one read."""
    caller_turns: int = 0
    """Caller turns until the line kept a number (read-back answers count)."""
    read_back: bool = False
    keypad_offered: bool = False
    keyed: bool = False
    """Recovered, had the caller keyed the number when the keypad was offered within the turns."""


FLOW = """
flow: digits_bench
start: ask
slots:
  number: {type: %(type)s, length: %(length)d, read_back: %(read_back)s}
nodes:
  ask: {say: "Please say the number.", collect: number, next: done}
  done: {say: "Thanks.", hangup: true}
"""


def bench_engine(length: int, read_back: str = "unsure"):
    """The line's dialog for a number of this length: a node that collects it, with the
    server's recovery (ivr.dialog.number_reading) and the read-back the designer chose."""
    from ivr.dialog.engine import FlowEngine
    from ivr.dialog.loader import load_flow_text

    kind = "phone" if length in (10, 11) else "digits"
    engine = FlowEngine(load_flow_text(FLOW % {"type": kind, "length": length, "read_back": read_back}))
    engine.start()
    return engine


@dataclass(frozen=True)
class Heard:
    text: str
    unsure: bool
    stt_ms: float


class Line:
    """A caller's reading as the server hears it: G.711, 16 kHz, the live VAD, the end-of-turn
    rule of the node (longer while the words so far are the start of the number), whisper."""

    def __init__(self, stt, settings, lever: dict | None = None):
        from ivr.media.pipeline import recogniser_prompt

        self.stt, self.settings, self.lever = stt, settings, lever or {}
        self.prompt = self.lever.get("prompt", recogniser_prompt((), "digits"))
        self.options = {k: v for k, v in self.lever.items() if k in ("digits_only", "beam_size")}

    def pcm(self, pcm8k: np.ndarray) -> np.ndarray:
        from ivr.speech.audio import resample, ulaw_decode, ulaw_encode
        from ivr.speech.stt import STT_RATE

        if self.lever.get("pipecat_audio"):  # resampled by the live serializer's own path
            from ivr.media.serializer import heard_on_the_line

            return np.frombuffer(heard_on_the_line(ulaw_encode(pcm8k), STT_RATE), dtype=np.int16)
        line = ulaw_decode(ulaw_encode(pcm8k))  # what the phone network leaves of it
        return resample(np.asarray(line, dtype=np.int16), 8000, STT_RATE)

    def transcribe(self, pcm: np.ndarray, a: float, b: float):
        from ivr.media.transcribe import LONG_PREROLL_SECONDS
        from ivr.speech.stt import STT_RATE

        # as the transcriber keeps it on a digit node: from a second before the start event to the stop event
        audio = pcm[max(0, int((a - self.lever.get("preroll", LONG_PREROLL_SECONDS)) * STT_RATE)):int(b * STT_RATE)]
        if self.lever.get("tail"):  # the turn's audio with silence after it, as whisper hears a whole recording
            audio = np.concatenate([audio, np.zeros(int(self.lever["tail"] * STT_RATE), dtype=np.int16)])
        return self.stt.transcribe_sync(audio, prompt=self.prompt, full_window=True, **self.options)

    def hear(self, pcm: np.ndarray, engine) -> list[Heard]:
        from ivr.dialog.number_reading import more_digits
        from ivr.media.vad_segments import speech_spans_sync, turns
        from ivr.speech.stt import Transcript

        st = self.settings
        stop = min(st.vad_pause_secs, st.vad_stop_secs)
        spans = speech_spans_sync(pcm, confidence=st.vad_confidence, start_secs=st.vad_start_secs, stop_secs=stop)
        hold = not self.lever.get("no_hold")
        cut = turns(spans, st.vad_stop_secs_long, stop, longer=st.vad_stop_secs_number if hold else None,
                    goes_on=lambda a, b: engine.number_incomplete(self.transcribe(pcm, a, b).text))
        out = []
        for a, b in cut:
            t = self.transcribe(pcm, a, b)
            if hold and engine.number_incomplete(t.text):
                # as the transcriber does (ivr/media/transcribe.py): again, with the audio of the
                # end-of-turn wait, keeping the words with more digits
                again = self.transcribe(pcm, a, b + st.vad_stop_secs_number - stop)
                if more_digits(t.text, again.text):
                    t = Transcript(again.text, again.audio_seconds, t.latency_ms + again.latency_ms,
                                   again.no_speech_prob, again.avg_logprob, again.unsure)
            out.append(Heard(t.text, t.unsure, t.latency_ms))
        return out



def run_case(case: Case, pcm8k: np.ndarray, stt, settings, lever: dict | None = None, *, reread=None,
             read_back: str = "unsure") -> Result:
    """The first try and the stages it lost digits at; then, with `reread(digits)` (the same
    caller reading these digits again, 8 kHz), the line's own recovery for two more turns: the
    caller reads the rest when asked what comes next and the start was right (else the whole
    number), answers a read-back truly, and reads the whole number again when asked again."""
    from ivr.dialog.engine import Say, SetSlot
    from ivr.nlu.slots import parse_digits
    from ivr.nlu.understanding import Understanding

    line = Line(stt, settings, lever)
    pcm = line.pcm(pcm8k)
    length = len(case.digits)

    def exact(text: str) -> bool:
        r = parse_digits(text, length=length)
        return r.ok and r.value == case.digits

    raw = stt.transcribe_sync(pcm, prompt=line.prompt, full_window=True, keep_unsure=True, **line.options)
    whole = stt.transcribe_sync(pcm, prompt=line.prompt, full_window=True, **line.options)
    engine = bench_engine(length, read_back)
    heard_turns = line.hear(pcm, engine)
    heard = heard_turns[0].text if heard_turns else ""
    one_turn = len(heard_turns) == 1
    first_try = exact(heard)
    if first_try:
        loss = None
    elif not one_turn:
        loss = "split" if heard_turns else "no speech"
    elif "".join(ch for ch in heard if ch.isdigit()) == case.digits:
        loss = "parser"  # whisper wrote the digits; the parser refused them
    elif exact(whole.text):
        loss = "cut"  # whisper hears the whole recording right, but not the turn as the VAD cut it
    elif exact(raw.text):
        loss = "filter"
    else:
        loss = "whisper"
    result = Result(one_turn, exact(raw.text), exact(whole.text), first_try, loss, heard, len(heard_turns),
                    heard_turns[0].stt_ms if heard_turns else 0.0)
    if reread is None:
        return result

    queue = list(heard_turns)  # a reading cut into several turns reaches the line as several turns
    for caller_turn in range(1, 4):  # the first try and two more
        said = queue.pop(0) if queue else Heard("", False, 0.0)
        effects = engine.on_text(said.text, Understanding(), asr_unsure=said.unsure) if said.text else engine.on_no_input()
        kept = next((e.value for e in effects if isinstance(e, SetSlot)), None)
        kinds = {e.kind for e in effects if isinstance(e, Say)}
        if "offer_keypad" in kinds:
            result.keypad_offered = True
            result.keyed |= caller_turn < 3  # the next turn, keyed, is the number
        if kept is not None:
            result.caller_turns = caller_turn
            result.recovered, result.wrong = kept.lstrip("+") == case.digits, kept.lstrip("+") != case.digits
            result.keyed |= result.recovered
            return result
        if queue:
            continue  # the rest of the same reading was already on its way
        if engine.state.pending is not None:
            result.read_back = True
            queue = [Heard("yes" if engine.state.pending[1].lstrip("+") == case.digits else "no", False, 0.0)]
        elif engine.state.partial is not None and case.digits.startswith(engine.state.partial):
            queue = line.hear(line.pcm(reread(case.digits[len(engine.state.partial):])), engine)
        else:
            queue = line.hear(line.pcm(reread(case.digits)), engine)
    result.caller_turns = 3
    return result


# ---------------------------------------------------------------- over the Twilio protocol
@dataclass
class LiveResult:
    first_try: bool = False
    recovered: bool = False
    wrong: bool = False
    caller_turns: int = 0
    read_back: bool = False
    keypad_offered: bool = False
    number_ms: list[float] | None = None
    """Voice to voice of the turns that read digits (speech end to the bot's first audio)."""
    failure: str = ""
    heard: tuple[str, ...] = ()
    """What the server's whisper heard, turn by turn (its `transcript` events)."""


def _events(db: Path, call_sid: str) -> list[tuple[str, dict]]:
    import json
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT type, data FROM events WHERE call_id = ? ORDER BY seq", (call_sid,)).fetchall()
    return [(t, json.loads(d)) for t, d in rows]


async def live_case(server, case: Case, first: np.ndarray, reread, workdir: Path) -> LiveResult:
    """One call to a real `ivr serve`: the caller plays the recorded reading as 20 ms mu-law
    frames in real time, then answers what the line said (read from its call log, as a caller
    hears it): the rest of the number when asked what comes next and the start was right, else
    the whole number; a true yes or no to a read-back; the whole number when asked again."""
    import asyncio
    import re

    from ivr.bench.calls import TOKEN
    from ivr.speech.audio import write_wav
    from ivr.tools.simulate import CallerSimulator, Step

    db = server.dir / "ivr.sqlite3"
    out = LiveResult(number_ms=[])
    digit_turns: set[int] = set()

    def wav(pcm8k: np.ndarray) -> Step:
        path = workdir / f"{case.digits}-{len(list(workdir.iterdir()))}.wav"
        write_wav(str(path), pcm8k, 8000)
        return Step("wav", str(path))

    async def next_step(report):
        if not report.turns:
            digit_turns.add(0)
            return wav(first)
        if len(report.turns) >= 3:
            return None  # the first try and two more
        await asyncio.sleep(0.2)  # the call log's writer commits every 50 ms
        events = await asyncio.to_thread(_events, db, report.call_sid)
        if any(t == "slot" for t, _ in events):
            return None
        prompts = [d for t, d in events if t == "prompt"]
        kinds = {d.get("kind") for d in prompts}
        out.keypad_offered |= "offer_keypad" in kinds
        last = prompts[-1] if prompts else {}
        said = "".join(re.findall(r"\d", last.get("text", "")))
        if last.get("kind") == "confirm":
            out.read_back = True
            # the caller's own "yes" and "no", in the piper voice (not what is measured)
            return Step("wav", str(workdir / ("yes.wav" if said == case.digits else "no.wav")))
        digit_turns.add(len(report.turns))
        if last.get("kind") == "ask_rest" and case.digits.startswith(said):
            return wav(reread(case.digits[len(said):]))
        return wav(reread(case.digits))

    sim = CallerSimulator(server.url, auth_token=TOKEN, flow="digits_bench", reply_timeout=25)
    try:
        report = await sim.run(next_step)
    except Exception as exc:  # a call that fails is a result
        out.failure = str(exc)
        return out
    await asyncio.sleep(0.3)
    events = await asyncio.to_thread(_events, db, report.call_sid)
    slots = [d for t, d in events if t == "slot"]
    transcripts = [d for t, d in events if t == "transcript" and d.get("text")]
    out.caller_turns = len(report.turns)
    if slots:
        value = str(slots[0].get("value", "")).lstrip("+")
        out.recovered, out.wrong = value == case.digits, value != case.digits
    from ivr.nlu.slots import parse_digits

    out.heard = tuple(t["text"] for t in transcripts)
    first_heard = parse_digits(transcripts[0]["text"], length=len(case.digits)) if transcripts else None
    out.first_try = bool(first_heard and first_heard.ok and first_heard.value == case.digits)
    out.number_ms = [t.latency_ms for i, t in enumerate(report.turns) if i in digit_turns and t.latency_ms is not None]
    return out


def run_live(cases: list[Case], takes: Path, seed: int, rng: random.Random, tts) -> list[LiveResult]:
    import asyncio
    import tempfile

    from ivr.bench.calls import BenchServer

    workdir = Path(tempfile.mkdtemp(prefix="ivr-bench-digits-"))
    flows = workdir / "flows"
    flows.mkdir()
    length = len(cases[0].digits)
    kind = "phone" if length in (10, 11) else "digits"
    (flows / "digits_bench.yaml").write_text(FLOW % {"type": kind, "length": length, "read_back": "unsure"})
    calls = workdir / "calls"
    calls.mkdir()
    from ivr.speech.audio import write_wav

    for word in ("yes", "no"):
        write_wav(str(calls / f"{word}.wav"), np.frombuffer(tts.synthesize_sync(word), dtype=np.int16), 8000)
    server = BenchServer("digits", env={"IVR_FLOWS_DIR": str(flows), "IVR_DEFAULT_FLOW": "digits_bench"})
    try:
        server.wait_ready()

        async def all_calls():
            out = []
            for i, case in enumerate(cases):
                again = rereader(case, random.Random(f"{seed}-{i}"), takes)
                out.append(await live_case(server, case, recorded(case, rng, takes), again, calls))
            return out

        return asyncio.run(all_calls())
    finally:
        server.stop()


def report_live(label: str, results: list[LiveResult]) -> None:
    from ivr.bench.scoring import percentile

    n = len(results)

    def share(k) -> str:
        return f"{sum(getattr(r, k) for r in results) / n:.2f}"

    ms = [m for r in results for m in (r.number_ms or [])]
    p50, p95 = percentile(ms, 50), percentile(ms, 95)
    failed = sum(bool(r.failure) for r in results)
    print(f"| {label} | {n} | **{share('first_try')}** | **{share('recovered')}** | {sum(r.wrong for r in results)} | "
          f"{sum(r.caller_turns for r in results) / n:.2f} | {share('read_back')} | {share('keypad_offered')} | "
          f"{p50:.0f} / {p95:.0f} | {failed} |")


def report(label: str, results: list[Result]) -> None:
    n = len(results)

    def share(k) -> str:
        return f"{sum(getattr(r, k) for r in results) / n:.2f}"

    losses = Counter(r.loss for r in results if r.loss)
    stt = sorted(r.stt_ms for r in results if r.stt_ms)
    p50 = stt[len(stt) // 2] if stt else float("nan")
    turns = sum(r.caller_turns for r in results) / n
    print(f"| {label} | {n} | {share('one_turn')} | {share('whisper')} | {share('kept')} | **{share('first_try')}** | "
          + ", ".join(f"{k} {v}" for k, v in losses.most_common())
          + f" | **{share('recovered')}** | {share('keyed')} | {sum(r.wrong for r in results)} | {turns:.2f} | "
          + f"{share('read_back')} | {share('keypad_offered')} | {p50:.0f} |")


def rereader(case: Case, rng: random.Random, takes: Path):
    """The same speaker reading some digits again (the rest of the number, or all of it)."""
    def read(digits: str) -> np.ndarray:
        style = case.style if len(digits) > 3 else "single"
        return recorded(Case(digits, case.speaker, style, groups_for(len(digits))), rng, takes)
    return read


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ivr bench digits", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--length", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--control", action="store_true", help="also read the numbers with the piper voice")
    ap.add_argument("--errors", action="store_true")
    ap.add_argument("--read-back", default="unsure", choices=("unsure", "always", "never"),
                    help="the slot's read_back for the recovery columns")
    ap.add_argument("--vad-confidence", type=float, default=None, help="try another VAD confidence")
    ap.add_argument("--live", action="store_true",
                    help="also call a real `ivr serve` over the Twilio protocol with the same readings")
    ap.add_argument("--stt-model", default=None, help="another whisper (a CTranslate2 directory) for the digit turns")
    ap.add_argument("--levers", default="",
                    help="also try: no_hold, digits_only, beam5, digit_prompt, tail, short_preroll (comma-separated)")
    args = ap.parse_args(argv)

    from ivr.registry import model_registry
    from ivr.serving.config import Settings
    from ivr.speech.stt import Transcriber

    takes = data_dir() / "recordings"
    if not takes.is_dir():
        print(f"no recordings at {takes} (set IVR_FSDD)", file=sys.stderr)
        return 1
    settings = Settings()
    if args.vad_confidence is not None:
        import dataclasses

        settings = dataclasses.replace(settings, vad_confidence=args.vad_confidence)
    stt = Transcriber(args.stt_model or model_registry().for_role("stt").path)
    rng = random.Random(args.seed)
    cases = make_cases(args.cases, args.length, rng)
    rows: dict[str, list[Result]] = {}
    started = time.perf_counter()
    levers = {"digits_only": {"digits_only": True}, "beam5": {"beam_size": 5},
              "digit_prompt": {"prompt": DIGIT_PROMPT}, "no_hold": {"no_hold": True},
              "pipecat_audio": {"pipecat_audio": True},

              "tail": {"tail": 1.0}, "short_preroll": {"preroll": 0.5},
              "digits_only+beam5": {"digits_only": True, "beam_size": 5}}
    def again(i: int) -> random.Random:  # the takes of a case's rereadings, the same with every lever
        return random.Random(f"{args.seed}-{i}")

    for i, case in enumerate(cases):
        r = run_case(case, recorded(case, rng, takes), stt, settings, reread=rereader(case, again(i), takes),
                     read_back=args.read_back)
        rows.setdefault(f"real voices, {case.style}", []).append(r)
        rows.setdefault(f"real voices, {case.speaker}", []).append(r)
        rows.setdefault("real voices, all", []).append(r)
        if args.errors and not (r.first_try and r.recovered):
            print(f"  {case.speaker} {case.style} {case.digits}: heard {r.heard!r} in {r.turns} turn(s); lost at {r.loss};"
                  f" {'recovered' if r.recovered else 'WRONG' if r.wrong else 'not kept'} in {r.caller_turns}",
                  file=sys.stderr)
    for name in [x for x in args.levers.split(",") if x]:
        lrng = random.Random(args.seed)
        make_cases(args.cases, args.length, lrng)  # the same numbers and takes as above
        for i, case in enumerate(cases):
            rows.setdefault(f"real voices, all, {name}", []).append(
                run_case(case, recorded(case, lrng, takes), stt, settings, levers[name],
                         reread=rereader(case, again(i), takes), read_back=args.read_back))
    tts = None
    if args.control or args.live:
        from ivr.registry import voice_registry
        from ivr.speech.tts import Synthesizer

        tts = Synthesizer(voice_registry().for_role("default").path, out_rate=8000)
    live: list[LiveResult] = []
    if args.live:
        lrng = random.Random(args.seed)
        make_cases(args.cases, args.length, lrng)  # the same numbers and first readings as above
        live = run_live(cases, takes, args.seed, lrng, tts)
    if args.control:

        def piper(case: Case):
            return lambda digits: spoken(Case(digits, case.speaker, case.style, groups_for(len(digits))), tts)

        for case in cases:
            audio = spoken(case, tts)
            rows.setdefault("piper voice (control)", []).append(
                run_case(case, audio, stt, settings, reread=piper(case), read_back=args.read_back))
            for name in [x for x in args.levers.split(",") if x]:
                rows.setdefault(f"piper voice (control), {name}", []).append(
                    run_case(case, audio, stt, settings, levers[name], reread=piper(case), read_back=args.read_back))
    print(f"\n{args.cases} numbers of {args.length} digits, seed {args.seed}, read_back {args.read_back},"
          f" {time.perf_counter() - started:.0f} s\n")
    print("| voice | numbers | one turn | whisper | kept by the filter | first try exact | first-try losses |"
          " after recovery | ... keying when offered | wrong kept | caller turns | read back | keypad offered | STT p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, results in rows.items():
        report(label, results)
    if live:
        print("\nOver the Twilio protocol, into `ivr serve` (real time, one call at a time):\n")
        print("| voice | numbers | first try exact | after recovery | wrong kept | caller turns | read back |"
              " keypad offered | digit turns voice to voice p50 / p95 ms | failed calls |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        report_live("real voices, all", live)
        for speaker in SPEAKERS:
            report_live(f"real voices, {speaker}", [r for c, r in zip(cases, live, strict=True) if c.speaker == speaker])
        if args.errors:  # where the server heard the first try otherwise than the same reading offline
            offline = rows["real voices, all"]
            for case, off, on in zip(cases, offline, live, strict=True):
                if off.first_try != on.first_try:
                    print(f"  {case.speaker} {case.style} {case.digits}: offline {'exact' if off.first_try else 'missed'}"
                          f" {off.heard!r} ({off.turns} turn(s)); live {'exact' if on.first_try else 'missed'}"
                          f" {list(on.heard)!r}{' ' + on.failure if on.failure else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
