"""A turn of a logged call, kept as an `ivr test` case (ivr/conversation/flow_tests.py) in the flow's tests
file: the "Add to tests" button of the dashboard's call and "Try a call" pages.

The case replays the call's turns up to the chosen one; the chosen turn expects what the line did
then (its node, intent, slots and the start of its reply, a transfer or a handoff), the turns
before it only the node they led to. The case is appended to the end of the file's `cases:` list
as text, so the designer's comments and layout stay as they were; a file laid out so that this
cannot be done safely is left alone and the case is returned for pasting by hand. Pure apart
from `find_tests_file`, which looks at the flows folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from ivr.privacy.redact import REDACTED

SAY_CHARS = 60  # the start of the reply: enough to tell prompts apart, short of filled-in values


class TestCaseError(ValueError):
    """Why a turn cannot become a test case (a message for the designer)."""

    __test__ = False  # not a pytest class


def case_from_turns(turns: list[dict], index: int, name: str) -> dict:
    """The case for turn `index` of `group_turns(...)` output."""
    chosen = next((t for t in turns if t["index"] == index), None)
    if chosen is None or index == 0:
        raise TestCaseError(f"turn {index} is not a turn the caller took (turn 0 is the greeting)")
    if chosen.get("withdrawn"):
        raise TestCaseError(f"turn {index} was withdrawn (the caller went on): add the turn after it")
    if _step(chosen) is None:
        raise TestCaseError(f"turn {index} is not one a test can replay (a {chosen['kind']} turn)")
    steps = []
    for turn in turns:
        if turn["index"] == 0 or turn.get("withdrawn"):
            continue
        step = _step(turn)
        if step is None:
            continue
        if turn is chosen:
            step["expect"] = _expect(turn)
        elif turn["nodes"]:
            step["expect"] = {"node": turn["nodes"][-1]}
        steps.append(step)
        if turn is chosen:
            break
    return {"name": name, "turns": steps}


def _step(turn: dict) -> dict | None:
    if turn["kind"] == "speech":
        text = turn.get("caller") or ""
        if REDACTED in text:
            raise TestCaseError(f"turn {turn['index']}'s words were redacted (a sensitive slot), so it cannot be "
                                "replayed: write that turn of the case by hand")
        return {"user": text}
    if turn["kind"] == "dtmf":
        return {"dtmf": turn["keys"]}
    if turn["kind"] == "no_input":
        return {"no_input": True}
    return None


def _expect(turn: dict) -> dict:
    expect: dict = {}
    nlu = turn.get("nlu") or {}
    if nlu.get("intent"):
        expect["intent"] = nlu["intent"]
    if turn["nodes"]:
        expect["node"] = turn["nodes"][-1]
    slots = {s["name"]: s["value"] for s in turn["slots"] if s.get("name") and s.get("value") != REDACTED}
    if slots:
        expect["slots"] = slots
    for escalation in turn["escalations"]:
        if escalation["type"] == "transfer":
            expect["transfer"] = escalation.get("target") or True
        elif escalation["type"] == "handoff":
            expect["handoff"] = escalation.get("target") or True
    said = next((p["text"] for p in turn["prompts"] if p.get("kind") == "prompt" and p.get("text")), None)
    if said and REDACTED not in said:
        expect["say"] = _start_of(said)
    return expect


def _start_of(text: str) -> str:
    """The reply's first words, cut at a word boundary: what a test should pin down."""
    first = re.split(r"(?<=[.?!])\s", text.strip(), maxsplit=1)[0]
    if len(first) <= SAY_CHARS:
        return first
    return first[:SAY_CHARS].rsplit(" ", 1)[0]


def find_tests_file(flow_path: Path, flows_dir: Path) -> Path:
    """The tests file whose `flow:` is this flow's file; a new one in flows/tests/ if none is."""
    flow_path = Path(flow_path).resolve()
    candidates = sorted(Path(flows_dir).rglob("*.test.yaml")) + sorted(Path(flows_dir).rglob("*.test.yml"))
    for path in candidates:
        try:
            spec = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(spec, dict) and isinstance(spec.get("flow"), str):
            if (path.parent / spec["flow"]).resolve() == flow_path:
                return path
    stem = flow_path.name.rsplit(".", 1)[0]  # "bank" of bank.yaml, "bank.draft" of bank.draft.yaml
    claimed = set(candidates)  # a file of that name for another flow (a/bank.yaml, bank.yaml) is not ours
    for n in range(1, 100):
        path = Path(flows_dir) / "tests" / (f"{stem}.test.yaml" if n == 1 else f"{stem}-{n}.test.yaml")
        if path not in claimed:
            return path
    raise TestCaseError(f"no free name for a tests file of {flow_path.name} in {flows_dir}/tests")


def new_tests_file(flow_path: Path, tests_path: Path) -> str:
    relative = os.path.relpath(Path(flow_path).resolve(), Path(tests_path).parent.resolve())
    return (f"# Conversation tests for {Path(flow_path).name}: `ivr test {tests_path.as_posix()}`\n"
            f"flow: {relative}\ncases:\n")


def unique_name(text: str, wanted: str) -> str:
    """`wanted`, or `wanted (2)`, ... if a case of that name is already in the file."""
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise TestCaseError(f"the tests file is not valid YAML: {exc}") from None
    cases = spec.get("cases") if isinstance(spec, dict) else None
    taken = {c.get("name") for c in cases or [] if isinstance(c, dict)}
    name, n = wanted, 1
    while name in taken:
        n += 1
        name = f"{wanted} ({n})"
    return name


def append_case(text: str, case: dict) -> str:
    """The tests file's text with `case` as the last item of its `cases:` list, the rest
    untouched. Raises TestCaseError when `cases:` is not the file's last key in block style."""
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise TestCaseError(f"the tests file is not valid YAML: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cases", []), (list, type(None))):
        raise TestCaseError("the tests file has no `cases:` list")
    keys = [m.group(1) for m in re.finditer(r"^([A-Za-z_][\w-]*)\s*:", text, re.MULTILINE)]
    if not keys or keys[-1] != "cases" or re.search(r"^cases[ \t]*:[ \t]*[^\s#]", text, re.MULTILINE):
        raise TestCaseError("`cases:` is not the last key of the tests file, in block style: add the case by hand")
    out = text.rstrip("\n") + "\n"
    if spec.get("cases"):
        out += "\n"
    out += as_yaml(case)
    try:
        after = yaml.safe_load(out)
    except yaml.YAMLError:
        after = None
    if not isinstance(after, dict) or (after.get("cases") or [])[-1:] != [case] \
            or len(after["cases"]) != len(spec.get("cases") or []) + 1:
        raise TestCaseError("appending would not give the tests file one more case: add the case by hand")
    return out


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as the shipped tests files write them."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def as_yaml(case: dict) -> str:
    """The case as the designer would paste it under `cases:`."""
    item = yaml.dump([case], Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=None, width=110)
    return "".join("  " + line if line.strip() else line for line in item.splitlines(keepends=True))
