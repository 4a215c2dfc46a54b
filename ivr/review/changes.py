"""A reviewer's decision about turns of the queue, as a change to the line (issue #23).

- **accept** INTENT turns: they become examples of an intent (or, with `out_of_scope`, of what
  the menu must not route), proven before they go live;
- **undo** a change: its examples are taken out again, proven the same way;
- **dismiss** turns (nothing to learn from them) or **propose** a new intent for them (the
  designer's to add to the flow): the turns leave the queue and the flow is unchanged;
- **restore** dismissed or proposed turns to the queue.

A change is tried on the flow as it would load with it (ivr/dialog/reviewed.py) before anything
is written: the flow's queued turns and the accepted ones are routed with and without it (which
turns it fixes, which others it changes, how each touched menu's threshold moves), and the
flow's own tests (`ivr test`) are run on it. A change that breaks a flow test is refused, with
the failures; otherwise its entries are appended to `NAME.reviewed.yaml` (each with who, when,
which call and the change's id) and the server's flow watcher loads the new version (calls in
progress keep theirs; the call log records the version that answered).

Every decision, refusals included, is a `review` event on the call each turn came from: the
audit trail, in the call log every instance shares.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from ivr.calllog.review_queue import REDACTED
from ivr.conversation.flow_test_cases import find_tests_file
from ivr.conversation.flow_tests import FlowTestError, load_test_file, run_case
from ivr.dialog.engine import FlowEngine, nlu_preparation
from ivr.dialog.loader import FlowLoadError, LoadedFlow, load_flow_text, with_reviewed_text
from ivr.dialog.reviewed import (OUT_OF_SCOPE, ReviewedError, flow_path_of, parse_reviewed, reviewed_files,
                                 reviewed_path)

HEADER = ("# Examples accepted from reviewed calls (`ivr review accept`, the dashboard's Review page): the\n"
          "# loader adds them to the flow's intents. `ivr review undo CHANGE` (or deleting entries) undoes them.\n"
          "examples:\n")


class ChangeError(ValueError):
    """The decision cannot be carried out as asked; the message says why."""


@dataclass
class Proof:
    fixed: list[str] = field(default_factory=list)  # accepted turns now routed as labelled
    still: list[str] = field(default_factory=list)  # accepted turns still routed otherwise
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # other turns: (text, before, after)
    tau: dict[str, tuple[float, float]] = field(default_factory=dict)  # node -> threshold before, after
    checked: int = 0  # other queued turns routed with and without the change
    tests_passed: int = 0
    test_failures: list[str] = field(default_factory=list)  # cases the change breaks
    failing_before: list[str] = field(default_factory=list)  # cases that failed without it too


@dataclass
class Outcome:
    """What became of a decision: `action` is accepted, undone, refused or dry_run."""

    action: str
    change: str
    flow: str
    intent: str | None
    file: str
    turns: int
    proof: Proof
    lines: list[str]

    @property
    def written(self) -> bool:
        return self.action in ("accepted", "undone")

    def as_dict(self) -> dict:
        return {**asdict(self), "written": self.written}


def new_change_id() -> str:
    return "r" + secrets.token_hex(4)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ turns named CALL:SEQ

def turns_from_log(store, turn_ids: list[str], *, one_flow: bool = True) -> list[dict]:
    """Each `CALL:SEQ` as the review queue names it: its words, node, flow and call."""
    if not turn_ids:
        raise ChangeError("no turns given (turns are named CALL:SEQ by `ivr review`)")
    out = []
    calls: dict[str, dict | None] = {}
    for turn_id in turn_ids:
        call_id, _, seq = str(turn_id).rpartition(":")
        if call_id and seq.isdigit() and call_id not in calls:
            calls[call_id] = store.get_call(call_id)
        call = calls.get(call_id) if seq.isdigit() else None
        event = next((e for e in (call or {}).get("events", []) if e["seq"] == int(seq) and e["type"] == "nlu"), None)
        if event is None:
            raise ChangeError(f"{turn_id}: no such turn in the call log (turns are named CALL:SEQ by `ivr review`)")
        text = str(event["data"].get("text") or "").strip()
        if not text or REDACTED in text:
            raise ChangeError(f"{turn_id}: its words were redacted or empty: it cannot become an example")
        out.append({"id": turn_id, "seq": int(seq), "text": text, "node": event["data"].get("node"),
                    "flow": call["flow"], "call": call_id})
    flows = {t["flow"] for t in out}
    if one_flow and len(flows) != 1:
        raise ChangeError(f"the turns are from {len(flows)} flows ({', '.join(sorted(flows))}): one flow's at a time")
    return out


def _audit(store, turns: list[dict], action: str, *, by: str, change: str | None = None, intent: str | None = None,
           file: str | None = None, reason: str | None = None) -> None:
    for t in turns:
        store.add_event(t["call"], "review", {
            "action": action, "turn": t.get("seq"), "text": t["text"], "node": t.get("node"), "flow": t.get("flow"),
            **{k: v for k, v in (("intent", intent), ("by", by), ("change", change), ("file", file),
                                 ("reason", reason)) if v is not None}})
    store.flush()  # in the log before the reviewer is told it is done, and before the queue is read again


# ------------------------------------------------------------------ the reviewed file's text

def entries_text(turns: list[dict], intent: str, by: str, change: str, at: str | None = None) -> str:
    at = at or _now()
    items = [{"text": t["text"], "intent": intent, **({"node": t["node"]} if t.get("node") else {}),
              "by": by, "at": at, "call": t["call"], "change": change} for t in turns]
    dumped = yaml.safe_dump(items, sort_keys=False, allow_unicode=True, default_flow_style=None, width=200)
    return "".join("  " + line for line in dumped.splitlines(keepends=True))


def without_change(text: str, change: str) -> tuple[str, list[dict]]:
    """The reviewed file's text with the entries of `change` taken out, every other line (the
    designer's comments included) as it was; and the entries taken out. Comment and blank lines
    go with the entry after them (a note is written above what it is about); those after the last
    entry stay."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "examples:"), None)
    if start is None:
        raise ChangeError("the reviewed file has no top-level `examples:` list")
    head, chunks, loose = lines[:start + 1], [], []  # loose: comments waiting for their entry
    entry_indent = None
    for line in lines[start + 1:]:
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if stripped.startswith("- ") and (entry_indent is None or indent == entry_indent):
            entry_indent = indent
            chunks.append(loose + [line])
            loose = []
        elif not stripped.strip() or stripped.startswith("#"):
            loose.append(line)
        elif chunks:
            chunks[-1] += loose + [line]
            loose = []
        else:
            head += loose + [line]
            loose = []
    kept, removed = [head], []
    for chunk in chunks:
        body = [line[entry_indent:] for line in chunk if line.strip() and not line.lstrip(" ").startswith("#")]
        try:
            entry = yaml.safe_load("".join(body))
        except yaml.YAMLError:
            entry = None
        entry = entry[0] if isinstance(entry, list) and entry and isinstance(entry[0], dict) else {}
        if str(entry.get("change") or "") == change:
            removed.append(entry)
        else:
            kept.append(chunk)
    kept.append(loose)
    new = "".join(line for chunk in kept for line in chunk)
    try:
        expected = sum(1 for ex in parse_reviewed(text) if ex.change == change)
        if len(removed) != expected or len(parse_reviewed(new)) != len(parse_reviewed(text)) - expected:
            raise ChangeError("the reviewed file is not laid out one entry per `- ` item as written here: "
                              f"take change {change}'s entries out by hand")
    except ReviewedError as exc:
        raise ChangeError(f"the reviewed file does not parse: {exc}") from None
    return new, removed


def _loaded_pair(flow_path: Path, old: str, new: str) -> tuple[LoadedFlow, LoadedFlow]:
    """(the flow with reviewed text `old`, with `new`)."""
    raw = flow_path.read_bytes()
    plain = load_flow_text(raw.decode("utf-8", errors="replace"), str(flow_path), raw)
    try:
        before = with_reviewed_text(plain, raw, old.encode()) if old else plain
    except FlowLoadError as exc:
        raise ChangeError(f"the flow does not load as it is: {exc}") from None
    try:
        after = with_reviewed_text(plain, raw, new.encode())
    except FlowLoadError as exc:
        raise ChangeError(f"the flow would not load with it: {exc}") from None
    return before, after


def proposed(flow_path: Path, turns: list[dict], intent: str, by: str,
             change: str = "") -> tuple[LoadedFlow, LoadedFlow, str, str]:
    """(the flow as it loads now, as it would with the new entries, the reviewed file's text now
    and with them)."""
    extra = reviewed_path(flow_path)
    old = extra.read_text() if extra.exists() else ""
    new = (old.rstrip("\n") + "\n" if old else HEADER) + entries_text(turns, intent, by, change or new_change_id())
    before, after = _loaded_pair(flow_path, old, new)
    return before, after, old, new


# ------------------------------------------------------------------ the proof

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


def prove(classifier, nlu, before: LoadedFlow, after: LoadedFlow, accepted: list[dict], intent: str | None,
          queued: list[dict], tests_file: Path | None, nodes: set | None = None) -> Proof:
    """`nodes`: the menus whose threshold to report (default: where the accepted turns were said)."""
    proof = Proof()
    for turn in accepted:
        got = _route(classifier, after, turn["node"], turn["text"])
        (proof.fixed if got == intent else proof.still).append(f"{turn['text']!r} -> {got}")
    for node in nodes if nodes is not None else {t["node"] for t in accepted}:
        tau0, tau1 = _tau(classifier, before, node), _tau(classifier, after, node)
        if tau0 is not None and tau1 is not None:
            proof.tau[str(node)] = (tau0, tau1)
    seen = {t["text"] for t in accepted}
    for turn in queued:
        if turn["text"] in seen:
            continue
        seen.add(turn["text"])
        proof.checked += 1
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


def report(proof: Proof, what: str, file: Path, action: str) -> list[str]:
    lines = [what]
    for node, (t0, t1) in sorted(proof.tau.items()):
        lines.append(f"  threshold at {node}: {t0:.3f} -> {t1:.3f}")
    lines.append(f"  other queued turns that change: {len(proof.changed)} of {proof.checked} at the menus it touches")
    lines += [f"    {text!r}: {was} -> {now}" for text, was, now in proof.changed[:10]]
    lines.append(f"  flow tests: {proof.tests_passed} passed, {len(proof.test_failures)} broken by this change"
                 + (f", failing before it too: {', '.join(proof.failing_before)}" if proof.failing_before else ""))
    lines += [f"    {f}" for f in proof.test_failures[:10]]
    if action == "refused":
        lines.append(f"refused: the change breaks the flow's tests; {file} is unchanged")
    elif action == "dry_run":
        lines.append("dry run: nothing written")
    else:
        lines.append(f"written to {file}; a running server loads the new version within a second")
    return lines


# ------------------------------------------------------------------ the decisions

def _tests_file(flow_path: Path, flows_dir: Path) -> Path | None:
    tests = find_tests_file(flow_path, flows_dir)
    return tests if tests.exists() else None


def _writable(target: Path) -> None:
    """Before the proof (tens of seconds): a change that could not be written is said at once."""
    import os

    if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ChangeError(f"{target.parent} cannot be written here (a container image or a mounted ConfigMap): "
                          "review where the flows live, `ivr review accept|undo --flows DIR --db URL`, then deploy")


def _write(target: Path, old: str, new: str) -> None:
    """Write `new` over `old`, unless the file changed while the change was proven (another
    reviewer, on this server, another one sharing the folder, or `ivr review` in a terminal):
    then nothing is written, and the reviewer is asked to try again on the file as it is."""
    import fcntl
    import os
    import tempfile

    try:
        with open(target.with_name(f".{target.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the compare and the write, one reviewer at a time
            now = target.read_text() if target.exists() else ""
            if now != old:
                raise ChangeError(f"{target.name} changed while this change was being proven (another review): "
                                  "nothing was written; try it again")
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as out:
                    out.write(new)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except OSError as exc:
        raise ChangeError(f"{target} could not be written ({exc.strerror or exc})") from None


def accept(store, find_flow: Callable[[str], LoadedFlow | None], flows_dir: Path, intent: str, turn_ids: list[str],
           *, by: str, classifier, nlu, dry_run: bool = False) -> Outcome:
    """`find_flow(name)`: the flow the line answers with now (its file is the one changed)."""
    turns = turns_from_log(store, turn_ids)
    flow_name = turns[0]["flow"]
    loaded = find_flow(flow_name)
    if loaded is None:
        raise ChangeError(f"flow {flow_name!r} is not loaded from {flows_dir}")
    if intent != OUT_OF_SCOPE and not has_intent(loaded, intent):
        raise ChangeError(f"flow {loaded.name} has no intent {intent!r}: propose it as a new intent instead "
                          "(a new intent is the designer's to add to the flow)")
    flow_path = Path(loaded.path)
    if not dry_run:
        _writable(reviewed_path(flow_path))
    change = new_change_id()
    before, after, old_text, new_text = proposed(flow_path, turns, intent, by, change)
    # accepted ones too: a change must not undo them
    queued = _touched(store.review_queue(flow=loaded.name, limit=5000), {t["node"] for t in turns},
                      intent in loaded.flow.global_intents)
    proof = prove(classifier, nlu, before, after, turns, intent, queued, _tests_file(flow_path, flows_dir))
    target = reviewed_path(flow_path)
    action = "refused" if proof.test_failures else "dry_run" if dry_run else "accepted"
    if action == "accepted":
        _write(target, old_text, new_text)
    if action != "dry_run":
        _audit(store, turns, action, by=by, change=change, intent=intent, file=target.name,
               reason="; ".join(proof.test_failures[:3]) or None)
    what = (f"{len(turns)} turn(s) as examples of {intent}: {len(proof.fixed)} now routed there"
            + (f"; still elsewhere: {', '.join(proof.still)}" if proof.still else ""))
    return Outcome(action, change, loaded.name, intent, str(target), len(turns), proof,
                   report(proof, what, target, action) + ([f"change {change}: `ivr review undo {change}` takes it out"]
                                                          if action == "accepted" else []))


def find_change(flows_dir: Path, change: str) -> tuple[Path, Path]:
    """(the flow file, its reviewed file) holding the entries of `change`."""
    for path, examples in reviewed_files(flows_dir):
        if any(ex.change == change for ex in examples):
            flow = flow_path_of(path)
            if flow is None:
                raise ChangeError(f"{path.name} has no flow file beside it")
            return flow, path
    raise ChangeError(f"no change {change!r} in the reviewed examples under {flows_dir}")


def undo(store, flows_dir: Path, change: str, *, by: str, classifier, nlu, dry_run: bool = False) -> Outcome:
    """Take a change's examples out again, proven like any change: refused if a flow test that
    passes with them fails without them."""
    flow_path, target = find_change(flows_dir, change)
    if not dry_run:
        _writable(target)
    old = target.read_text()
    new, removed = without_change(old, change)
    before, after = _loaded_pair(flow_path, old, new)
    nodes = {e.get("node") for e in removed}
    queued = _touched(store.review_queue(flow=after.name, limit=5000), nodes,
                      None in nodes or any(str(e.get("intent")) in after.flow.global_intents for e in removed))
    proof = prove(classifier, nlu, before, after, [], None, queued, _tests_file(flow_path, flows_dir), nodes=nodes)
    action = "refused" if proof.test_failures else "dry_run" if dry_run else "undone"
    if action == "undone":
        _write(target, old, new)
    intents = sorted({str(e.get("intent")) for e in removed})
    if action != "dry_run":
        turns = [{"call": e["call"], "text": e.get("text"), "node": e.get("node"), "flow": after.name}
                 for e in removed if e.get("call")]
        _audit(store, turns, action, by=by, change=change,
               intent=", ".join(intents), file=target.name, reason="; ".join(proof.test_failures[:3]) or None)
    what = f"change {change}: {len(removed)} example(s) of {', '.join(intents)} taken out"
    return Outcome(action, change, after.name, ", ".join(intents), str(target), len(removed), proof,
                   report(proof, what, target, action))


def settle(store, turn_ids: list[str], action: str, *, by: str, intent: str | None = None,
           reason: str | None = None) -> list[dict]:
    """Dismiss turns (nothing to learn), propose a new intent for them, or restore them to the
    queue: an audit event each, no flow changed. Returns the turns."""
    if action not in ("dismissed", "proposed", "restored"):
        raise ChangeError(f"unknown decision {action!r}")
    if action == "proposed" and not (intent and intent.strip()):
        raise ChangeError("a proposed intent needs a name")
    turns = turns_from_log(store, turn_ids, one_flow=False)
    _audit(store, turns, action, by=by, intent=intent.strip() if intent else None, reason=reason)
    return turns


def applied_changes(flows_dir: Path) -> list[dict]:
    """The changes in effect, newest first: per change, its flow file, intent(s), who, when and
    how many examples (entries written before changes had ids are grouped by who and when)."""
    out: dict[tuple[str, str], dict] = {}
    for path, examples in reviewed_files(flows_dir):
        for ex in examples:
            key = (path.name, ex.change or f"{ex.by}@{ex.at}")
            entry = out.setdefault(key, {"change": ex.change, "file": path.name, "by": ex.by, "at": ex.at,
                                         "intents": [], "examples": []})
            if ex.intent not in entry["intents"]:
                entry["intents"].append(ex.intent)
            entry["examples"].append(ex.text)
    return sorted(out.values(), key=lambda c: c["at"] or "", reverse=True)


PROVEN_TURNS = 300
"""Queued turns a proof routes with and without the change, newest first: each may be a small
model turn, on the server's own model, beside its calls (300 take about a minute at worst)."""


def _touched(queued: list[dict], nodes: set, everywhere: bool) -> list[dict]:
    """The queued turns a change can move: those at the menus it touches (all, for a global
    intent or entries without a node), the newest PROVEN_TURNS."""
    return [t for t in queued if everywhere or t.get("node") in nodes][:PROVEN_TURNS]


def has_intent(loaded: LoadedFlow, intent: str) -> bool:
    return intent in loaded.flow.global_intents or any(intent in (n.intents or {}) for n in loaded.flow.nodes.values())


def flow_intents(loaded: LoadedFlow) -> dict[str, list[str]]:
    """Per menu node (and `*` for the global ones), the intents a turn there can be given."""
    out = {name: sorted(node.intents) for name, node in loaded.flow.nodes.items() if node.intents}
    if loaded.flow.global_intents:
        out["*"] = sorted(loaded.flow.global_intents)
    return out
