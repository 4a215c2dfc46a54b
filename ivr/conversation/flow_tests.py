"""`ivr test`: conversation tests that designers keep beside their flows.

```yaml
flow: ../customer_service.yaml          # relative to this file (or to the working directory)
env: {ORDERS_API: https://orders.test}  # {env.X} for backend URLs
backend:                                # canned backend answers, so tests need no server
  GET https://orders.test/orders/123456: {status: 200, json: {status: shipped}}
cases:
  - name: order by voice
    turns:
      - user: uh yeah where's my order
        expect: {intent: order, node: ask_order}
      - dtmf: "123456"
        expect: {slots: {order_number: "123456"}, node: confirm_order, say: "I heard order"}
```

`expect` keys: `node`, `intent`, `slots` (a subset), `heard` (values the words carried for the
slots ahead, kept when their nodes come), `say` (text, or a list of texts, the bot's
reply must contain), `not_say`, `transfer` (true or the target), `handoff` (true or the
target), `hangup` (true/false). A turn may also be `no_input: true` (the caller stays silent).
Cases run against the real NLU, so a test fails when the models would get the caller wrong.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from ivr.conversation.actions import HttpActions
from ivr.conversation.session import CallSession, RecordedEvents
from ivr.dialog.engine import nlu_preparation
from ivr.dialog.loader import FlowLoadError, LoadedFlow, load_flow

EXPECT_KEYS = {"node", "intent", "slots", "heard", "say", "not_say", "transfer", "handoff", "hangup"}
TURN_KEYS = {"user", "dtmf", "no_input", "expect"}


class FlowTestError(Exception):
    pass


@dataclass
class TurnOutcome:
    node: str | None
    intent: str | None
    confidence: float | None
    slots: dict
    said: list[str]
    transfer: str | None
    handoff: str | None
    hangup: bool
    heard: dict = field(default_factory=dict)
    """Values the turn's words carried for the slots ahead (kept or not yet)."""


@dataclass
class CaseResult:
    file: str
    name: str
    passed: bool
    turns: int
    failures: list[str] = field(default_factory=list)


class _Recorder:
    def __init__(self):
        self.said: list[str] = []
        self.transferred_to: str | None = None
        self.hangup = False

    async def speak(self, text: str) -> None:
        self.said.append(text)

    async def interrupt(self) -> None:
        pass

    async def hang_up(self, reason: str) -> None:
        self.hangup = True

    async def transfer(self, target: str, reason: str, summary: str = "") -> bool:
        self.transferred_to = target
        return True


def _backend_transport(spec: dict) -> httpx.MockTransport:
    rules = []
    for key, answer in (spec or {}).items():
        method, _, pattern = str(key).partition(" ")
        rules.append((method.upper(), pattern.strip(), answer or {}))

    def handle(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        for method, pattern, answer in rules:
            if method == request.method and (fnmatch.fnmatch(url, pattern) or url.split("?")[0] == pattern):
                body = answer.get("json")
                return httpx.Response(int(answer.get("status", 200)), json=body) if body is not None else httpx.Response(
                    int(answer.get("status", 200)), text=str(answer.get("text", ""))
                )
        return httpx.Response(404, text=f"no canned answer for {request.method} {url}")

    return httpx.MockTransport(handle)


def load_test_file(path: Path) -> tuple[dict, LoadedFlow]:
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FlowTestError(f"{path}: YAML syntax: {exc}") from None
    if not isinstance(spec, dict) or "flow" not in spec or not isinstance(spec.get("cases"), list):
        raise FlowTestError(f"{path}: a test file needs `flow:` and a list of `cases:`")
    flow_path = Path(spec["flow"])
    candidates = [path.parent / flow_path, Path.cwd() / flow_path, flow_path]
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
        raise FlowTestError(f"{path}: flow file {spec['flow']} not found (relative to the test file or the working directory)")
    try:
        return spec, load_flow(found)
    except FlowLoadError as exc:
        raise FlowTestError(f"{path}: the flow does not load:\n{exc}") from None


async def run_case(case: dict, flow: LoadedFlow, nlu, *, env: dict, backend: dict, file: str) -> CaseResult:
    name = str(case.get("name", "unnamed"))
    recorder, events = _Recorder(), RecordedEvents()
    actions = HttpActions(_backend_transport({**backend, **(case.get("backend") or {})}))
    session = CallSession(f"test:{name}", flow, recorder, nlu=nlu, events=events, actions=actions,
                          env={**env, **(case.get("env") or {})}, filler_after=30)
    result = CaseResult(file, name, True, 0)
    await session.start()
    for index, turn in enumerate(case.get("turns") or [], start=1):
        unknown = set(turn) - TURN_KEYS
        if unknown:
            result.failures.append(f"turn {index}: unknown keys {sorted(unknown)}")
            break
        recorder.said.clear()
        recorder.transferred_to, recorder.hangup = None, False
        events.items.clear()
        if "user" in turn:
            await session.on_transcript(str(turn["user"]))
        elif "dtmf" in turn:
            await session.enter_keys(str(turn["dtmf"]))
        elif turn.get("no_input"):
            await session.silence()
        nlu_events = events.of("nlu")
        outcome = TurnOutcome(
            node=session.engine.node_name,
            intent=nlu_events[-1]["intent"] if nlu_events else None,
            confidence=nlu_events[-1]["confidence"] if nlu_events else None,
            slots=dict(session.engine.state.slots),
            said=list(recorder.said),
            transfer=recorder.transferred_to,
            handoff=next((d.get("target") for t, d in events.items if t == "handoff"), None),
            hangup=recorder.hangup,
            heard={h["slot"]: h["value"] for d in nlu_events for h in d.get("slots") or []},
        )
        result.turns = index
        failures = check_expect(turn.get("expect") or {}, outcome)
        if failures:
            result.failures.extend(f"turn {index} ({_describe(turn)}): {f}" for f in failures)
            break
    await actions.close()
    result.passed = not result.failures
    return result


def _describe(turn: dict) -> str:
    if "user" in turn:
        return f"user: {turn['user']!r}"
    if "dtmf" in turn:
        return f"dtmf: {turn['dtmf']}"
    return "no input"


def check_expect(expect: dict, got: TurnOutcome) -> list[str]:
    failures = []
    unknown = set(expect) - EXPECT_KEYS
    if unknown:
        return [f"unknown expect keys {sorted(unknown)} (known: {sorted(EXPECT_KEYS)})"]
    said = " ".join(got.said)
    if "node" in expect and expect["node"] != got.node:
        failures.append(f"expected node '{expect['node']}', got '{got.node}'")
    if "intent" in expect and expect["intent"] != got.intent:
        conf = f" ({got.confidence})" if got.confidence is not None else ""
        failures.append(f"expected intent '{expect['intent']}', got '{got.intent}'{conf}")
    for slot, value in (expect.get("slots") or {}).items():
        if slot not in got.slots:
            failures.append(f"expected slot {slot}={value!r}, but it is not set")
        elif str(got.slots[slot]).lower() != str(value).lower():
            failures.append(f"expected slot {slot}={value!r}, got {got.slots[slot]!r}")
    for slot, value in (expect.get("heard") or {}).items():
        if slot not in got.heard:
            failures.append(f"expected the turn to carry {slot}={value!r}; it carried {got.heard or 'nothing'}")
        elif str(got.heard[slot]).lower() != str(value).lower():
            failures.append(f"expected the turn to carry {slot}={value!r}, got {got.heard[slot]!r}")
    for text in _as_list(expect.get("say")):
        if str(text).lower() not in said.lower():
            failures.append(f"expected the bot to say {text!r}")
    for text in _as_list(expect.get("not_say")):
        if str(text).lower() in said.lower():
            failures.append(f"expected the bot not to say {text!r}")
    for key, got_value in (("transfer", got.transfer), ("handoff", got.handoff)):
        if key in expect:
            want = expect[key]
            if want is True and not got_value or want is False and got_value:
                failures.append(f"expected {key}={want}, got {got_value!r}")
            elif isinstance(want, str) and want != got_value:
                failures.append(f"expected {key} to {want!r}, got {got_value!r}")
    if "hangup" in expect and bool(expect["hangup"]) != got.hangup:
        failures.append(f"expected hangup={expect['hangup']}, got {got.hangup}")
    if failures and said:
        failures[-1] += f"; bot said: {said!r}"
    return failures


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def expand_test_paths(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.rglob("*.test.yaml")) + sorted(p.rglob("*.test.yml")))
        else:
            out.append(p)
    return out


async def run_files(paths: list[Path], nlu_factory) -> tuple[list[CaseResult], list[str]]:
    results, errors, nlu, prepared = [], [], None, set()
    for path in paths:
        try:
            spec, flow = load_test_file(path)
        except FlowTestError as exc:
            errors.append(str(exc))
            continue
        if nlu is None:
            nlu = nlu_factory()
        if nlu is not None and flow.version not in prepared:
            await asyncio.to_thread(nlu.prepare_all, nlu_preparation(flow))
            prepared.add(flow.version)
        for case in spec["cases"]:
            results.append(
                await run_case(case, flow, nlu, env=spec.get("env") or {}, backend=spec.get("backend") or {}, file=str(path))
            )
    return results, errors


def report(results: list[CaseResult], errors: list[str]) -> tuple[str, bool]:
    lines, current = [], None
    for r in results:
        if r.file != current:
            current = r.file
            lines.append(current)
        lines.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.name}" + ("" if r.passed else ""))
        for failure in r.failures:
            lines.append(f"        {failure}")
    lines.extend(f"ERROR {e}" for e in errors)
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results)} cases, {len(results) - failed} passed, {failed} failed" + (f", {len(errors)} file errors" if errors else ""))
    return "\n".join(lines), failed == 0 and not errors


def results_json(results: list[CaseResult]) -> str:
    return json.dumps([r.__dict__ for r in results], indent=2)
