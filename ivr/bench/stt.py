"""`ivr bench stt`: whisper's word error rate and latency on phone audio, per setting.

Speed must never be bought with accuracy unseen: every speed setting of the server's
transcriber is run here on the same utterances, in one process, interleaved, so the ratios are
honest on a shared machine. The utterances are real customer wording (Banking77's test split),
six-digit numbers read digit by digit and short answers, spoken by the bundled piper voice and
put through what a phone line does (8 kHz, G.711 mu-law, back to 16 kHz). A synthetic voice is
kinder than a caller: read the absolute WER as a floor, the differences between rows as real.

Settings compared:
  pipecat default   float32, beam 5, timestamps, 30 s window (pipecat's WhisperSTTService)
  beam 5            int8, beam 5, no timestamps, 30 s window
  30 s window       int8, beam 1, no timestamps, 30 s window (the server before the short window)
  window N s        the same, encoder window = utterance + 1 s, at least N s
  ours              what the server does: the 15 s window, but the full one for digits (a node
                    collecting digits, phones, amounts asks for it)
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ivr.bench.nlu_quick import data_dir
from ivr.bench.scoring import percentile

ONES = "zero one two three four five six seven eight nine".split()
SHORT = ["yes", "no", "yeah that's right", "nope", "agent", "representative please", "yes please",
         "no thanks", "correct", "that's wrong", "main menu", "say that again"]


def utterances(n_text: int, n_digits: int, seed: int = 3) -> list[tuple[str, str]]:
    """(kind, reference text) pairs."""
    rng = random.Random(seed)
    with open(data_dir() / "test.csv", newline="") as fh:
        rows = [r["text"] for r in csv.DictReader(fh) if 3 <= len(r["text"].split()) <= 20]
    out = [("banking77", t) for t in rng.sample(rows, n_text)]
    for _ in range(n_digits):
        out.append(("digits", " ".join(ONES[rng.randrange(10)] for _ in range(6))))
    out += [("short", t) for t in SHORT]
    return out


_DIGIT = re.compile(r"\d")
_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> list[str]:
    """Lower case, no punctuation, digits spoken one by one ("41729 3" -> four one seven ...)."""
    text = _DIGIT.sub(lambda m: f" {ONES[int(m.group())]} ", text.lower().replace("-", " "))
    return _NON_WORD.sub(" ", text).split()


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def phone_audio(voice, text: str) -> np.ndarray:
    from ivr.speech.audio import resample, ulaw_decode, ulaw_encode

    pcm = np.frombuffer(voice.synthesize_sync(text), dtype=np.int16)  # 8 kHz already
    return resample(ulaw_decode(ulaw_encode(pcm)), 8000, 16000)


def _pipecat_default(model_path):
    """What pipecat's WhisperSTTService does: float32, beam 5, timestamps, 0.5 s of padding."""
    from faster_whisper import WhisperModel

    from ivr.speech.audio import pcm16_to_float

    model = WhisperModel(str(model_path), device="cpu", compute_type="float32")

    def run(audio: np.ndarray, kind: str) -> str:
        samples = np.concatenate([pcm16_to_float(audio), np.zeros(8000, dtype=np.float32)])
        segments, _ = model.transcribe(samples, language="en", beam_size=5)
        return " ".join(s.text.strip() for s in segments)
    return run


def main(argv: list[str] | None = None) -> int:
    import time

    from ivr.registry import model_registry, voice_registry
    from ivr.speech.stt import STTSettings, Transcriber
    from ivr.speech.tts import Synthesizer

    ap = argparse.ArgumentParser(prog="ivr bench stt", description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", type=int, default=60, help="Banking77 utterances")
    ap.add_argument("--digits", type=int, default=20, help="six-digit numbers read digit by digit")
    ap.add_argument("--no-pipecat", action="store_true", help="skip the slow pipecat-default row")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)

    path = model_registry().for_role("stt").path
    ours = STTSettings()
    variants: dict[str, object] = {}
    for name, settings, full_for_digits in (
            ("ours", ours, True),
            ("window 5 s", replace(ours, window_min_s=5.0), False),
            ("window 10 s", replace(ours, window_min_s=10.0), False),
            ("window 15 s", replace(ours, window_min_s=15.0), False),
            ("30 s window", replace(ours, window_pad_s=None), False),
            ("beam 5", replace(ours, beam_size=5, window_pad_s=None), False)):
        t = Transcriber(path, settings)
        variants[name] = lambda a, kind, t=t, f=full_for_digits: t.transcribe_sync(
            a, full_window=f and kind == "digits").text
    if not args.no_pipecat:
        variants["pipecat default"] = _pipecat_default(path)

    voice = Synthesizer(voice_registry().for_role("default").path)
    items = [(kind, ref, phone_audio(voice, ref)) for kind, ref in utterances(args.text, args.digits)]
    print(f"ivr bench stt: {len(items)} utterances, {sum(len(a) for *_, a in items) / 16000:.0f} s of phone audio; "
          f"settings: {', '.join(variants)}", flush=True)
    stats = {name: {"errors": 0, "words": 0, "ms": [], "digits_ok": 0, "digits": 0, "by_kind": {}} for name in variants}
    for name, fn in variants.items():  # one warm-up each: first calls allocate
        fn(items[0][2], items[0][0])
    for kind, ref, audio in items:
        for name, fn in variants.items():  # interleaved: load on the machine hits every row alike
            started = time.perf_counter()
            hyp = fn(audio, kind)
            ms = (time.perf_counter() - started) * 1000
            r, h = normalize(ref), normalize(hyp)
            e = word_errors(r, h)
            st = stats[name]
            st["errors"] += e
            st["words"] += len(r)
            st["ms"].append(ms)
            k = st["by_kind"].setdefault(kind, [0, 0])
            k[0] += e
            k[1] += len(r)
            if kind == "digits":
                st["digits"] += 1
                st["digits_ok"] += r == h
    rows = []
    base = percentile(stats.get("pipecat default", stats["30 s window"])["ms"], 50)
    for name, st in stats.items():
        p50 = percentile(st["ms"], 50)
        rows.append({
            "setting": name,
            "wer": round(st["errors"] / max(1, st["words"]), 3),
            **{f"wer_{k}": round(v[0] / max(1, v[1]), 3) for k, v in st["by_kind"].items()},
            "digits_exact": f"{st['digits_ok']}/{st['digits']}",
            "p50_ms": round(p50), "p95_ms": round(percentile(st["ms"], 95)),
            "speedup": round(base / p50, 1),
        })
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("\nWhisper on 8 kHz mu-law phone audio (speedup: p50 against "
          f"{'pipecat default' if 'pipecat default' in stats else '30 s window'})")
    print("  ".join(c.rjust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) for c in cols))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
