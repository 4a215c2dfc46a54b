"""Slot benchmark on real first turns: an intent and every value said in the same breath.

    .venv/bin/python -m ivr.bench.sgd [--per-service 25] [--examples 6] [--baseline-per-service 5]
                                      [--services held-out|dev|all|NAME,...] [--json FILE]

Data: the Schema-Guided Dialogue train split's first user turns ($IVR_SGD, else
shared/data/sgd_train in the folder that holds the repository): twelve services, each with its
intents, slot descriptions and, per turn, the values the caller said.

Each service becomes a flow the way a designer would write one (`flow_yaml`): a menu with the
service's intents, each described by the schema and given `--examples` requests from the data
with their values marked (`[Denver](city)`), going to one question per slot of the intent
(required, then optional). Slots are typed from the schema: dates, times, amounts and counts
get their parsers; a yes/no categorical is `yes_no`, other categoricals are `enum` with the
schema's values as keys and nothing more; everything else is `text`. The turns scored are
other first turns of the same service, run through the server's own turn step
(`ivr.conversation.turn.TurnStep`: router + SLM for the intent, the parsers' spans and the
small model's grounded extraction for the values).

Scored per turn: the intent; each value the line keeps against the values the caller said for
the intent's slots (precision, recall, F1; a value counts when it equals the gold value in the
slot's canonical form: dates and times through our parsers, text compared case- and
punctuation-blind); the turn fully right (intent and every value, nothing extra); the NLU time
of the whole turn step, split by turns that carry values and turns that don't, and for the
latter the intent step alone on the same turns (the cost of looking for values that aren't there).

The baseline is the pipecat.flows way on the same GGUF: each intent a function whose
parameters are its slots (JSON schema types, descriptions, enum values), one tool call per
turn with llama-cpp-python's chat template, the arguments read through the same parsers. It
costs seconds a turn, so it runs on the first `--baseline-per-service` turns of each service,
and the comparison row scores ours on the same turns.

Services used while this was built (`dev`) are reported apart from the rest (`held-out`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV = ("Restaurants_1", "RentalCars_1", "Banks_1", "Hotels_1")

_COUNT = re.compile(r"^(number_of_|num_)|(_size|travelers|passengers|riders|seats|tickets|rooms|beds|baths|days)$")
_MONEY = re.compile(r"(amount|balance|fare|price|cost)")


def data_dir() -> Path:
    env = os.environ.get("IVR_SGD")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data" / "sgd_train")


def slot_type(slot: dict) -> tuple[str, list[str]]:
    """How a designer types an SGD slot: (type, enum keys)."""
    name, values = slot["name"], slot.get("possible_values") or []
    if slot.get("is_categorical"):
        if set(values) <= {"True", "False"}:
            return "yes_no", []
        if values and all(v.isdigit() for v in values):
            return "number", []
        return "enum", values
    if name.endswith("date") or name == "date":
        return "date", []
    if name.endswith("time") or name == "time":
        return "time", []
    if _MONEY.search(name):
        return "money", []
    if _COUNT.search(name):
        return "number", []
    return "text", []


def _yaml(text: str) -> str:
    return json.dumps(text)  # JSON strings are YAML strings


def mark(utterance: str, slots: dict[str, list[str]], allowed: set[str]) -> str:
    """The utterance with each value's words marked [words](slot), where they are said verbatim."""
    spans = []
    for slot, spellings in slots.items():
        if slot not in allowed:
            continue
        for said in spellings:
            m = re.search(r"(?<!\w)" + re.escape(said) + r"(?!\w)", utterance, re.I)
            if m:
                spans.append((m.start(), m.end(), slot))
                break
    out, pos = [], 0
    for a, b, slot in sorted(spans):
        if a < pos:
            continue
        out.append(utterance[pos:a] + f"[{utterance[a:b]}]({slot})")
        pos = b
    return "".join(out) + utterance[pos:]


def intent_slots(intent: dict) -> list[str]:
    return list(intent["required_slots"]) + [s for s in intent["optional_slots"] if s not in intent["required_slots"]]


def flow_yaml(service: dict, examples: dict[str, list[str]]) -> str:
    slots = {s["name"]: s for s in service["slots"]}
    used = sorted({s for i in service["intents"] for s in intent_slots(i)})
    lines = [f"flow: {service['service_name'].lower()}", "start: menu", "slots:"]
    for name in used:
        kind, keys = slot_type(slots[name])
        lines.append(f"  {name}:")
        lines.append(f"    type: {kind}")
        lines.append(f"    description: {_yaml(slots[name]['description'])}")
        if kind == "yes_no":
            lines.append("    heard: mention")  # a feature ("with wifi"): yes/no slots are asked by default
        if kind == "enum":
            lines.append("    choices:")
            for key in keys:
                lines.append(f"      {_yaml(key)}: []")
    lines += ["nodes:", "  menu:", '    say: "How can I help?"', "    intents:"]
    for intent in service["intents"]:
        first = f"{intent['name']}_{intent_slots(intent)[0]}" if intent_slots(intent) else "done"
        lines.append(f"      {intent['name']}:")
        lines.append(f"        description: {_yaml(intent['description'])}")
        lines.append("        examples:" + ("" if examples.get(intent["name"]) else " []"))
        for ex in examples.get(intent["name"], []):
            lines.append(f"          - {_yaml(ex)}")
        lines.append(f"        goto: {first}")
    for intent in service["intents"]:
        names = intent_slots(intent)
        for k, name in enumerate(names):
            nxt = f"{intent['name']}_{names[k + 1]}" if k + 1 < len(names) else "done"
            lines += [f"  {intent['name']}_{name}:",
                      f"    say: {_yaml('What is the ' + slots[name]['description'].lower().rstrip('.') + '?')}",
                      f"    collect: {name}", f"    next: {nxt}"]
    lines += ["  done:", '    say: "Thank you."', "    hangup: true"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- scoring
def _norm(text) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", str(text).lower()))


def canonical(kind: str, spellings: list[str], keys: list[str]):
    """The gold value in our canonical form (None: none of its spellings parses)."""
    from ivr.nlu.slots import parse_slot

    if kind == "text":
        return {_norm(s) for s in spellings}
    if kind == "yes_no":
        return {s == "True" for s in spellings}
    if kind == "enum":
        return {s for s in spellings if s in keys} or None
    got = set()
    for s in spellings:
        r = parse_slot(kind, s)
        if r.ok:
            got.add(r.value)
    return got or None


def matches(kind: str, value, gold: set) -> bool:
    if kind == "text":
        return _norm(value) in gold
    return value in gold


@dataclass
class Score:
    turns: int = 0
    intent_ok: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    fully: int = 0
    with_values_ms: list = field(default_factory=list)
    without_values_ms: list = field(default_factory=list)
    intent_only_ms: list = field(default_factory=list)
    model_turns: int = 0
    skipped_gold: int = 0
    by_type: dict = field(default_factory=dict)  # slot type -> [tp, fp, fn]

    def count(self, kind: str, which: int) -> None:
        self.by_type.setdefault(kind, [0, 0, 0])[which] += 1

    def add(self, other: "Score") -> None:
        for k, v in vars(other).items():
            if isinstance(v, list):
                getattr(self, k).extend(v)
            elif isinstance(v, dict):
                for kind, counts in v.items():
                    mine = self.by_type.setdefault(kind, [0, 0, 0])
                    for i, c in enumerate(counts):
                        mine[i] += c
            else:
                setattr(self, k, getattr(self, k) + v)

    def row(self) -> dict:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")
        f1 = 2 * p * r / (p + r) if p + r else float("nan")

        def pct(xs, q):
            if not xs:
                return float("nan")
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

        return {"turns": self.turns, "intent_acc": self.intent_ok / max(1, self.turns), "slot_p": p, "slot_r": r,
                "slot_f1": f1, "fully_right": self.fully / max(1, self.turns),
                "values_p50": pct(self.with_values_ms, 0.5), "values_p95": pct(self.with_values_ms, 0.95),
                "novalues_p50": pct(self.without_values_ms, 0.5), "novalues_p95": pct(self.without_values_ms, 0.95),
                "intent_only_p50": pct(self.intent_only_ms, 0.5), "intent_only_p95": pct(self.intent_only_ms, 0.95),
                "model_share": self.model_turns / max(1, self.turns), "skipped_gold": self.skipped_gold}


def score_turn(pred_intent, pred_values: dict, gold_intent: str, gold: dict, kinds: dict, keys: dict, sc: Score) -> None:
    sc.turns += 1
    sc.intent_ok += pred_intent == gold_intent
    gold_c = {}
    for slot, spellings in gold.items():
        c = canonical(kinds[slot], spellings, keys.get(slot, []))
        if c is None:
            sc.skipped_gold += 1
        else:
            gold_c[slot] = c
    right = 0
    for slot, value in pred_values.items():
        if slot in gold_c and matches(kinds[slot], value, gold_c[slot]):
            sc.tp += 1
            sc.count(kinds[slot], 0)
            right += 1
        else:
            sc.fp += 1
            sc.count(kinds[slot], 1)
    for slot, gold_value in gold_c.items():
        if not (slot in pred_values and matches(kinds[slot], pred_values[slot], gold_value)):
            sc.fn += 1
            sc.count(kinds[slot], 2)
    sc.fully += pred_intent == gold_intent and right == len(gold_c) == len(pred_values)


# ------------------------------------------------------------------------------- the run
def load(data: Path):
    schema = {s["service_name"]: s for s in json.loads((data / "schema.json").read_text())}
    turns = [json.loads(line) for line in (data / "first_turns.jsonl").read_text().splitlines() if line.strip()]
    return schema, turns


def split_service(service: dict, turns: list[dict], n_examples: int, per_service: int, offset: int = 0):
    """Designer examples (marked) from the first turns of each intent, test turns from the rest."""
    by_intent: dict[str, list[dict]] = {}
    for t in turns:
        by_intent.setdefault(t["intent"], []).append(t)
    allowed = {i["name"]: set(intent_slots(i)) for i in service["intents"]}
    examples, test = {}, []
    for intent in service["intents"]:
        rows = by_intent.get(intent["name"], [])
        # a designer writes some requests with values and some without, as callers speak
        with_v = [r for r in rows if r["slots"]][: (n_examples + 1) // 2]
        without = [r for r in rows if not r["slots"]][: n_examples - len(with_v)]
        chosen = {id(r) for r in with_v + without}
        examples[intent["name"]] = [mark(r["utterance"], r["slots"], allowed[intent["name"]]) for r in with_v + without]
        test.append([(r, intent["name"]) for r in rows if id(r) not in chosen])
    # round-robin over the intents, so a small --per-service still sees all of them
    mixed = [t for round_ in zip_longest(*test) for t in round_ if t is not None]
    return examples, mixed[offset:offset + per_service]


class _Counting:
    """Counts the small model's extraction calls of one turn."""

    def __init__(self, extract):
        self.extract, self.calls = extract, 0

    async def __call__(self, *args):
        self.calls += 1
        return await self.extract(*args)


async def run_service(name, service, turns, nlu, args, baseline=None):
    from ivr.conversation.turn import TurnStep
    from ivr.dialog.engine import FlowEngine, nlu_preparation
    from ivr.dialog.loader import load_flow_text
    from ivr.handoff.policy import EscalationPolicy

    examples, test = split_service(service, [t for t in turns if t["service"] == name], args.examples, args.per_service,
                                   args.offset)
    loaded = load_flow_text(flow_yaml(service, examples), f"<{name}>")
    t0 = time.perf_counter()
    nlu.prepare_all(nlu_preparation(loaded))
    prep = time.perf_counter() - t0
    kinds = {s: d.type for s, d in loaded.flow.slots.items()}
    keys = {s: list(d.choices or {}) for s, d in loaded.flow.slots.items()}
    paths = {i["name"]: set(intent_slots(i)) for i in service["intents"]}
    ours, ours_sub, base = Score(), Score(), Score()
    for k, (row, gold_intent) in enumerate(test):
        engine = FlowEngine(loaded)
        engine.start()
        step = TurnStep(engine, nlu, EscalationPolicy(), loaded.flow, on_error=lambda node, err: print("error", err, file=sys.stderr))
        exp = engine.expectation()
        counting = _Counting(nlu.extract)
        nlu.extract = counting
        getattr(nlu.classifier.embedder, "_cache", {}).pop(row["utterance"], None)
        started = time.perf_counter()
        understood = await step.understand(exp, row["utterance"])
        ms = (time.perf_counter() - started) * 1000
        del nlu.extract  # back to the class's method
        u = understood.understanding
        gold = {s: v for s, v in row["slots"].items() if s in paths[gold_intent]}
        pred = {v.slot: v.value for v in u.values}
        one = Score()
        one.model_turns += bool(counting.calls)
        (one.with_values_ms if gold else one.without_values_ms).append(ms)
        if not gold:  # the intent step alone, from cold (the embedder caches the words)
            getattr(nlu.classifier.embedder, "_cache", {}).pop(row["utterance"], None)
            t1 = time.perf_counter()
            nlu.understand_sync(exp.candidates, row["utterance"])
            one.intent_only_ms.append((time.perf_counter() - t1) * 1000)
        score_turn(u.intent, pred, gold_intent, gold, kinds, keys, one)
        ours.add(one)
        if baseline is not None and k < args.baseline_per_service:
            ours_sub.add(one)
            b = Score()
            t1 = time.perf_counter()
            intent, args_ = baseline.call(service, row["utterance"], kinds, keys)
            (b.with_values_ms if gold else b.without_values_ms).append((time.perf_counter() - t1) * 1000)
            score_turn(intent, args_, gold_intent, gold, kinds, keys, b)
            base.add(b)
        if args.errors and not one.fully:
            print(f"  {name}: {row['utterance']!r}\n    gold {gold_intent} {gold}\n    got  {u.intent} {pred}", file=sys.stderr)
    return ours, ours_sub, base, prep


class ToolCallSlots:
    """The baseline: one tool call per turn, each intent a function with its slots as parameters."""

    def __init__(self, model_path):
        from ivr.nlu.toolcall import GREETING, SYSTEM, ToolCallRouter

        self.router = ToolCallRouter(model_path, n_threads=2, max_tokens=96)
        self.system, self.greeting = SYSTEM, GREETING

    def tools(self, service, kinds, keys):
        slots = {s["name"]: s for s in service["slots"]}
        out = []
        for intent in service["intents"]:
            props = {}
            for name in intent_slots(intent):
                kind = kinds[name]
                prop = {"type": {"number": "number", "yes_no": "boolean"}.get(kind, "string"),
                        "description": slots[name]["description"]}
                if kind == "enum":
                    prop["enum"] = keys[name]
                props[name] = prop
            out.append({"type": "function", "function": {
                "name": intent["name"], "description": intent["description"],
                "parameters": {"type": "object", "properties": props, "required": []}}})
        return out

    def call(self, service, text, kinds, keys):
        from ivr.nlu.slots import parse_slot
        from ivr.nlu.toolcall import _CALL  # noqa: PLC2701 (the same pattern the baseline's router reads)

        llm = self.router.llm
        self.router.threads.apply(llm)
        out = llm.create_chat_completion(
            messages=[{"role": "system", "content": self.system}, {"role": "assistant", "content": self.greeting},
                      {"role": "user", "content": text}],
            tools=self.tools(service, kinds, keys), tool_choice="auto", temperature=0.0, max_tokens=96)
        reply = out["choices"][0]["message"].get("content") or ""
        # Qwen's template asks for <tool_call> tags, but the 0.5B model often writes the call's
        # JSON bare: both count as a call, so the baseline is not scored down for its format.
        m = _CALL.search(reply)
        body = m.group(1) if m else reply[reply.find("{"):reply.rfind("}") + 1]
        try:
            call = json.loads(body)
        except ValueError:
            return None, {}
        if not isinstance(call, dict):
            return None, {}
        values = {}
        for slot, raw in (call.get("arguments") or {}).items():
            if slot not in kinds or raw in (None, "", []):
                continue
            kind = kinds[slot]
            if kind == "yes_no":
                values[slot] = raw if isinstance(raw, bool) else str(raw).lower() in ("true", "yes")
            elif kind == "enum":
                if raw in keys[slot]:
                    values[slot] = raw
            elif kind == "text":
                values[slot] = str(raw)
            else:
                r = parse_slot(kind, str(raw))
                if r.ok:
                    values[slot] = r.value
        return call.get("name"), values


def _f(v, spec=".2f"):
    return "-" if v != v else format(v, spec)


def table(rows: list[tuple[str, dict]]) -> str:
    head = ("| set | turns | intent acc | slot P | slot R | slot F1 | fully right | NLU p50/p95, turns with values (ms) "
            "| turns without values (ms) | intent step alone, same turns (ms) | model asked |")
    out = [head, "|" + "---|" * 11]
    for name, r in rows:
        out.append(f"| {name} | {r['turns']} | {_f(r['intent_acc'])} | {_f(r['slot_p'])} | {_f(r['slot_r'])} | "
                   f"{_f(r['slot_f1'])} | {_f(r['fully_right'])} | {_f(r['values_p50'], '.0f')} / {_f(r['values_p95'], '.0f')} | "
                   f"{_f(r['novalues_p50'], '.0f')} / {_f(r['novalues_p95'], '.0f')} | "
                   f"{_f(r['intent_only_p50'], '.0f')} / {_f(r['intent_only_p95'], '.0f')} | {_f(r['model_share'])} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ivr bench sgd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-service", type=int, default=25)
    ap.add_argument("--examples", type=int, default=6)
    ap.add_argument("--offset", type=int, default=0, help="skip this many test turns of each service: another "
                    "sample of turns, for a check on wordings the work was not looked at on (0)")
    ap.add_argument("--baseline-per-service", type=int, default=4, help="0: no baseline")
    ap.add_argument("--services", default="all", help="held-out, dev, all, or names")
    ap.add_argument("--errors", action="store_true", help="print the turns it got wrong")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--none-bias", type=float, default=None, help="the extractor's bias toward none (tuning)")
    ap.add_argument("--end-bias", type=float, default=None, help="the extractor's bias toward ending (tuning)")
    args = ap.parse_args(argv)

    from ivr.nlu.intents import load_intent_classifier
    from ivr.nlu.service import NLUService

    data = data_dir()
    if not (data / "schema.json").exists():
        print(f"no SGD data at {data} (set IVR_SGD)", file=sys.stderr)
        return 1
    schema, turns = load(data)
    if args.services == "all":
        names = list(schema)
    elif args.services in ("dev", "held-out"):
        names = [n for n in schema if (n in DEV) == (args.services == "dev")]
    else:
        names = args.services.split(",")
    print(f"loading models; {len(names)} services, {args.per_service} turns each", flush=True)
    nlu = NLUService(load_intent_classifier(slm_threads=2), timeout=None)
    if args.none_bias is not None and nlu.extractor is not None:
        nlu.extractor.none_bias = args.none_bias
    if args.end_bias is not None and nlu.extractor is not None:
        nlu.extractor.end_bias = args.end_bias
    baseline = None
    if args.baseline_per_service > 0:
        baseline = ToolCallSlots(nlu.classifier.slm.model_path)
    groups = {"held-out": Score(), "dev": Score()}
    subs, bases = Score(), Score()
    rows = []
    for name in names:
        ours, sub, base, prep = asyncio.run(run_service(name, schema[name], turns, nlu, args, baseline))
        groups["dev" if name in DEV else "held-out"].add(ours)
        subs.add(sub)
        bases.add(base)
        rows.append((name, ours.row()))
        print(f"{name}: {json.dumps({k: round(v, 3) for k, v in ours.row().items()})} (prompts {prep:.1f} s)", flush=True)
    summary = [(f"**{g}**", s.row()) for g, s in groups.items() if s.turns]
    print("\n" + table(summary + rows))
    every = Score()
    for s_ in groups.values():
        every.add(s_)
    print("\nBy slot type, all services (found by the parsers: number, money, date, time, yes_no, "
          "enum by its synonyms; by the small model: text):\n")
    print("| type | right | wrong | missed | precision | recall |\n|---|---|---|---|---|---|")
    for kind, (tp, fp, fn) in sorted(every.by_type.items()):
        print(f"| {kind} | {tp} | {fp} | {fn} | {_f(tp / (tp + fp) if tp + fp else float('nan'))} | "
              f"{_f(tp / (tp + fn) if tp + fn else float('nan'))} |")
    if baseline is not None and bases.turns:
        print(f"\nAgainst the tool-call baseline on the same {bases.turns} turns (first {args.baseline_per_service} of each service):\n")
        print(table([("ivr (parsers + SLM)", subs.row()), ("tool call, same GGUF", bases.row())]))
        ours_t = statistics.median(subs.with_values_ms + subs.without_values_ms)
        base_t = statistics.median(bases.with_values_ms + bases.without_values_ms)
        print(f"\nmedian NLU time per turn: ivr {ours_t:.0f} ms, tool call {base_t:.0f} ms ({base_t / ours_t:.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": dict(summary + rows),
                                               "baseline": {"ivr": subs.row(), "toolcall": bases.row()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
