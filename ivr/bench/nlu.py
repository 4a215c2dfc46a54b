"""NLU benchmark: Banking77 mapped onto a bank menu, our router + SLM against LLM tool calls.

    .venv/bin/python -m ivr.bench.nlu [--menus 1,2] [--split test|dev] [--baseline-cases 100]
                                      [--examples 4,10] [--modes router,hybrid,forced,auto] [--tidy]
                                      [--json FILE]

For each menu (10 Banking77 intents, 4 or 10 designer examples each from train.csv; 200 in-menu and
100 out-of-scope turns from test.csv, the out-of-scope ones from the other 67 intents, which are
near misses by construction), every mode classifies the same turns in one process:

  router   the example-similarity router alone (ONNX embeddings, per-menu calibration)
  hybrid   what the server runs: the router, and the SLM (llama.cpp, cached per-menu prompt)
           only on the turns the router is unsure of
  forced   baseline: the same GGUF picks the transition by a tool call, constrained by a
           grammar to one of the node's functions plus `other_request` (ivr.nlu.toolcall)
  auto     baseline: the same, unconstrained (pipecat.flows' default); no call = no route

The baselines cost ~1 s a turn here, so they run on a stratified subset of the turns
(`--baseline-cases`, 0 for all), and the comparison table scores hybrid on the same subset.
Columns: in-menu accuracy (right intent, not rejected), out-of-scope recall, ECE (expected
calibration error of the stated confidence; tool calls state none, so 1.0), accuracy of the
turns scored 0.85-0.95, share of turns the SLM saw, latency p50/p95 of the whole NLU step and
of the SLM step alone (the turns it ran on). Times on a shared 2-core VM are noisy: compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from ivr.bench.nlu_quick import MENUS, build_case
from ivr.bench.scoring import summarize
from ivr.nlu.intents import IntentClassifier
from ivr.nlu.understanding import OUT_OF_SCOPE

BASELINES = ("forced", "auto")


def subset(cases, n: int, seed: int = 0):
    """A stratified subset: the same share of out-of-scope turns as the whole set."""
    if n <= 0 or n >= len(cases):
        return list(range(len(cases)))
    rng = random.Random(seed)
    oos = [i for i, (_, e) in enumerate(cases) if e == OUT_OF_SCOPE]
    ins = [i for i, (_, e) in enumerate(cases) if e != OUT_OF_SCOPE]
    k_oos = round(n * len(oos) / len(cases))
    return sorted(rng.sample(ins, n - k_oos) + rng.sample(oos, k_oos))


def _fmt(v: float, spec: str) -> str:
    if v != v:  # NaN: nothing to report
        width = int(spec.split(".")[0] or 0)
        return "-".rjust(width)
    return format(v, spec)


def _ci(bounds) -> str:
    lo, hi = bounds
    return "-".rjust(9) if lo != lo else f"{lo:.2f}-{hi:.2f}".rjust(9)


def print_table(title: str, rows: list[dict], ref: str | None = None) -> None:
    print(f"\n{title}")
    head = (f"{'mode':8s} {'turns':>5s} {'in-menu':>8s} {'95% CI':>9s} {'OOS rec':>8s} {'95% CI':>9s} "
            f"{'ECE':>6s} {'acc@.9':>7s} "
            f"{'SLM %':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'SLM p50':>8s} {'SLM p95':>8s}")
    if ref:
        head += f" {'x faster':>9s}"
    print(head)
    ref_row = next((r for r in rows if r["mode"] == ref), None)
    for r in rows:
        line = (f"{r['mode']:8s} {r['n']:5d} {r['in_menu_acc']:8.3f} {_ci(r['in_menu_ci'])} "
                f"{r['oos_recall']:8.3f} {_ci(r['oos_ci'])} {r['ece']:6.3f} "
                f"{_fmt(r['acc_at_0.9'], '7.2f')} {100 * r['slm_share']:6.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
                f"{_fmt(r['slm_p50_ms'], '8.1f')} {_fmt(r['slm_p95_ms'], '8.1f')}")
        if ref_row is not None:
            # how much faster hybrid is than this baseline, on the mean (p50 hides the SLM turns)
            ratio = r["mean_ms"] / ref_row["mean_ms"] if r["mode"] in BASELINES else float("nan")
            line += f" {_fmt(ratio, '9.1f')}"
        print(line)


def over_draws(results: list[dict]) -> list[dict]:
    """Mean, min and max of each (menu, examples, mode) over the draws (seeds) in `results`."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        for row in r["all"]:
            groups.setdefault((r["menu"], r["examples"], row["mode"]), []).append(row)
    out = []
    for (menu, n_ex, mode), rows in sorted(groups.items()):
        agg = {"menu": menu, "examples": n_ex, "mode": mode, "draws": len(rows)}
        for key in ("in_menu_acc", "oos_recall", "ece"):
            vals = [row[key] for row in rows]
            agg[key] = (sum(vals) / len(vals), min(vals), max(vals))
        out.append(agg)
    return out


def print_over_draws(results: list[dict], seeds: list[int]) -> None:
    print(f"\nOver {len(seeds)} draws (seeds {','.join(map(str, seeds))}): mean (min-max)")
    print(f"{'menu':>4s} {'examples':>8s} {'mode':8s} {'in-menu':>18s} {'OOS rec':>18s} {'ECE':>18s}")
    for a in over_draws(results):
        cells = " ".join(f"{m:.3f} ({lo:.2f}-{hi:.2f})".rjust(18) for m, lo, hi in
                         (a["in_menu_acc"], a["oos_recall"], a["ece"]))
        print(f"{a['menu']:4d} {a['examples']:8d} {a['mode']:8s} {cells}")


def run_menu(menu: int, args, embedder, slm, baseline) -> dict:
    intents, cases = build_case(MENUS[menu], seed=args.seed, split=args.split, n_examples=args.examples,
                                tidy_with=embedder if args.tidy else None)
    n_in = sum(e != OUT_OF_SCOPE for _, e in cases)
    print(f"\n== menu {menu} ({args.split}): {len(intents)} intents x {args.examples} "
          f"{'near-copy ' if args.tidy else ''}examples; "
          f"{n_in} in-menu + {len(cases) - n_in} out-of-scope turns ==", flush=True)
    key = f"bank{menu}"
    per_mode: dict[str, list] = {}
    for mode in [m for m in args.modes if m in ("router", "hybrid")]:
        embedder.clear_cache()  # every mode pays for its own embeddings
        # the registry entry's own maps and verify threshold, as the server would use them
        clf = (IntentClassifier(embedder, slm, calibrator=args.slm_calibrator, **args.slm_tuning)
               if mode == "hybrid" else IntentClassifier(embedder, None))
        clf.prepare(key, intents)
        per_mode[mode] = [(e, clf.classify(key, intents, text)) for text, e in cases]
    sub = subset(cases, args.baseline_cases, args.seed)
    for mode in [m for m in args.modes if m in BASELINES]:
        t = time.perf_counter()
        baseline.classify(intents, cases[sub[0]][0], mode=mode)  # warm the tools prompt
        res = [(cases[i][1], baseline.classify(intents, cases[i][0], mode=mode)) for i in sub]
        per_mode[mode] = res
        print(f"[{mode}] {len(sub)} turns in {time.perf_counter() - t:.0f} s", flush=True)

    def rows_for(indices: list[int] | None) -> list[dict]:
        out = []
        for mode, res in per_mode.items():
            if indices is not None and mode not in BASELINES:
                res = [res[i] for i in indices]
            row = summarize(mode, res)
            row["mean_ms"] = sum(r.latency_ms for _, r in res) / max(1, len(res))
            out.append(row)
        return out

    full = rows_for(None)
    print_table(f"menu {menu}, all {len(cases)} turns", [r for r in full if r["mode"] not in BASELINES])
    compared = []
    if any(m in per_mode for m in BASELINES):
        compared = rows_for(sub)
        ref = "hybrid" if "hybrid" in per_mode else None
        print_table(f"menu {menu}, the {len(sub)} turns the tool-call baselines ran on "
                    f"(x faster: mean latency of that mode / hybrid's)", compared, ref)
    return {"menu": menu, "split": args.split, "seed": args.seed, "examples": args.examples, "all": full,
            "baseline_subset": compared}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--menus", default="1,2")
    ap.add_argument("--split", default="test", choices=["test", "dev"])
    ap.add_argument("--seed", default="0",
                    help="draw of designer examples and test turns; several, comma-separated, "
                         "also print the mean over the draws (the tool-call baselines run on the "
                         "first only): one draw of 200 + 100 turns moves by up to 5-10 points")
    ap.add_argument("--examples", default="4,10",
                    help="designer examples per intent, comma-separated: one run each; the "
                         "tool-call baselines run with the first count only")
    ap.add_argument("--tidy", action="store_true",
                    help="each intent's examples are one wording and the requests nearest it, as a designer "
                         "in a hurry writes them (what `ivr validate --explain` warns of), instead of a random draw")
    ap.add_argument("--modes", default="router,hybrid,forced,auto")
    ap.add_argument("--baseline-cases", type=int, default=100,
                    help="turns per menu for the tool-call baselines (0: all)")
    ap.add_argument("--threads", type=int, default=1, help="threads for onnxruntime and llama.cpp")
    ap.add_argument("--slm-max-threads", type=int, default=0,
                    help="let the SLM take up to this many threads while cores are idle, as the "
                         "server does (IVR_SLM_MAX_THREADS); the tool-call baseline gets the same "
                         "rule, so the ratio stays fair (0: --threads, fixed)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - {"router", "hybrid", *BASELINES}
    if unknown:
        ap.error(f"unknown modes: {', '.join(sorted(unknown))}")

    from ivr.nlu.embedder import load_embedder
    from ivr.registry import model_registry

    reg = model_registry()
    t = time.perf_counter()
    embedder = load_embedder(reg, threads=args.threads)
    slm = baseline = None
    if "hybrid" in args.modes:
        from ivr.nlu.slm import load_slm

        slm = load_slm(reg, n_threads=args.threads, max_threads=args.slm_max_threads or None)
    args.slm_calibrator, args.slm_tuning = None, {}
    if slm is not None:
        from ivr.nlu.intents import calibration_for

        args.slm_calibrator, args.slm_tuning = calibration_for(slm.info, reg.path.parent)
    if any(m in BASELINES for m in args.modes):
        from ivr.nlu.toolcall import ToolCallRouter

        baseline = ToolCallRouter(reg.for_role("slm").path, n_threads=args.threads,
                                  max_threads=args.slm_max_threads)
    threads = f"{args.threads}" + (f" to {args.slm_max_threads} as cores are idle"
                                   if args.slm_max_threads > args.threads else "")
    print(f"models loaded in {time.perf_counter() - t:.1f} s (SLM and baseline: "
          f"{reg.for_role('slm').name}, {threads} thread(s))")
    counts = [int(x) for x in str(args.examples).split(",")]
    modes = args.modes
    results = []
    seeds = [int(x) for x in str(args.seed).split(",")]
    for i, seed in enumerate(seeds):
        args.seed = seed
        for j, n_ex in enumerate(counts):
            args.examples = n_ex
            args.modes = modes if i == 0 and j == 0 else [m for m in modes if m not in BASELINES]
            results += [run_menu(int(m), args, embedder, slm, baseline) for m in args.menus.split(",")]
    if len(seeds) > 1:
        print_over_draws(results, seeds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
