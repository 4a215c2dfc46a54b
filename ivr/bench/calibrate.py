"""Fit the classifier's confidence maps (ivr/nlu/calibration.json) on Banking77's train split.

    .venv/bin/python -m ivr.bench.calibrate [--menus 6] [--examples 4,10,20] [--out FILE]

Draws random 10-intent menus from the 77 categories, with designer examples and evaluation
turns both from train.csv (the benchmark reports on test.csv, which this never reads), runs
the hybrid classifier (router + SLM) on 200 in-menu and 100 out-of-scope turns per menu, and
fits one logistic map per decision kind (see ivr.nlu.calibration) from the raw score to
"was this decision right". Prints the reliability before and after. Takes ~10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import defaultdict

import numpy as np

from ivr.bench.nlu_quick import _read, build_case, data_dir
from ivr.bench.scoring import expected_calibration_error
from ivr.nlu.calibration import DEFAULT_FILE, KINDS, Calibrator, fit_platt
from ivr.nlu.intents import VERIFY_THRESHOLD, IntentClassifier, slm_tuning
from ivr.nlu.understanding import OUT_OF_SCOPE


def random_menus(n: int, seed: int, size: int = 10) -> list[list[str]]:
    cats = sorted({c for _, c in _read(data_dir() / "train.csv")})
    rng = random.Random(seed)
    return [rng.sample(cats, size) for _ in range(n)]


def collect(args) -> list[dict]:
    from ivr.nlu.embedder import load_embedder
    from ivr.nlu.slm import load_slm
    from ivr.registry import model_registry

    reg = model_registry()
    embedder = load_embedder(reg)
    slm = load_slm(reg, n_threads=1) if not args.router_only else None
    samples = []
    counts = [int(x) for x in args.examples.split(",")]
    for m, menu in enumerate(random_menus(args.menus, args.seed)):
        n_ex = counts[m % len(counts)]
        intents, cases = build_case(menu, seed=args.seed + m, split="dev", n_examples=n_ex)
        # the entry's own verify threshold: the slm_* scores, and so the maps, depend on it
        clf = IntentClassifier(embedder, slm, calibrator=Calibrator(), verify_threshold=args.verify_threshold)
        key = f"cal{m}"
        t = time.perf_counter()
        clf.prepare(key, intents)
        for text, expected in cases:
            r = clf.classify(key, intents, text)
            samples.append({"menu": m, "examples": n_ex, "kind": r.detail["decision"], "x": r.detail["score"],
                            "correct": r.intent == expected, "expected_oos": expected == OUT_OF_SCOPE})
        print(f"menu {m} ({n_ex} examples): {len(cases)} turns in {time.perf_counter() - t:.0f} s", flush=True)
    return samples


def report(title: str, samples: list[dict], cal: Calibrator) -> None:
    confs = [cal(s["kind"], s["x"]) for s in samples]
    ok = [s["correct"] for s in samples]
    print(f"{title}: ECE {expected_calibration_error(confs, ok):.3f} over {len(samples)} turns")
    edges = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.01]
    c = np.asarray(confs)
    o = np.asarray(ok)
    for lo, hi in zip(edges, edges[1:]):
        m = (c >= lo) & (c < hi)
        if m.any():
            print(f"  conf {lo:.2f}-{min(hi, 1):.2f}: {m.sum():5d} turns, right {o[m].mean():.2f} (stated {c[m].mean():.2f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--menus", type=int, default=6)
    ap.add_argument("--examples", default="4,10,20")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--router-only", action="store_true")
    ap.add_argument("--samples", help="read (or, if missing, write) the collected samples here")
    ap.add_argument("--out", default=str(DEFAULT_FILE))
    args = ap.parse_args(argv)
    from ivr.registry import model_registry

    info = model_registry().for_role("slm")
    args.slm_name = info.name
    args.verify_threshold = slm_tuning(info).get("verify_threshold", VERIFY_THRESHOLD)
    if args.samples and os.path.exists(args.samples):
        samples = json.load(open(args.samples))
    else:
        samples = collect(args)
        if args.samples:
            json.dump(samples, open(args.samples, "w"))
    report("before (defaults)", samples, Calibrator())
    by_kind = defaultdict(list)
    for s in samples:
        by_kind[s["kind"]].append(s)
    maps = {}
    for kind in KINDS:
        rows = by_kind.get(kind, [])
        if len(rows) < 20:
            print(f"{kind}: {len(rows)} samples, keeping the default map")
            continue
        maps[kind] = fit_platt([r["x"] for r in rows], [r["correct"] for r in rows])
        print(f"{kind}: {len(rows)} samples, right {np.mean([r['correct'] for r in rows]):.2f}, "
              f"a={maps[kind].a:.3f} b={maps[kind].b:.3f}")
    cal = Calibrator(maps, source="fitted")
    report("after (fitted, in-sample)", samples, cal)
    cal.dump(args.out, {"data": "banking77 train.csv", "menus": args.menus, "examples": args.examples,
                        "seed": args.seed, "turns": len(samples),
                        "made_by": "python -m ivr.bench.calibrate",
                        # the SLM whose log-odds the slm_* maps read: another model needs its own fit
                        "slm": None if args.router_only else args.slm_name,
                        "verify_threshold": args.verify_threshold})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
