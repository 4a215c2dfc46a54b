"""Slot benchmark: values said the many ways callers say them, parsed by ivr.nlu.slots.

    .venv/bin/python -m ivr.bench.slots [--per-type 60] [--seed 0] [--audio] [--errors]

Cases are generated, not hand-picked: a random value per case (account numbers, phone numbers,
amounts, dates, times, yes/no, emails, numbers) rendered by a random spoken form, with its own
number-to-words code written here independently of the parser's tables, and random lead-ins
and fillers ("um, it's ..."). Scores per type: exact match (the value the flow gets is the
value the caller meant), rejected (the parser declined: the flow re-prompts, safe) and wrong
(a different value accepted: the dangerous case).

--audio also speaks each case with the embedded piper voice, sends it through the phone path
(8 kHz mu-law and back) and the embedded whisper, and parses the transcript: the whole
speech-to-slot path. A synthetic voice is kinder than real callers (`ivr bench digits`, and
docs/latency.md "Numbers read aloud"): read it as an upper bound.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
        "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
ORD = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth", 12: "twelfth",
       20: "twentieth", 30: "thirtieth"}
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TODAY = date(2026, 11, 24)  # fixed, so relative dates have one right answer


def words(n: int, *, hyphen: bool = False) -> str:
    """English words for 0 <= n < 1,000,000."""
    if n < 20:
        return ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return TENS[t] + (("-" if hyphen else " ") + ONES[o] if o else "")
    if n < 1000:
        h, r = divmod(n, 100)
        return f"{ONES[h]} hundred" + (f" and {words(r, hyphen=hyphen)}" if r else "")
    th, r = divmod(n, 1000)
    return f"{words(th, hyphen=hyphen)} thousand" + ((" and " if r < 100 else " ") + words(r, hyphen=hyphen) if r else "")


def ordinal(n: int) -> str:
    if n in ORD:
        return ORD[n]
    if n < 20:
        w = ONES[n]
        return w[:-1] + "th" if w.endswith("t") else w + "th"
    t, o = divmod(n, 10)
    return TENS[t] + " " + ORD.get(o, ONES[o] + "th") if o else ORD.get(n, TENS[t][:-1] + "ieth")


def ordinal_digits(n: int) -> str:
    suf = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suf}"


def say_digit_string(s: str, rng: random.Random) -> str:
    style = rng.choice(["words", "words", "numerals", "pairs", "double"])
    zero = rng.choice(["zero", "oh"])
    if style == "numerals":
        return " ".join(s) if rng.random() < 0.5 else s
    if style == "pairs" and len(s) % 2 == 0:
        out = []
        for i in range(0, len(s), 2):
            a, b = s[i], s[i + 1]
            out.append(f"{zero} {ONES[int(b)]}" if a == "0" else words(int(a + b)))
        return " ".join(out)
    out, i = [], 0
    while i < len(s):
        d = s[i]
        if style == "double" and i + 1 < len(s) and s[i + 1] == d and (i + 2 >= len(s) or s[i + 2] != d):
            out.append("double " + (zero if d == "0" else ONES[int(d)]))
            i += 2
            continue
        out.append(zero if d == "0" else ONES[int(d)])
        i += 1
    return " ".join(out)


def lead(rng: random.Random, options: list[str]) -> str:
    return rng.choice(options + ["", "", "um, ", "uh "])


@dataclass
class Case:
    type: str
    text: str
    expected: object
    length: int | None = None


def gen_digits(rng):
    n = rng.choice([4, 6, 8, 10])
    s = "".join(rng.choice("0123456789") for _ in range(n))
    return Case("digits", lead(rng, ["my account number is ", "it's ", "sure, it's "]) + say_digit_string(s, rng), s, n)


def gen_phone(rng):
    s = str(rng.randint(2, 9)) + "".join(rng.choice("0123456789") for _ in range(9))
    a, b, c = s[:3], s[3:6], s[6:]
    style = rng.choice(["grouped", "grouped", "dashes", "parens", "plain"])
    if style == "grouped":
        text = ", ".join(say_digit_string(g, rng) for g in (a, b, c))
    elif style == "dashes":
        text = f"{a}-{b}-{c}"
    elif style == "parens":
        text = f"({a}) {b}-{c}"
    else:
        text = say_digit_string(s, rng)
    return Case("phone", lead(rng, ["my number is ", "you can reach me at ", "it's "]) + text, s, 10)


def gen_money(rng):
    dollars = rng.choice([rng.randint(1, 99), rng.randint(100, 999), rng.randint(1000, 5000)])
    cents = rng.choice([0, 0, 25, 50, 99, rng.randint(1, 99)])
    style = rng.choice(["words", "numerals", "short", "hundreds"])
    if style == "numerals":
        text = f"${dollars:,}" + (f".{cents:02d}" if cents else "")
    elif style == "short" and cents and dollars < 100:
        text = f"{words(dollars)} {words(cents) if cents >= 10 else 'oh ' + ONES[cents]}"
    elif style == "hundreds" and 1100 <= dollars < 10000 and dollars % 100 == 0 and (dollars // 100) % 10:
        text = f"{words(dollars // 100)} hundred dollars"
    else:
        text = f"{words(dollars)} dollar{'s' if dollars != 1 else ''}" + (
            f" and {words(cents)} cent{'s' if cents != 1 else ''}" if cents else "")
    return Case("money", lead(rng, ["I'd like to pay ", "pay ", "about ", "it's "]) + text, f"{dollars}.{cents:02d}")


def gen_date(rng):
    d = TODAY + timedelta(days=rng.randint(1, 150))
    style = rng.choice(["month_day", "ordinal_of", "month_nth", "weekday", "tomorrow", "with_year"])
    if style == "tomorrow":
        d = TODAY + timedelta(days=1)
        text = "tomorrow"
    elif style == "weekday":
        d = TODAY + timedelta(days=rng.randint(1, 6))
        text = WEEKDAYS[d.weekday()] if rng.random() < 0.5 else f"this {WEEKDAYS[d.weekday()]}"
    elif style == "month_day":
        text = f"{MONTHS[d.month - 1]} {ordinal(d.day)}"
    elif style == "ordinal_of":
        text = f"the {ordinal(d.day)} of {MONTHS[d.month - 1]}"
    elif style == "month_nth":
        text = f"{MONTHS[d.month - 1]} {ordinal_digits(d.day)}"
    else:
        yr = "twenty twenty " + ONES[d.year - 2020]
        text = f"{MONTHS[d.month - 1]} {ordinal(d.day)} {yr}" if rng.random() < 0.5 else \
            f"the {ordinal(d.day)} of {MONTHS[d.month - 1]} {yr}"
    return Case("date", lead(rng, ["on ", "how about ", "can I come in on "]) + text, d.isoformat())


def gen_time(rng):
    h = rng.randint(8, 18)
    m = rng.choice([0, 15, 30, 45])
    h12 = h % 12 or 12
    ampm = "am" if h < 12 else "pm"
    part = "in the morning" if h < 12 else ("in the afternoon" if h < 18 else "in the evening")
    style = rng.choice(["clock", "words", "past", "numerals"])
    if style == "numerals":
        text = f"{h12}:{m:02d} {rng.choice([ampm, ampm.upper(), ampm[0] + '.m.'])}"
    elif style == "past" and m:
        text = {15: f"quarter past {words(h12)}", 30: f"half past {words(h12)}",
                45: f"quarter to {words(h12 % 12 + 1)}"}[m] + f" {part}"
    elif m == 0:
        text = f"{words(h12)} o'clock {part}" if rng.random() < 0.5 else f"{words(h12)} {ampm}"
    else:
        text = f"{words(h12)} {words(m)} {ampm if rng.random() < 0.5 else part}"
    return Case("time", lead(rng, ["at ", "around ", "let's say "]) + text, f"{h:02d}:{m:02d}")


YES = ["yes", "yeah", "yep", "yes please", "that's right", "correct", "that is correct", "sure",
       "absolutely", "yes it is", "uh huh", "right", "yeah that's it", "of course", "definitely"]
NO = ["no", "nope", "no it isn't", "that's wrong", "not quite", "no thanks", "no that's not right",
      "nah", "incorrect", "that's not it", "no way", "negative", "not really"]


def gen_yes_no(rng):
    yes = rng.random() < 0.5
    return Case("yes_no", rng.choice(YES if yes else NO), yes)


NAMES = ["john", "maria", "li", "priya", "sam", "olga", "kwame", "ana"]
SURNAMES = ["smith", "garcia", "chen", "patel", "jones", "novak", "mensah", "silva"]
DOMAINS = [("gmail", "com"), ("yahoo", "com"), ("outlook", "com"), ("example", "org"), ("mail", "co.uk")]


def gen_email(rng):
    first, last = rng.choice(NAMES), rng.choice(SURNAMES)
    dom, tld = rng.choice(DOMAINS)
    style = rng.choice(["dot", "plain", "digits", "spelled"])
    tld_said = " dot ".join(tld.split("."))
    if style == "dot":
        local, said = f"{first}.{last}", f"{first} dot {last}"
    elif style == "digits":
        n = rng.randint(1, 99)
        local, said = f"{first}{last}{n}", f"{first} {last} {words(n)}" if rng.random() < 0.5 else f"{first}{last}{n}"
    elif style == "spelled":
        local, said = first, " ".join(first)
    else:
        local, said = f"{first}{last}", f"{first}{last}"
    return Case("email", lead(rng, ["my email is ", "it's "]) + f"{said} at {dom} dot {tld_said}", f"{local}@{dom}.{tld}")


def gen_number(rng):
    n = rng.choice([rng.randint(1, 20), rng.randint(21, 99), rng.randint(100, 999)])
    style = rng.choice(["words", "numerals", "hyphen"])
    text = str(n) if style == "numerals" else words(n, hyphen=style == "hyphen")
    return Case("number", lead(rng, ["", "about ", "I need "]) + text, n)


GENERATORS = {"digits": gen_digits, "phone": gen_phone, "money": gen_money, "date": gen_date,
              "time": gen_time, "yes_no": gen_yes_no, "email": gen_email, "number": gen_number}


def make_cases(per_type: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [gen(rng) for name, gen in GENERATORS.items() for _ in range(per_type)]


def score(cases: list[Case], texts: list[str]) -> tuple[dict[str, Counter], list[tuple]]:
    """Per type, counts of exact / rejected / wrong (and n); and every miss as
    (type, outcome, text, expected, got)."""
    from ivr.nlu.slots import parse_slot

    counts: dict[str, Counter] = defaultdict(Counter)
    misses: list[tuple] = []
    for case, text in zip(cases, texts):
        r = parse_slot(case.type, text, length=case.length, today=TODAY)
        outcome = "exact" if r.ok and r.value == case.expected else ("wrong" if r.ok else "rejected")
        counts[case.type][outcome] += 1
        counts[case.type]["n"] += 1
        if outcome != "exact":
            misses.append((case.type, outcome, text, str(case.expected), str(r.value)))
    return counts, misses


def print_misses(misses: list[tuple]) -> None:
    for t, outcome, text, want, got in sorted(misses):
        print(f"  {t:7s} {outcome:8s} want {want:24s} got {got:24s} | {text}")


def transcribe_cases(cases: list[Case]) -> tuple[list[str], float]:
    """Speak each case with piper, pass it through 8 kHz mu-law, transcribe with whisper using
    the recogniser hint the live call path gives digit and phone slots."""
    import numpy as np

    from ivr.media.pipeline import recogniser_prompt
    from ivr.registry import model_registry, voice_registry
    from ivr.speech.audio import resample, ulaw_decode, ulaw_encode
    from ivr.speech.stt import Transcriber
    from ivr.speech.tts import Synthesizer

    tts = Synthesizer(voice_registry().for_role("default").path, out_rate=8000)
    stt = Transcriber(model_registry().for_role("stt").path)
    texts, t_stt = [], 0.0
    for case in cases:
        pcm8k = np.frombuffer(tts.synthesize_sync(case.text), dtype=np.int16)
        line = ulaw_decode(ulaw_encode(pcm8k))  # what the phone network leaves of it
        pcm16k = resample(np.asarray(line, dtype=np.int16), 8000, 16000)
        hint = recogniser_prompt((), case.type)
        t = time.perf_counter()
        texts.append(stt.transcribe_sync(pcm16k, prompt=hint).text)
        t_stt += time.perf_counter() - t
    return texts, t_stt / max(1, len(cases))


def print_table(title: str, res: dict[str, Counter]) -> dict:
    print(f"\n{title}")
    print(f"{'type':8s} {'cases':>5s} {'exact':>6s} {'rejected':>8s} {'wrong':>6s}")
    total = Counter()
    rows = {}
    for t in GENERATORS:
        c = res.get(t, Counter())
        n = max(1, c["n"])
        rows[t] = {k: c[k] / n for k in ("exact", "rejected", "wrong")}
        print(f"{t:8s} {c['n']:5d} {c['exact'] / n:6.3f} {c['rejected'] / n:8.3f} {c['wrong'] / n:6.3f}")
        total.update({k: c[k] for k in ("n", "exact", "rejected", "wrong")})
    n = max(1, total["n"])
    print(f"{'all':8s} {total['n']:5d} {total['exact'] / n:6.3f} {total['rejected'] / n:8.3f} {total['wrong'] / n:6.3f}")
    rows["all"] = {k: total[k] / n for k in ("exact", "rejected", "wrong")}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-type", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--audio", action="store_true", help="also through piper, mu-law and whisper")
    ap.add_argument("--errors", action="store_true")
    args = ap.parse_args(argv)
    cases = make_cases(args.per_type, args.seed)
    res, misses = score(cases, [c.text for c in cases])
    print_table(f"slots from text ({len(cases)} generated utterances, seed {args.seed})", res)
    if args.errors:
        print_misses(misses)
    if args.audio:
        texts, stt_s = transcribe_cases(cases)
        res_a, misses_a = score(cases, texts)
        print_table(f"slots from speech (piper -> 8 kHz mu-law -> whisper; {1000 * stt_s:.0f} ms STT a case)", res_a)
        if args.errors:
            print_misses(misses_a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
