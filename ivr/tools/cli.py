"""The `ivr` command: serve | simulate | chat | validate | schema | models."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path


def _setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    from ivr.serving.logs import setup

    # pipecat logs every frame decision at DEBUG: keep its warnings and errors unless asked.
    setup(level, json_lines=json_lines, pipecat_level=os.environ.get("IVR_PIPECAT_LOG_LEVEL", "WARNING"))


def _load_flow_arg(path: str):
    """The flow a command was given, or None after printing its file:line errors."""
    from ivr.dialog.loader import FlowLoadError, load_flow

    try:
        return load_flow(path)
    except FlowLoadError as exc:
        print(exc, file=sys.stderr)
        return None


def _offline_nlu(use_slm: bool):
    """The NLU for chat, tests and evaluation: no stage timeout off the call path, since a slow
    turn there is a slow turn, not a no-match (live calls keep theirs)."""
    from ivr.nlu.intents import load_intent_classifier
    from ivr.nlu.service import NLUService

    return NLUService(load_intent_classifier(use_slm=use_slm), timeout=None)


# ---------------------------------------------------------------- serve
def _serve_flow_args(flow: str | None, flows: str | None) -> tuple[Path | None, str | None] | None:
    """`--flow` is a flow's name or its file, since a file is what people type: a file is served
    alone (hot reload included), or with the rest of `--flows` when it is in there, as the
    default. None after printing why it cannot be served."""
    flows_dir = Path(flows) if flows else None
    if flow is None or not (flow.endswith((".yaml", ".yml")) or "/" in flow or Path(flow).is_file()):
        return flows_dir, flow
    path = Path(flow)
    if not path.is_file():
        print(f"ivr serve: --flow {flow}: no such file", file=sys.stderr)
        return None
    loaded = _load_flow_arg(str(path))
    if loaded is None:
        return None
    if flows_dir is not None and flows_dir.resolve() not in path.resolve().parents:
        print(f"ivr serve: --flow {flow} is not in the flows directory {flows_dir}", file=sys.stderr)
        return None
    return flows_dir or path, loaded.name


def default_flow_problem(flows, settings) -> str | None:
    """Why the default flow cannot answer calls (None: it can), given the loaded flows (a
    FlowRepository): a server that is up but fails every call is worse than one that does not start."""
    name = settings.default_flow
    if name in flows.names:
        return None
    broken = [str(e) for errs in flows.errors.values() for e in errs]
    found = ", ".join(flows.names) or "none"
    why = ("\n  " + "\n  ".join(broken)) if broken else ""
    return (f"the default flow '{name}' is not loaded from {settings.flows_dir} (flows loaded: {found}); "
            f"set IVR_DEFAULT_FLOW or --flow (a name or a file)" + (f". Flow errors:{why}" if why else ""))


def cmd_serve(args) -> int:
    import uvicorn

    from ivr.serving.app import create_app
    from ivr.serving.config import load_settings
    from ivr.serving.runtime import Runtime

    chosen = _serve_flow_args(args.flow, args.flows)
    if chosen is None:
        return 2
    flows_dir, default_flow = chosen
    settings = load_settings(args.config).with_overrides(
        host=args.host, port=args.port, public_url=args.public_url, flows_dir=flows_dir,
        default_flow=default_flow, dev_mode=True if args.dev else None,
    )
    _setup_logging(settings.log_level, settings.log_json)
    from ivr.telephony.guard import MAX_MESSAGE_BYTES, trusted_proxies

    try:  # before the models load: a typo here should not cost a minute
        forwarded = trusted_proxies(settings.trusted_proxy_list())
    except ValueError as exc:
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 2
    from ivr.serving.flows import FlowRepository

    checked = FlowRepository(settings.flows_dir)  # the flows alone first: a broken default should not cost a minute
    checked.reload()
    problem = default_flow_problem(checked, settings)
    if problem is not None:
        print(f"ivr serve: {problem}", file=sys.stderr)
        return 2
    print(f"ivr: loading models (flows from {settings.flows_dir})", flush=True)
    runtime = Runtime.load(settings, progress=lambda m: print(m, flush=True))
    problem = default_flow_problem(runtime.flows, settings)  # changed while the models loaded
    if problem is not None:
        print(f"ivr serve: {problem}", file=sys.stderr)
        runtime.store.close()
        return 2
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    ws_base = base.replace("https://", "wss://").replace("http://", "ws://")
    print(f"ivr: flows loaded: {', '.join(runtime.flows.names) or 'none'} (default: {settings.default_flow})")
    print(f"ivr: Twilio voice webhook:  POST {base}/twilio/voice   (add ?flow=NAME for another flow)")
    print(f"ivr: media stream:          {ws_base}/twilio/media")
    print(f"ivr: health:                {base}/healthz")
    if not settings.twilio_auth_token:
        print("ivr: " + ("WARNING: DEV MODE - webhooks are not signature-checked" if settings.dev_mode
                         else "WARNING: TWILIO_AUTH_TOKEN unset and not in dev mode: webhooks will get 403"), flush=True)
    print(f"ivr: try a call:  ivr simulate --url {base} --say 'I want to check on my order' --dtmf 123456", flush=True)
    app = create_app(settings, runtime_factory=lambda: runtime)
    from ivr.serving.drain import DrainingServer

    # SIGTERM drains the calls first (ivr/serving/drain.py); what uvicorn then still waits on is capped.
    # ws_max_size: uvicorn would otherwise buffer up to 16 MiB of one message per socket before
    # the app sees it; over the cap it closes that socket alone with 1009. The client address
    # comes from X-Forwarded-For only for peers in IVR_TRUSTED_PROXIES.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", ws="websockets-sansio",
                            timeout_graceful_shutdown=5, ws_max_size=MAX_MESSAGE_BYTES, proxy_headers=True,
                            forwarded_allow_ips=forwarded)
    DrainingServer(config, runtime, settings.drain_seconds).run()
    return 0


# ---------------------------------------------------------------- simulate
class _StepAction(argparse.Action):
    """--say/--dtmf/--wav/--pause keep their order in one list."""

    def __call__(self, parser, namespace, values, option_string=None):
        from ivr.tools.simulate import Step

        steps = getattr(namespace, "steps", None) or []
        steps.append(Step(option_string.lstrip("-"), values))
        namespace.steps = steps


def cmd_simulate(args) -> int:
    from ivr.registry import model_registry, voice_registry
    from ivr.tools.simulate import CallerSimulator
    from ivr.speech.stt import Transcriber
    from ivr.speech.tts import Synthesizer

    _setup_logging("WARNING")
    steps = args.steps or []
    voice = Synthesizer(voice_registry().for_role("default").path) if any(s.kind in ("say", "barge") for s in steps) else None
    stt = None if args.no_transcribe else Transcriber(model_registry().for_role("stt").path)
    token = args.auth_token if args.auth_token is not None else os.environ.get("TWILIO_AUTH_TOKEN")
    sim = CallerSimulator(args.url, voice=voice, stt=stt, auth_token=token or None, flow=args.flow)
    import httpx

    try:
        report = asyncio.run(sim.run(steps))
    except httpx.ConnectError:
        print(f"ivr simulate: cannot reach {args.url}: is `ivr serve` running (and done loading)?", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:
        print(f"ivr simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0


# ---------------------------------------------------------------- validate / schema
def cmd_validate(args) -> int:
    from ivr.dialog.loader import validate_paths
    from ivr.dialog.paths import explain, slot_spec
    from ivr.nlu.places import read_as

    loaded, errors = validate_paths(args.paths or ["flows"])
    for err in errors:
        print(err)
    for flow in loaded:
        print(f"ok: {flow.path} (flow {flow.name}, version {flow.version}, {len(flow.flow.nodes)} nodes)")
        if args.explain:
            for node, paths in explain(flow.flow).items():
                for what, slots in paths.items():
                    kind = "collects" if flow.flow.nodes[node].collect else "intent"
                    # a text slot the place rules read as one end of a trip, a city or a place's name
                    reads = {n: read_as(slot_spec(flow.flow, n)) for n in slots}
                    said = [f"{n} ({reads[n]})" if reads[n] else n for n in slots]
                    print(f"  {node} ({kind} {what}): may hear {', '.join(said)}")
            for line in _example_advice(flow):
                print(f"  {line}")
    if errors:
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return 1
    return 0


def _example_advice(flow) -> list[str]:
    """The intents whose examples are too few or too alike for the router to know callers by
    (ivr/nlu/example_advice.py), once each however many menus offer them. The router only: the
    embedder loads in about a second, with no small model."""
    from ivr.dialog.engine import listening_candidates
    from ivr.nlu.example_advice import menus_advice
    from ivr.nlu.intents import load_intent_classifier

    menus = [c for c in listening_candidates(flow) if c.intents]
    if not menus:
        return []
    _setup_logging("WARNING")
    try:
        classifier = load_intent_classifier(use_slm=False)
    except Exception as exc:  # no embedder installed: the flow itself was still checked
        return [f"examples not checked: the router's embedder did not load ({exc})"]
    return [f"intent {a.line()} ({'every menu' if len(nodes) == len(menus) else 'menus: ' + ', '.join(nodes)})"
            for a, nodes in menus_advice(classifier, menus)]


def cmd_test(args) -> int:
    from ivr.conversation.flow_tests import expand_test_paths, report, run_files

    _setup_logging("WARNING")
    paths = expand_test_paths(args.paths or ["flows"])
    if not paths:
        print("ivr test: no *.test.yaml files found", file=sys.stderr)
        return 2

    def nlu_factory():
        return None if args.no_nlu else _offline_nlu(use_slm=not args.no_slm)

    results, errors = asyncio.run(run_files(paths, nlu_factory))
    text, ok = report(results, errors)
    print(text)
    return 0 if ok else 1


def _own_value(engine, text: str):
    """What the node keeps from this answer, as the line reads it (a correction in the answer,
    a number read in parts, the days a date question narrowed)."""
    return engine.answer_value(text)


def cmd_nlu(args) -> int:
    """Utterances on stdin (lines, or JSON lines with "text"), one JSON result per line out:
    the intent, every slot value the turn carries (with who found it), the escalation signals."""
    import asyncio
    import time

    from ivr.conversation.turn import TurnStep
    from ivr.dialog.engine import FlowEngine, nlu_preparation
    from ivr.handoff.policy import EscalationPolicy, decide

    _setup_logging("WARNING")
    flow = _load_flow_arg(args.flow)
    if flow is None:
        return 1
    node = args.node or flow.flow.start
    if node not in flow.flow.nodes:
        print(f"ivr nlu: no node '{node}' in {args.flow} (nodes: {', '.join(flow.flow.nodes)})", file=sys.stderr)
        return 2
    nlu = _offline_nlu(use_slm=not args.no_slm)
    nlu.prepare_all(nlu_preparation(flow))
    policy = EscalationPolicy().merged(flow.flow.escalation.model_dump(exclude_none=True))
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        text, extra = line, {}
        if line.startswith("{"):
            try:
                extra = json.loads(line)
                text = str(extra.get("text", ""))
            except json.JSONDecodeError:
                pass
        # One turn alone, through the server's own turn step: a fresh call standing at the node.
        engine = FlowEngine(flow)
        engine.state.node = node
        expectation = engine.expectation()
        step = TurnStep(engine, nlu, policy, flow.flow,
                        on_error=lambda where, error: print(f"ivr nlu: {error}", file=sys.stderr))
        started = time.perf_counter()
        understood = asyncio.run(step.understand(expectation, text))
        u, outcome = understood.understanding, understood.outcome
        slots = {v.slot: {"value": v.value, "said": v.said, "source": v.source} for v in u.values}
        if expectation.slot and engine.fills_slot(text) and engine.answer_value(text) is not None:
            slots[expectation.slot] = {"value": _own_value(engine, text), "said": text, "source": "parser"}
        escalation = decide(understood.facts, policy)
        result = {
            "text": text,
            "intent": u.intent,
            "confidence": round(u.confidence, 4),
            "slots": slots,
            "escalate": escalation.as_dict(),
            "signals": understood.signals.as_dict(),
            "source": u.source,
            "ranked": [[n, round(v, 4)] for n, v in outcome.ranked[:3]],
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if "id" in extra:
            result["id"] = extra["id"]
        print(json.dumps(result), flush=True)
    return 0


def cmd_calls(args) -> int:
    from ivr.calllog.show import call_detail, call_rows, tail
    from ivr.calllog.store import open_store
    from ivr.serving.config import load_settings

    settings = load_settings(args.config)
    store = open_store(args.db or settings.database, recover=False)
    try:
        if args.action == "list":
            calls = store.list_calls(limit=args.limit, flow=args.flow, outcome=args.outcome, caller=args.caller,
                                     q=args.search)
            print("\n".join(call_rows(calls)))
        elif args.action == "show":
            if not args.call_id:
                print("ivr calls show: give a call id", file=sys.stderr)
                return 2
            call = store.get_call(args.call_id)
            if call is None:
                matches = [c for c in store.list_calls(limit=500) if c["call_id"].startswith(args.call_id)]
                call = store.get_call(matches[0]["call_id"]) if len(matches) == 1 else None
            if call is None:
                print(f"ivr calls show: no call {args.call_id}", file=sys.stderr)
                return 1
            print("\n".join(call_detail(call)))
        else:
            try:
                tail(store)
            except KeyboardInterrupt:
                pass
    finally:
        store.close()
    return 0


def cmd_schema(args) -> int:
    from ivr.dialog.schema import Flow

    schema = Flow.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ivr flow"
    print(json.dumps(schema, indent=2))
    return 0


def cmd_models(args) -> int:
    from ivr.registry import RegistryError, model_registry, voice_registry

    for reg in (model_registry(), voice_registry()):
        for name in reg.names:
            try:
                info = reg.resolve(name)
                where = info.url or info.path
                print(f"{name:36s} {info.kind:9s} {info.version}  ->  {where}")
            except RegistryError as exc:
                print(f"{name:36s} unavailable: {exc}")
    return 0


# ---------------------------------------------------------------- chat
class _PrintOutput:
    async def speak(self, text: str) -> None:
        print(f"  bot> {text}")

    async def interrupt(self) -> None:
        pass

    async def hang_up(self, reason: str) -> None:
        print(f"  [call ended: {reason}]")

    async def transfer(self, target: str, reason: str, summary: str = "") -> bool:
        print(f"  [transfer to {target}: {reason}]")
        return True


def cmd_chat(args) -> int:
    from ivr.conversation.session import CallSession
    from ivr.dialog.engine import nlu_preparation

    _setup_logging("WARNING")
    flow = _load_flow_arg(args.flow)
    if flow is None:
        return 1
    nlu = None
    if not args.no_nlu:
        print("loading NLU models ...", flush=True)
        nlu = _offline_nlu(use_slm=not args.no_slm)
        nlu.prepare_all(nlu_preparation(flow))

    async def main() -> None:
        from ivr.conversation.session import RecordedEvents

        from ivr.serving.config import load_settings
        from ivr.handoff.policy import EscalationPolicy

        capture = RecordedEvents()
        settings = load_settings()
        handoff = None
        if settings.llm_base_url:  # the same LLM handoff a live call gets, so escalations can be tried
            from ivr.handoff.llm import LLMHandoff, llm_settings

            handoff = LLMHandoff(llm_settings(settings))
            print(f"LLM handoff: {settings.llm_model} at {settings.llm_base_url}")
        session = CallSession("chat", flow, _PrintOutput(), nlu=nlu, events=capture, env=dict(os.environ),
                              handoff=handoff, escalation=EscalationPolicy().merged(settings.escalation),
                              transfer_target=settings.transfer_target)
        print(f"flow {flow.name} v{flow.version}: type what the caller says, #digits for keys, ... for silence, Ctrl-D to end")
        await session.start()
        _show(session, capture)
        while not session.closing:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                await session.enter_keys(line[1:])
            elif line == "...":
                await session.silence()
            else:
                await session.on_transcript(line)
            _show(session, capture)
        await session.end("completed", "chat ended")

    asyncio.run(main())
    return 0


def _show(session, capture) -> None:
    for data in capture.of("nlu"):
        print(f"  [nlu] intent={data.get('intent')} confidence={data.get('confidence')} via {data.get('source')} ({data.get('latency_ms')} ms)")
        kept = {e.get("name"): e.get("value") for e in capture.of("slot")}
        for heard in data.get("slots") or []:
            # what the words carry; the line's own reading of an answer can differ ("5, no, 6"),
            # and then says what it kept
            also = f" (kept {kept[heard['slot']]!r})" if heard["slot"] in kept and kept[heard["slot"]] != heard["value"] else ""
            print(f"  [heard] {heard['slot']}={heard['value']!r} by the {heard['source']}{also}")
        decision = data.get("decision") or {}
        if decision.get("escalate"):
            print(f"  [escalate] {decision['trigger']} -> {decision['target']}: {decision['reason']}")
    capture.items.clear()
    slots = session.engine.state.slots
    print(f"  [node {session.engine.node_name}]" + (f" slots={slots}" if slots else ""))


# ---------------------------------------------------------------- bench
def cmd_bench(args) -> int:
    import importlib

    _setup_logging("WARNING")
    return importlib.import_module(f"ivr.bench.{args.which.replace('-', '_')}").main(args.rest)


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Self-hosted voice IVR bot server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="answer Twilio calls")
    serve.add_argument("--config", help="ivr.toml path (default ./ivr.toml or $IVR_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--public-url", help="https://host Twilio reaches (for TwiML and signatures)")
    serve.add_argument("--flows", help="flows directory")
    serve.add_argument("--flow", help="default flow: a name, or a flow file (served alone, or with --flows when it is in there)")
    serve.add_argument("--dev", action="store_true", help="accept unsigned webhooks (local testing only)")
    serve.set_defaults(func=cmd_serve)

    sim = sub.add_parser("simulate", help="call a running server as Twilio would")
    sim.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    sim.add_argument("--flow", help="flow name (default: the server's default flow)")
    sim.add_argument("--say", action=_StepAction, help="the caller says this (repeatable, in order)")
    sim.add_argument("--barge", action=_StepAction, help="the caller says this over the bot's prompt (barge-in)")
    sim.add_argument("--dtmf", action=_StepAction, help="the caller presses these keys")
    sim.add_argument("--wav", action=_StepAction, help="the caller plays this WAV file")
    sim.add_argument("--pause", action=_StepAction, help="the caller stays silent for N seconds")
    sim.add_argument("--auth-token", help="sign webhooks with this (default $TWILIO_AUTH_TOKEN)")
    sim.add_argument("--json", action="store_true", help="print the report as JSON")
    sim.add_argument("--no-transcribe", action="store_true", help="do not transcribe the bot's audio")
    sim.set_defaults(func=cmd_simulate, steps=[])

    chat = sub.add_parser("chat", help="talk to a flow in text")
    chat.add_argument("flow", help="flow file")
    chat.add_argument("--no-nlu", action="store_true", help="no models: only keys and slot values work")
    chat.add_argument("--no-slm", action="store_true", help="example router only")
    chat.set_defaults(func=cmd_chat)

    val = sub.add_parser("validate", help="check flow files; file:line errors, non-zero exit")
    val.add_argument("paths", nargs="*")
    val.add_argument("--explain", action="store_true",
                     help="also list, per menu intent and collect node, the slots a caller may fill in passing, "
                     "and the intents whose examples are too few or too alike (loads the router's embedder)")
    val.set_defaults(func=cmd_validate)

    test = sub.add_parser("test", help="run flow conversation tests (*.test.yaml) against the real NLU")
    test.add_argument("paths", nargs="*", help="test files or directories (default: flows)")
    test.add_argument("--no-slm", action="store_true", help="example router only")
    test.add_argument("--no-nlu", action="store_true", help="no models: keys and slot values only")
    test.set_defaults(func=cmd_test)

    nlu = sub.add_parser("nlu", help="classify utterances from stdin for one node; JSON lines out")
    nlu.add_argument("flow", help="flow file")
    nlu.add_argument("--node", help="node (default: the flow's start node)")
    nlu.add_argument("--no-slm", action="store_true", help="example router only")
    nlu.set_defaults(func=cmd_nlu)

    calls = sub.add_parser("calls", help="the call log: list | show ID | tail")
    calls.add_argument("action", choices=["list", "show", "tail"])
    calls.add_argument("call_id", nargs="?")
    calls.add_argument("--db", help="database path or URL (default: the server's, IVR_DATABASE_URL or the data dir)")
    calls.add_argument("--config")
    calls.add_argument("--limit", type=int, default=30)
    calls.add_argument("--flow")
    calls.add_argument("--outcome")
    calls.add_argument("--caller", help="part of the caller's number")
    calls.add_argument("--search", help="text the caller said, or part of a call id")
    calls.set_defaults(func=cmd_calls)

    from ivr.tools.review import add_parser as add_review

    add_review(sub)

    bench = sub.add_parser("bench", help="benchmarks: calls | browser | nlu | slots | sgd | digits | signals | stt | review | review-page (each prints a table)",
                           add_help=False)
    bench.add_argument("which", choices=["calls", "browser", "nlu", "slots", "sgd", "digits", "signals", "stt", "review", "review-page"])
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)

    schema = sub.add_parser("schema", help="print the flow JSON Schema")
    schema.set_defaults(func=cmd_schema)

    models = sub.add_parser("models", help="list the model and voice registries")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
