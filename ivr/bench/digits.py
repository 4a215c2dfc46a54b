"""Numbers read aloud by real people: where the digits are lost, stage by stage.

    .venv/bin/python -m ivr.bench.digits [--cases 60] [--length 6] [--seed 0] [--control] [--errors]

Data: the Free Spoken Digit Dataset's recordings ($IVR_FSDD, else shared/data/fsdd_dev in the
folder that holds the repository): real people saying one digit a take, 8 kHz. A case strings
one speaker's takes into a number the way people read one: a digit at a time with 0.1-0.4 s
between them, or in groups ("four five seven, two nine one"; four groups of four for a card)
with a longer pause between groups. The recordings have no "oh" or "double five"; those
readings are the parser's (tests/unit/test_slots.py). `--control` reads the same numbers with
the embedded piper voice.

Each case goes the way a call's audio goes (ivr/media/pipeline.py, with the server's defaults):
G.711 mu-law and back, 16 kHz, the Silero VAD with the live stop window, the digit node's
end-of-turn silence (`IVR_VAD_STOP_SECS_LONG`), whisper with the node's prompt and the full
window, the noise filter, and `parse_digits` with the node's length (the recogniser's prompt is
the node's, `ivr.media.pipeline.recogniser_prompt`). Columns, as shares of the
cases, each stage given the ones before it right:

  one turn      the VAD and the end-of-turn rule kept the number in one turn (not split, not lost)
  whisper       whisper on the whole recording (segmentation aside) heard the digits, before the
                noise filter
  kept          ... and the noise filter kept them
  first try     what the server acts on: the first turn, transcribed and filtered, parsed as
                exactly the number (a partial or a wrong number is a miss)

and the losses of the first try by the first stage that failed: split (the turn ended inside the
number), cut (whisper hears the whole recording right but not the turn as cut), filter (whisper
heard it, the filter dropped a segment), whisper (misheard), parser (the digits were written,
the parser refused them).
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


def run_case(case: Case, pcm8k: np.ndarray, stt, settings, lever: dict | None = None) -> Result:
    from ivr.media.pipeline import recogniser_prompt
    from ivr.media.transcribe import LONG_PREROLL_SECONDS
    from ivr.media.vad_segments import speech_spans_sync, turns
    from ivr.nlu.slots import parse_digits
    from ivr.speech.audio import resample, ulaw_decode, ulaw_encode
    from ivr.speech.stt import STT_RATE

    line = ulaw_decode(ulaw_encode(pcm8k))  # what the phone network leaves of it
    pcm = resample(np.asarray(line, dtype=np.int16), 8000, STT_RATE)
    length = len(case.digits)

    def exact(text: str) -> bool:
        r = parse_digits(text, length=length)
        return r.ok and r.value == case.digits

    lever = lever or {}
    prompt = lever.get("prompt", recogniser_prompt((), "digits"))
    options = {k: v for k, v in lever.items() if k in ("digits_only", "beam_size")}
    raw = stt.transcribe_sync(pcm, prompt=prompt, full_window=True, keep_unsure=True, **options)
    whole = stt.transcribe_sync(pcm, prompt=prompt, full_window=True, **options)
    stop = min(settings.vad_pause_secs, settings.vad_stop_secs)
    spans = speech_spans_sync(pcm, confidence=settings.vad_confidence, start_secs=settings.vad_start_secs, stop_secs=stop)
    cut = turns(spans, settings.vad_stop_secs_long, stop)
    heard, stt_ms = "", 0.0
    if cut:
        # as the transcriber keeps it on a digit node: from a second before the start event to the stop event
        a = max(0, int((cut[0][0] - lever.get("preroll", LONG_PREROLL_SECONDS)) * STT_RATE))
        b = int(cut[0][1] * STT_RATE)
        turn_audio = pcm[a:b]
        if lever.get("tail"):  # the turn's audio with silence after it, as whisper hears a whole recording
            turn_audio = np.concatenate([turn_audio, np.zeros(int(lever["tail"] * STT_RATE), dtype=np.int16)])
        first = stt.transcribe_sync(turn_audio, prompt=prompt, full_window=True, **options)
        heard, stt_ms = first.text, first.latency_ms
    one_turn = len(cut) == 1
    first_try = exact(heard)
    if first_try:
        loss = None
    elif not one_turn:
        loss = "split" if cut else "no speech"
    elif "".join(ch for ch in heard if ch.isdigit()) == case.digits:
        loss = "parser"  # whisper wrote the digits; the parser refused them
    elif exact(whole.text):
        loss = "cut"  # whisper hears the whole recording right, but not the turn as the VAD cut it
    elif exact(raw.text):
        loss = "filter"
    else:
        loss = "whisper"
    return Result(one_turn, exact(raw.text), exact(whole.text), first_try, loss, heard, len(cut), stt_ms)


def report(label: str, results: list[Result]) -> None:
    n = len(results)

    def share(k) -> str:
        return f"{sum(getattr(r, k) for r in results) / n:.2f}"

    losses = Counter(r.loss for r in results if r.loss)
    stt = sorted(r.stt_ms for r in results if r.stt_ms)
    p50 = stt[len(stt) // 2] if stt else float("nan")
    print(f"| {label} | {n} | {share('one_turn')} | {share('whisper')} | {share('kept')} | **{share('first_try')}** | "
          + ", ".join(f"{k} {v}" for k, v in losses.most_common()) + f" | {p50:.0f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ivr bench digits", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--length", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--control", action="store_true", help="also read the numbers with the piper voice")
    ap.add_argument("--errors", action="store_true")
    ap.add_argument("--vad-confidence", type=float, default=None, help="try another VAD confidence")
    ap.add_argument("--levers", default="", help="also try: digits_only, beam5, digit_prompt, tail, short_preroll (comma-separated)")
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
    stt = Transcriber(model_registry().for_role("stt").path)
    rng = random.Random(args.seed)
    cases = make_cases(args.cases, args.length, rng)
    rows: dict[str, list[Result]] = {}
    started = time.perf_counter()
    for case in cases:
        r = run_case(case, recorded(case, rng, takes), stt, settings)
        rows.setdefault(f"real voices, {case.style}", []).append(r)
        rows.setdefault(f"real voices, {case.speaker}", []).append(r)
        rows.setdefault("real voices, all", []).append(r)
        if args.errors and not r.first_try:
            print(f"  {case.speaker} {case.style} {case.digits}: heard {r.heard!r} in {r.turns} turn(s); lost at {r.loss}",
                  file=sys.stderr)
    levers = {"digits_only": {"digits_only": True}, "beam5": {"beam_size": 5},
              "digit_prompt": {"prompt": DIGIT_PROMPT},
              "tail": {"tail": 1.0}, "short_preroll": {"preroll": 0.5},
              "digits_only+beam5": {"digits_only": True, "beam_size": 5}}
    for name in [x for x in args.levers.split(",") if x]:
        lrng = random.Random(args.seed)
        make_cases(args.cases, args.length, lrng)  # the same numbers and takes as above
        for case in cases:
            rows.setdefault(f"real voices, all, {name}", []).append(
                run_case(case, recorded(case, lrng, takes), stt, settings, levers[name]))
    if args.control:
        from ivr.registry import voice_registry
        from ivr.speech.tts import Synthesizer

        tts = Synthesizer(voice_registry().for_role("default").path, out_rate=8000)
        for case in cases:
            audio = spoken(case, tts)
            rows.setdefault("piper voice (control)", []).append(run_case(case, audio, stt, settings))
            for name in [x for x in args.levers.split(",") if x]:
                rows.setdefault(f"piper voice (control), {name}", []).append(
                    run_case(case, audio, stt, settings, levers[name]))
    print(f"\n{args.cases} numbers of {args.length} digits, seed {args.seed}, {time.perf_counter() - started:.0f} s\n")
    print("| voice | numbers | one turn | whisper | kept by the filter | first try exact | first-try losses | STT p50 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for label, results in rows.items():
        report(label, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
