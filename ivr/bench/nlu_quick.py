"""Quick intent-classification benchmark on Banking77 mapped onto a 10-intent bank menu.

    .venv/bin/python -m ivr.bench.nlu_quick [--menu 1|2] [--split test|dev] [--seed 0]
                                            [--modes router,hybrid,slm] [--set key=value ...]

Designer examples: 4 per intent drawn from train.csv. Evaluation: ~200 in-menu utterances
(20 per intent) and ~100 out-of-scope ones from the other 67 categories, from test.csv
(`--split dev` draws them from the rest of train.csv instead, for tuning without touching the
test set). Fixed seed. Prints in-menu accuracy (right intent, not rejected), out-of-scope recall,
the share of turns the SLM saw, and p50/p95 latency per mode:
  router  router only (embedding + calibrated threshold)
  hybrid  router, SLM only when the router is unsure
  slm     SLM only (argmax over the intents and "none of these")

Data: $IVR_BANKING77, else shared/data/banking77 in the folder that holds the repository.
Timings on a shared 2-core VM are noisy: read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import time
from pathlib import Path


from ivr.bench.scoring import summarize
from ivr.nlu.intents import IntentClassifier, IntentResult
from ivr.nlu.understanding import OUT_OF_SCOPE, Intent

REPO_ROOT = Path(__file__).resolve().parents[2]

# Ten things a bank's phone menu routes, as Banking77 categories.
MENUS = {
    1: [
        "lost_or_stolen_card", "card_arrival", "activate_my_card", "change_pin", "exchange_rate",
        "terminate_account", "request_refund", "transaction_charged_twice", "cancel_transfer",
        "edit_personal_details",
    ],
    # A second menu, to check that per-menu calibration carries.
    2: [
        "top_up_limits", "atm_support", "pending_transfer", "card_not_working",
        "apple_pay_or_google_pay", "passcode_forgotten", "declined_card_payment",
        "getting_virtual_card", "country_support", "age_limit",
    ],
}


def data_dir() -> Path:
    env = os.environ.get("IVR_BANKING77")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data" / "banking77")


def _read(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as fh:
        return [(r["text"], r["category"]) for r in csv.DictReader(fh)]


def build_case(menu: list[str], *, seed: int = 0, split: str = "test", n_examples: int = 4,
               n_in: int = 200, n_oos: int = 100, tidy_with=None):
    """(intents, [(text, expected)]) with expected = a menu name or OUT_OF_SCOPE.

    `tidy_with` (an embedder): each intent's examples are one wording drawn at random and the
    train requests nearest it, as a designer in a hurry writes them ("refill my prescription",
    "prescription refill"); what `ivr validate --explain` warns of (ivr/nlu/example_advice.py)."""
    d = data_dir()
    train = _read(d / "train.csv")
    rng = random.Random(seed)
    used: set[int] = set()
    intents = []
    for cat in menu:
        idx = [i for i, (_, c) in enumerate(train) if c == cat]
        pick = rng.sample(idx, n_examples) if tidy_with is None else _near_copies(tidy_with, train, idx, n_examples, rng)
        used.update(pick)
        intents.append(Intent(cat, tuple(train[i][0] for i in pick)))
    if split == "test":
        pool = _read(d / "test.csv")
        avail = list(range(len(pool)))
    else:
        pool = train
        avail = [i for i in range(len(train)) if i not in used]
    per = n_in // len(menu)
    cases: list[tuple[str, str]] = []
    for cat in menu:
        idx = [i for i in avail if pool[i][1] == cat]
        cases += [(pool[i][0], cat) for i in rng.sample(idx, min(per, len(idx)))]
    oos = [i for i in avail if pool[i][1] not in menu]
    cases += [(pool[i][0], OUT_OF_SCOPE) for i in rng.sample(oos, n_oos)]
    return intents, cases


def _near_copies(embedder, train, idx: list[int], n: int, rng: random.Random) -> list[int]:
    import numpy as np

    v = np.asarray(embedder.encode([train[i][0] for i in idx]), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    first = rng.randrange(len(idx))
    return [idx[j] for j in np.argsort(-(v @ v[first]), kind="stable")[:n]]


def slm_only(slm, key: str, intents, text: str) -> IntentResult:
    t0 = time.perf_counter()
    probs = slm.score(key, text)
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    best, p = ranked[0]
    return IntentResult(best, p, [(n, v) for n, v in ranked if n != OUT_OF_SCOPE], "slm",
                        (time.perf_counter() - t0) * 1000)


def parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--menu", type=int, default=1, choices=sorted(MENUS))
    ap.add_argument("--split", default="test", choices=["test", "dev"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=4)
    ap.add_argument("--modes", default="router,hybrid,slm")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="classifier tuning, e.g. --set beta=0.5 --set accept_band=0.5")
    ap.add_argument("--slm-set", action="append", default=[], metavar="KEY=VALUE",
                    help="SLM options, e.g. --slm-set shots=2")
    ap.add_argument("--errors", action="store_true", help="print the misclassified turns")
    args = ap.parse_args(argv)

    tuning = dict(kv.split("=", 1) for kv in args.set)
    tuning = {k: parse_value(v) for k, v in tuning.items()}
    slm_opts = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.slm_set)}
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    from ivr.nlu.embedder import load_embedder
    from ivr.registry import model_registry

    reg = model_registry()
    t = time.perf_counter()
    embedder = load_embedder(reg, threads=args.threads)
    print(f"embedder load {time.perf_counter() - t:.2f} s ({embedder.model_path.name})")
    slm = None
    if any(m in ("hybrid", "slm") for m in modes):
        from ivr.nlu.slm import load_slm

        t = time.perf_counter()
        slm = load_slm(reg, **slm_opts)
        print(f"SLM load {time.perf_counter() - t:.2f} s ({slm.model_path.name})")

    intents, cases = build_case(MENUS[args.menu], seed=args.seed, split=args.split,
                                n_examples=args.examples)
    n_in = sum(e != OUT_OF_SCOPE for _, e in cases)
    print(f"menu {args.menu}, split {args.split}, seed {args.seed}: {len(intents)} intents x "
          f"{args.examples} examples; {n_in} in-menu + {len(cases) - n_in} out-of-scope turns")

    key = f"bank{args.menu}"
    rows = []
    for mode in modes:
        embedder.clear_cache()  # every mode pays for its own embeddings
        clf = IntentClassifier(embedder, slm if mode == "hybrid" else None, **tuning)
        t = time.perf_counter()
        clf.prepare(key, intents)
        if mode == "slm":
            slm.prepare(key, intents, modes=("choose",))
        prep_s = time.perf_counter() - t
        results = []
        texts = []
        for text, expected in cases:
            if mode == "slm":
                r = slm_only(slm, key, intents, text)
            else:
                r = clf.classify(key, intents, text)
            results.append((expected, r))
            texts.append(text)
        row = summarize(mode, results)
        row["prepare_s"] = prep_s
        rows.append(row)
        if mode != "slm":
            cal = clf.calibration(key)
            print(f"[{mode}] calibration: tau {cal['tau']:.3f} (leave-one-out {cal['tau_leave_one_out']:.3f}, "
                  f"background {cal['tau_background']:.3f}), spread {cal['spread']:.3f}, "
                  f"leave-one-out accuracy {cal['leave_one_out_accuracy']:.2f}")
        if args.errors:
            for text, (e, r) in zip(texts, results):
                if r.intent != e:
                    print(f"  [{mode}] want {e:28s} got {r.intent:28s} {r.source:6s} "
                          f"{r.confidence:.2f} conf={r.detail.get('conf', '')} | {text}")
    print()
    print(f"{'mode':8s} {'in-menu':>8s} {'top1':>6s} {'OOS rec':>8s} {'SLM %':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'prep s':>7s}")
    for r in rows:
        print(f"{r['mode']:8s} {r['in_menu_acc']:8.3f} {r['in_menu_top1']:6.3f} {r['oos_recall']:8.3f} "
              f"{100 * r['slm_share']:6.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['prepare_s']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
