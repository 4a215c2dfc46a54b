"""`ivr review accept INTENT TURN...`: reviewed turns become examples of an intent (or of what
the menu must not route, with `out_of_scope`), proven before they go live (issue #23).

The change is tried on the flow as it would load with it (ivr/dialog/reviewed.py) before anything
is written: the flow's queued turns and the accepted ones are routed with and without it (which
turns it fixes, which others it changes, how each touched menu's threshold moves), and the
flow's own tests (`ivr test`) are run on it. A change that breaks a flow test is refused, with
the failures; otherwise its entries are appended to `NAME.reviewed.yaml`, each with who, when
and from which call, and the server's flow watcher loads the new version (calls in progress keep
theirs; the call log records the version that answered).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ivr.dashboard.flow_test_cases import find_tests_file
from ivr.dialog.engine import FlowEngine
from ivr.dialog.loader import FlowLoadError, LoadedFlow, load_flow_text, with_reviewed_text
from ivr.dialog.reviewed import OUT_OF_SCOPE, reviewed_path
from ivr.privacy.redact import REDACTED
from ivr.tools.flowtest import FlowTestError, load_test_file, run_case

HEADER = ("# Examples accepted from reviewed calls (`ivr review accept`): the loader adds them to the\n"
          "# flow's intents. Delete an entry to undo it.\nexamples:\n")


class AcceptError(ValueError):
    pass


@dataclass
class Proof:
    fixed: list[str] = field(default_factory=list)  # accepted turns now routed as labelled
    still: list[str] = field(default_factory=list)  # accepted turns still routed otherwise
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # other turns: (text, before, after)
    tau: dict[str, tuple[float, float]] = field(default_factory=dict)  # node -> threshold before, after
    tests_passed: int = 0
    test_failures: list[str] = field(default_factory=list)  # cases the change breaks
    failing_before: list[str] = field(default_factory=list)  # cases that failed without it too


def turns_from_log(store, turn_ids: list[str]) -> list[dict]:
    """Each `CALL:SEQ` as the review queue names it: its words, node, flow and call."""
    out = []
    for turn_id in turn_ids:
        call_id, _, seq = turn_id.rpartition(":")
        call = store.get_call(call_id) if call_id and seq.isdigit() else None
        event = next((e for e in (call or {}).get("events", []) if e["seq"] == int(seq) and e["type"] == "nlu"), None)
        if event is None:
            raise AcceptError(f"{turn_id}: no such turn in the call log (turns are named CALL:SEQ by `ivr review`)")
        text = str(event["data"].get("text") or "").strip()
        if not text or REDACTED in text:
            raise AcceptError(f"{turn_id}: its words were redacted or empty: it cannot become an example")
        out.append({"id": turn_id, "text": text, "node": event["data"].get("node"), "flow": call["flow"],
                    "call": call_id})
    flows = {t["flow"] for t in out}
    if len(flows) != 1:
        raise AcceptError(f"the turns are from {len(flows)} flows ({', '.join(sorted(flows))}): accept one flow's at a time")
    return out


def entries_text(turns: list[dict], intent: str, by: str, at: str | None = None) -> str:
    at = at or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    items = [{"text": t["text"], "intent": intent, **({"node": t["node"]} if t.get("node") else {}),
              "by": by, "at": at, "call": t["call"]} for t in turns]
    dumped = yaml.safe_dump(items, sort_keys=False, allow_unicode=True, default_flow_style=None, width=200)
    return "".join("  " + line for line in dumped.splitlines(keepends=True))


def proposed(flow_path: Path, turns: list[dict], intent: str, by: str) -> tuple[LoadedFlow, LoadedFlow, str]:
    """(the flow as it loads now, as it would with the new entries, the reviewed file's new text)."""
    raw = flow_path.read_bytes()
    plain = load_flow_text(raw.decode("utf-8", errors="replace"), str(flow_path), raw)
    extra = reviewed_path(flow_path)
    old = extra.read_text() if extra.exists() else ""
    before = with_reviewed_text(plain, raw, old.encode()) if old else plain
    new = (old.rstrip("\n") + "\n" if old else HEADER) + entries_text(turns, intent, by)
    try:
        after = with_reviewed_text(plain, raw, new.encode())
    except FlowLoadError as exc:
        raise AcceptError(f"the flow would not load with it: {exc}") from None
    return before, after, new


def _menu(classifier, loaded: LoadedFlow, node: str | None):
    """The node's candidates as a call there sees them, prepared (None: it routes no intents)."""
    engine = FlowEngine(loaded)
    if node in loaded.flow.nodes:
        engine.state.node = node
    cands = engine.expectation().candidates
    if not cands.intents:
        return None
    classifier.prepare(cands.key, list(cands.intents))
    return cands


def _route(classifier, loaded: LoadedFlow, node: str | None, text: str) -> str:
    cands = _menu(classifier, loaded, node)
    return "-" if cands is None else classifier.classify(cands.key, list(cands.intents), text).intent


def _tau(classifier, loaded: LoadedFlow, node: str | None) -> float | None:
    cands = _menu(classifier, loaded, node)
    return None if cands is None else classifier.calibration(cands.key).get("tau")


def prove(classifier, nlu, before: LoadedFlow, after: LoadedFlow, accepted: list[dict], intent: str,
          queued: list[dict], tests_file: Path | None) -> Proof:
    proof = Proof()
    for turn in accepted:
        got = _route(classifier, after, turn["node"], turn["text"])
        (proof.fixed if got == intent else proof.still).append(f"{turn['text']!r} -> {got}")
    for node in {t["node"] for t in accepted}:
        tau0, tau1 = _tau(classifier, before, node), _tau(classifier, after, node)
        if tau0 is not None and tau1 is not None:
            proof.tau[str(node)] = (tau0, tau1)
    seen = {t["text"] for t in accepted}
    for turn in queued:
        if turn["text"] in seen:
            continue
        seen.add(turn["text"])
        was = _route(classifier, before, turn["node"], turn["text"])
        now = _route(classifier, after, turn["node"], turn["text"])
        if was != now:
            proof.changed.append((turn["text"], was, now))
    if tests_file is not None and tests_file.exists():
        try:
            spec, _ = load_test_file(tests_file)
        except FlowTestError as exc:
            proof.test_failures.append(str(exc))
            return proof

        async def run_all(flow: LoadedFlow):
            from ivr.dialog.engine import nlu_preparation

            await asyncio.to_thread(nlu.prepare_all, nlu_preparation(flow))
            return [await run_case(case, flow, nlu, env=spec.get("env") or {}, backend=spec.get("backend") or {},
                                   file=str(tests_file)) for case in spec["cases"]]

        # Only what the change breaks refuses it: a case failing already is the designer's to mend.
        was = {r.name: r.passed for r in asyncio.run(run_all(before))}
        for result in asyncio.run(run_all(after)):
            if result.passed:
                proof.tests_passed += 1
            elif was.get(result.name, False):
                proof.test_failures += [f"{result.name}: {f}" for f in result.failures]
            else:
                proof.failing_before.append(result.name)
    return proof


def report(proof: Proof, accepted: int, intent: str, file: Path, written: bool) -> list[str]:
    lines = [f"{accepted} turn(s) as examples of {intent}: {len(proof.fixed)} now routed there"
             + (f"; still elsewhere: {', '.join(proof.still)}" if proof.still else "")]
    for node, (t0, t1) in sorted(proof.tau.items()):
        lines.append(f"  threshold at {node}: {t0:.3f} -> {t1:.3f}")
    lines.append(f"  other queued turns that change: {len(proof.changed)}")
    lines += [f"    {text!r}: {was} -> {now}" for text, was, now in proof.changed[:10]]
    lines.append(f"  flow tests: {proof.tests_passed} passed, {len(proof.test_failures)} broken by this change"
                 + (f", failing before it too: {', '.join(proof.failing_before)}" if proof.failing_before else ""))
    lines += [f"    {f}" for f in proof.test_failures[:10]]
    if proof.test_failures:
        lines.append(f"refused: the change breaks the flow's tests; {file} is unchanged")
    elif written:
        lines.append(f"written to {file}; a running server loads the new version within a second")
    else:
        lines.append("dry run: nothing written")
    return lines


def accept(store, flows_dir: Path, intent: str, turn_ids: list[str], *, by: str, classifier, nlu,
           dry_run: bool = False) -> tuple[Proof, list[str]]:
    from ivr.serving.flows import FlowRepository

    turns = turns_from_log(store, turn_ids)
    repo = FlowRepository(flows_dir)
    repo.reload()
    loaded = repo.get(turns[0]["flow"])
    if loaded is None:
        raise AcceptError(f"flow {turns[0]['flow']!r} is not in {flows_dir}")
    flow_path = Path(loaded.path)
    if intent != OUT_OF_SCOPE and not _has_intent(loaded, intent):
        raise AcceptError(f"flow {loaded.name} has no intent {intent!r} (a new intent is the designer's to add to the flow)")
    before, after, new_text = proposed(flow_path, turns, intent, by)
    queued = store.review_queue(flow=loaded.name, limit=2000)  # accepted ones too: a change must not undo them
    tests = find_tests_file(flow_path, flows_dir)
    proof = prove(classifier, nlu, before, after, turns, intent, queued, tests if tests.exists() else None)
    target = reviewed_path(flow_path)
    written = False
    if not proof.test_failures and not dry_run:
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(new_text)
        tmp.replace(target)
        written = True
    return proof, report(proof, len(turns), intent, target, written)


def _has_intent(loaded: LoadedFlow, intent: str) -> bool:
    return intent in loaded.flow.global_intents or any(intent in (n.intents or {}) for n in loaded.flow.nodes.values())
