"""Load a flow file into a validated `Flow`, reporting every mistake as file:line:column.

YAML is composed into nodes first so each value keeps its position; schema errors (pydantic)
and cross-reference errors (unknown node, unreachable node, slot without a parser...) are both
mapped back to the line a designer has to edit.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import Branch, ElseBranch, Flow, Node

Loc = tuple  # path of keys/indexes from the document root


@dataclass(frozen=True)
class FlowError:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class FlowLoadError(Exception):
    def __init__(self, errors: list[FlowError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class LoadedFlow:
    flow: Flow
    path: str
    version: str
    """sha256 of the file's bytes, and of its reviewed examples' file when there is one (12 hex
    digits): what call logs record."""
    positions: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    out_of_scope: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    """{node, or None for every node: turns reviewers marked out of scope there} (reviewed.py)."""
    reviewed: int = 0
    """How many reviewed examples were merged in."""

    @property
    def name(self) -> str:
        return self.flow.flow


class _Positions:
    """Maps a key path to the (line, column) of its value, falling back to the nearest parent."""

    def __init__(self):
        self.values: dict[Loc, tuple[int, int]] = {}
        self.keys: dict[Loc, tuple[int, int]] = {}

    def at(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        loc = tuple(loc)
        while True:
            table = self.keys if key and loc in self.keys else self.values
            if loc in table:
                return table[loc]
            if not loc:
                return (1, 1)
            loc = loc[:-1]


def _to_python(node: yaml.Node, loc: Loc, pos: _Positions) -> Any:
    pos.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader.construct_object(_loader_for(key_node), key_node)  # scalar keys only
            if key in out:
                raise _DuplicateKey(key, key_node)
            pos.keys[loc + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _to_python(value_node, loc + (key,), pos)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, loc + (i,), pos) for i, item in enumerate(node.value)]
    return yaml.SafeLoader.construct_object(_loader_for(node), node)


class _DuplicateKey(Exception):
    def __init__(self, key, node):
        self.key, self.node = key, node


def _loader_for(node: yaml.Node) -> yaml.SafeLoader:
    loader = yaml.SafeLoader("")
    return loader


_TEMPLATE = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+)*)\s*(?:\|\s*([a-z]+)\s*)?\}")


def load_flow(path: str | Path) -> LoadedFlow:
    """Parse and validate one flow file; raises FlowLoadError with every error found."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FlowLoadError([FlowError(str(path), 1, 1, f"cannot read the file: {exc.strerror}")])
    loaded = load_flow_text(raw.decode("utf-8", errors="replace"), str(path), raw)
    return with_reviewed(loaded, raw)


def with_reviewed(loaded: LoadedFlow, raw: bytes) -> LoadedFlow:
    """The flow with the examples accepted from reviewed calls (its `NAME.reviewed.yaml`)."""
    from .reviewed import reviewed_path

    extra = reviewed_path(loaded.path)
    try:
        extra_raw = extra.read_bytes()
    except FileNotFoundError:
        return loaded
    except OSError as exc:
        raise FlowLoadError([FlowError(str(extra), 1, 1, f"cannot read the file: {exc.strerror}")]) from None
    return with_reviewed_text(loaded, raw, extra_raw)


def with_reviewed_text(loaded: LoadedFlow, raw: bytes, extra_raw: bytes) -> LoadedFlow:
    """The flow as it would load with this reviewed-examples file (`ivr review accept` proves a
    change on it before writing it)."""
    from .reviewed import ReviewedError, merge, parse_reviewed, reviewed_path

    extra = reviewed_path(loaded.path)
    try:
        examples = parse_reviewed(extra_raw.decode("utf-8", errors="replace"))
        flow, out_of_scope = merge(loaded.flow, examples)
    except ReviewedError as exc:
        raise FlowLoadError([FlowError(str(extra), 1, 1, str(exc))]) from None
    version = hashlib.sha256(raw + b"\0reviewed\0" + extra_raw).hexdigest()[:12]
    return LoadedFlow(flow=flow, path=loaded.path, version=version, positions=loaded.positions,
                      out_of_scope=out_of_scope, reviewed=len(examples))


def load_flow_text(text: str, filename: str = "<flow>", raw: bytes | None = None) -> LoadedFlow:
    pos = _Positions()
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or str(exc)
        if "expected ',' or '}'" in reason or "expected ',' or ']'" in reason:
            reason += " (text with `?`, `:`, `,`, `{` or `}` inside {...} or [...] must be in quotes)"
        elif "mapping values are not allowed" in reason:
            reason += " (a `: ` inside unquoted text starts a key: put the text in quotes)"
        raise FlowLoadError([FlowError(filename, line, col, f"YAML syntax: {reason}")])
    if document is None:
        raise FlowLoadError([FlowError(filename, 1, 1, "the file is empty")])
    try:
        data = _to_python(document, (), pos)
    except _DuplicateKey as dup:
        mark = dup.node.start_mark
        raise FlowLoadError(
            [FlowError(filename, mark.line + 1, mark.column + 1, f"duplicate key '{dup.key}'")]
        )
    if not isinstance(data, dict):
        raise FlowLoadError([FlowError(filename, 1, 1, "a flow file must be a mapping of keys")])

    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        raise FlowLoadError(_schema_errors(exc, pos, filename))

    errors = check_references(flow, pos, filename)
    if errors:
        raise FlowLoadError(errors)
    version = hashlib.sha256(raw if raw is not None else text.encode()).hexdigest()[:12]
    return LoadedFlow(flow=flow, path=filename, version=version, positions=pos.values)


def _schema_errors(exc: ValidationError, pos: _Positions, filename: str) -> list[FlowError]:
    errors = []
    seen = set()
    # where text was expected and YAML read a boolean or a number (`say: No`, `transfer: +1555...`)
    not_text = {pos.at(_document_path(e["loc"], pos, keep_last=False)) for e in exc.errors()
                if e["type"] == "string_type" and isinstance(e.get("input"), (bool, int, float))}
    for err in exc.errors():
        kind = err["type"]
        loc = _document_path(err["loc"], pos, keep_last=kind in ("extra_forbidden", "missing"))
        if kind == "extra_forbidden":
            line, col = pos.at(loc, key=True)
            msg = f"unknown key '{loc[-1]}'" + _where(loc[:-1])
            if isinstance(loc[-1], str) and " " in loc[-1]:
                msg += " (a comma inside unquoted text in {...} or [...] splits it: put the text in quotes)"
        elif kind == "missing":
            line, col = pos.at(loc[:-1])
            msg = f"missing required key '{loc[-1]}'" + _where(loc[:-1])
        elif kind.endswith("_type") and pos.at(loc) in not_text:
            # `say: No`, `transfer: +15550142`, `- yes`: YAML read text as a boolean or a number
            # (one error per value, where a union of types would give one per member)
            line, col = pos.at(loc)
            value = err["input"]
            read = f"the boolean {str(value).lower()}" if isinstance(value, bool) else f"the number {value}"
            msg = (f"{'.'.join(map(str, loc))}: YAML read this as {read}, not text: put it in quotes"
                   + (" (unquoted yes, no, on, off, true and false are booleans)" if isinstance(value, bool) else ""))
        else:
            line, col = pos.at(loc)
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{'.'.join(map(str, loc)) or 'flow'}: {text}"
        if (line, col, msg) in seen:
            continue
        seen.add((line, col, msg))
        errors.append(FlowError(filename, line, col, msg))
    return sorted(errors, key=lambda e: (e.line, e.column))


def _document_path(raw: tuple, pos: _Positions, keep_last: bool) -> Loc:
    """Drop the union-member tags pydantic puts in a loc ('str', 'list[...]', 'Branch'):
    keep only the steps that exist in the document (plus the missing/extra key itself)."""
    loc: Loc = ()
    for i, part in enumerate(raw):
        candidate = loc + (part,)
        last = i == len(raw) - 1
        if candidate in pos.values or candidate in pos.keys or (last and keep_last):
            loc = candidate
    return loc


def _where(loc: Loc) -> str:
    return f" in {'.'.join(map(str, loc))}" if loc else ""


def _edges(name: str, node: Node) -> list[tuple[Loc, str]]:
    """Every node name this node can lead to, with the key path that names it."""
    base = ("nodes", name)
    out: list[tuple[Loc, str]] = []
    for intent, spec in (node.intents or {}).items():
        if spec.goto:
            out.append((base + ("intents", intent, "goto"), spec.goto))
    if isinstance(node.next, str):
        out.append((base + ("next",), node.next))
    elif isinstance(node.next, list):
        for i, branch in enumerate(node.next):
            if isinstance(branch, Branch):
                out.append((base + ("next", i, "then"), branch.then))
            elif isinstance(branch, ElseBranch):
                out.append((base + ("next", i, "else"), branch.else_))
    for policy in ("no_match", "no_input"):
        spec = getattr(node, policy)
        if spec and spec.then:
            out.append((base + (policy, "then"), spec.then))
    if node.return_to:
        out.append((base + ("return_to",), node.return_to))
    if node.action is not None and node.action.on_error:
        out.append((base + ("action", "on_error"), node.action.on_error))
    return out


def check_references(flow: Flow, pos: _Positions, filename: str) -> list[FlowError]:
    errors: list[FlowError] = []

    def err(loc: Loc, message: str, key: bool = False) -> None:
        line, col = pos.at(loc, key=key)
        errors.append(FlowError(filename, line, col, message))

    nodes = flow.nodes
    if flow.start not in nodes:
        err(("start",), f"start node '{flow.start}' is not defined under `nodes`")

    def check_examples(loc: Loc, spec) -> None:
        from .schema import annotated

        for i, example in enumerate(spec.examples):
            for slot, _ in annotated(example)[1]:
                if slot not in flow.slots:
                    err(loc + ("examples", i), f"example marks a value for '{slot}', which is not declared under `slots`")
                elif flow.slots[slot].sensitive:
                    err(loc + ("examples", i), f"example marks a value for sensitive slot '{slot}': sensitive slots are only asked at their own node")

    for name, slot in flow.slots.items():
        if slot.mention:
            _check_template(slot.mention, ("slots", name, "mention"), flow, set(), err, request=False)
    for intent, spec in flow.global_intents.items():
        check_examples(("global_intents", intent), spec)
    for name, node in nodes.items():
        for intent, spec in (node.intents or {}).items():
            check_examples(("nodes", name, "intents", intent), spec)
    for intent, spec in flow.global_intents.items():
        if spec.goto and spec.goto not in nodes:
            err(("global_intents", intent, "goto"), f"global intent '{intent}' goes to unknown node '{spec.goto}'")
    for policy in ("no_match", "no_input"):
        then = getattr(flow.defaults, policy).then
        if then and then not in nodes:
            err(("defaults", policy, "then"), f"unknown node '{then}'")

    human = flow.escalation.human
    if human and not is_dial_target(human) and human not in nodes:
        err(("escalation", "human"), f"escalation.human '{human}' is neither a node nor a phone number or sip: address")

    saved = {n.action.save_as for n in nodes.values() if n.action is not None and n.action.save_as}
    edges: dict[str, list[str]] = {}
    for name, node in nodes.items():
        targets = _edges(name, node)
        for loc, target in targets:
            if target not in nodes:
                err(loc, f"node '{name}' goes to unknown node '{target}'" + _did_you_mean(target, nodes))
        edges[name] = [t for _, t in targets]
        base = ("nodes", name)
        for key, target in (node.dtmf or {}).items():
            known_intent = target in (node.intents or {}) or target in flow.global_intents
            if not known_intent and target not in nodes:
                err(base + ("dtmf", key), f"DTMF key '{key}' leads to '{target}', which is neither an intent nor a node")
            elif not known_intent:
                edges[name].append(target)
        if node.collect is not None and node.collect not in flow.slots:
            err(base + ("collect",), f"node '{name}' collects slot '{node.collect}', which is not declared under `slots` (so it has no parser)")
        if node.listens and not node.say:
            err(base, f"node '{name}' waits for the caller but has no `say` prompt", key=True)
        ends = node.transfer or node.handoff or node.hangup
        if not node.listens and not ends and node.next is None:
            err(base, f"node '{name}' is a dead end: give it `next`, `hangup: true`, `transfer` or `handoff`", key=True)
        prompts = _prompts(base + ("say",), node.say)
        for policy in ("no_match", "no_input"):
            spec = getattr(node, policy)
            if spec is not None:
                prompts += _prompts(base + (policy, "say"), spec.say)
        for loc, text in prompts:
            _check_template(text, loc, flow, saved, err, request=False)
        if node.action is not None:
            _check_template(node.action.url, base + ("action", "url"), flow, saved, err, request=True)
            for key, value in node.action.headers.items():
                _check_template(value, base + ("action", "headers", key), flow, saved, err, request=True)
        if isinstance(node.next, list):
            for i, branch in enumerate(node.next):
                if isinstance(branch, Branch):
                    from .conditions import ConditionError, parse_condition

                    try:
                        parse_condition(branch.if_, slots=set(flow.slots))
                    except ConditionError as exc:
                        err(base + ("next", i, "if"), f"condition '{branch.if_}': {exc}")

    # Reachability: from start, plus every global intent (they can fire from any node).
    reachable: set[str] = set()
    frontier = [flow.start] + [s.goto for s in flow.global_intents.values() if s.goto]
    if human and human in nodes:
        frontier.append(human)  # the escalation policy can send any call there
    for policy in ("no_match", "no_input"):
        then = getattr(flow.defaults, policy).then
        if then:
            frontier.append(then)
    while frontier:
        current = frontier.pop()
        if current in reachable or current not in nodes:
            continue
        reachable.add(current)
        frontier.extend(edges.get(current, []))
    unknown_targets = any("unknown node" in e.message for e in errors)
    for name in nodes:
        # a mistyped target leaves what it meant unreachable: that error says it all
        if name not in reachable and flow.start in nodes and not unknown_targets:
            err(("nodes", name), f"node '{name}' is unreachable: nothing leads to it from '{flow.start}'", key=True)
    return sorted(errors, key=lambda e: (e.line, e.column))


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def is_dial_target(text: str) -> bool:
    """A phone number (+15550100, 5550100) or a SIP address, as `transfer:` takes."""
    return text.startswith("sip:") or bool(re.fullmatch(r"\+?[0-9][0-9 ()-]{2,}", text))


def _check_template(text: str, loc: Loc, flow: Flow, saved: set[str], err, *, request: bool) -> None:
    from .speech_format import FILTERS

    for root, rest, filter_name in _TEMPLATE.findall(text):
        if filter_name and filter_name not in FILTERS:
            err(loc, f"`|{filter_name}` is not a filter (known: {', '.join(FILTERS)})")
        name = rest.lstrip(".").split(".")[0] if rest else ""
        if root == "slots":
            if name not in flow.slots:
                err(loc, f"`{{slots.{name}}}` names no declared slot '{name}'")
        elif root == "vars":
            if name and name not in saved and name != "last_error":
                err(loc, f"`{{vars.{name}}}`: no action saves '{name}' (`save_as: {name}`)")
        elif root == "env":
            if not request:
                err(loc, "`{env.…}` is only allowed in action URLs, headers and bodies, never spoken")
        elif root not in saved:
            err(loc, f"`{{{root}{rest}}}` is not a template: use slots.NAME, vars.NAME or a `save_as` name")


def _prompts(loc: Loc, prompt) -> list[tuple[Loc, str]]:
    if prompt is None:
        return []
    if isinstance(prompt, str):
        return [(loc, prompt)]
    return [(loc + (i,), p) for i, p in enumerate(prompt)]


def validate_paths(paths: list[str | Path]) -> tuple[list[LoadedFlow], list[FlowError]]:
    """Validate flow files and directories of them (*.yaml, *.yml, drafts included; test files
    are skipped)."""
    loaded, errors = [], []
    first: dict[str, LoadedFlow] = {}
    for path in expand_flow_paths(paths, drafts=True):
        try:
            flow = load_flow(path)
        except FlowLoadError as exc:
            errors.extend(exc.errors)
            continue
        loaded.append(flow)
        if flow.name in first and not is_draft(Path(path)) and not is_draft(Path(first[flow.name].path)):
            # the server keeps one of them and refuses the other (ivr.serving.flows)
            line, col = flow.positions.get(("flow",), (1, 1))
            errors.append(FlowError(str(path), line, col, f"flow '{flow.name}' is also the name of "
                                    f"{first[flow.name].path}: a server loads only one of them; rename one"))
        first.setdefault(flow.name, flow)
    return loaded, errors


def expand_flow_paths(paths: list[str | Path], *, drafts: bool = False) -> list[Path]:
    """The flow files named, and those found in the folders named (test files never; drafts,
    `*.draft.yaml`, only when asked: a server does not answer calls with them)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.suffix in {".yaml", ".yml"} and not _is_test_file(f) and (drafts or not is_draft(f))
                    and not f.name.endswith((".reviewed.yaml", ".reviewed.yml"))  # part of a flow (reviewed.py)
                )
            )
        else:
            out.append(p)
    return out


def is_draft(path: Path) -> bool:
    """A flow a designer is still working on: callable from the dashboard's "Try a call" page,
    never answering the phone (docs/flows.md, "Drafts")."""
    return path.name.endswith((".draft.yaml", ".draft.yml"))


def _is_test_file(path: Path) -> bool:
    return path.name.endswith((".test.yaml", ".test.yml")) or "tests" in path.parts[-2:-1]
