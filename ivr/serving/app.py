"""The ASGI app: Twilio's voice webhook, the media-stream websocket, /healthz, /metrics and the
operator dashboard (/dashboard, ivr.dashboard).

POST /twilio/voice  checks X-Twilio-Signature, answers TwiML <Connect><Stream> with the flow's
                    name and a per-call token as stream parameters.
WS   /twilio/media  reads Twilio's `connected`/`start`, checks the token, then hands the socket
                    to the call's pipeline (ivr.media.pipeline).
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ivr.serving.config import Settings
from ivr.dashboard import Dashboard
from ivr.serving.metrics import Metrics, ObservedStore
from ivr.media.recording import retention_loop
from ivr.serving.runtime import Runtime
from ivr.telephony import twiml
from ivr.telephony.guard import LogThrottle, SeenStreams, SocketLimits, SocketWatch, SourceRate, suffix
from ivr.telephony.security import check_stream_token, make_stream_token, valid_twilio_signature
from ivr.telephony.agent_whisper import check_whisper, say_to_agent

log = logging.getLogger("ivr.serving.app")

MAX_PRELUDE_MESSAGES = 50  # messages tolerated before `start` (media sent early, junk)
# Twilio's webhook is ~25 short fields (more with SIP headers or add-ons); starlette's own caps
# (1000 fields of 1 MB) would let one request hold a gigabyte while it is parsed.
WEBHOOK_MAX_FIELDS = 200
WEBHOOK_MAX_FIELD_BYTES = 64 * 1024


def _public_base(settings: Settings, request_url: str, headers) -> str:
    """The base URL as Twilio sees it: configured, else from the proxy's or client's headers."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    parts = urlsplit(request_url)
    proto = headers.get("x-forwarded-proto") or parts.scheme
    host = headers.get("x-forwarded-host") or headers.get("host") or parts.netloc
    return f"{proto}://{host}"


def _source(connection) -> str:
    """The client's address: uvicorn has already taken it from X-Forwarded-For when the peer is
    a trusted proxy (IVR_TRUSTED_PROXIES, ivr/tools/cli.py)."""
    return connection.client.host if connection.client else "unknown"


def create_app(settings: Settings, runtime_factory: Callable[[], Runtime] | None = None) -> FastAPI:
    state: dict = {"runtime": None}
    # Limits on floods and replays (the reasoning is in ivr/telephony/guard.py).
    sockets = SocketLimits(settings.media_sockets_limit, settings.max_waiting_sockets_per_source)
    webhook_rate = SourceRate(settings.webhook_rate(signed=bool(settings.twilio_auth_token)),
                              settings.webhook_burst_per_source)
    seen_streams = SeenStreams(settings.stream_token_ttl + 60)
    quiet = LogThrottle()

    def refused(what: str, reason: str) -> None:
        runtime: Runtime | None = state["runtime"]
        if runtime is not None:
            runtime.store.metrics.refused.labels(what, reason).inc()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not settings.twilio_auth_token:
            if settings.dev_mode:
                log.warning(
                    "DEV MODE: TWILIO_AUTH_TOKEN is not set, so webhooks are NOT signature-checked. "
                    "Anyone who can reach this server can start calls. Never expose it like this."
                )
            else:
                log.error(
                    "TWILIO_AUTH_TOKEN is not set and dev mode is off: every webhook will be refused (403). "
                    "Set TWILIO_AUTH_TOKEN, or run with --dev for local testing."
                )
        runtime = runtime_factory() if runtime_factory else await asyncio.to_thread(Runtime.load, settings)
        if not isinstance(runtime.store, ObservedStore):
            runtime.store = ObservedStore(runtime.store, Metrics())
        runtime.store = dashboard.observe(runtime.store)
        dashboard.announce()
        state["runtime"] = runtime
        watcher = asyncio.create_task(runtime.flows.watch())
        retention = asyncio.create_task(retention_loop(settings.recordings_path, settings.recording_retention_days))
        warmers = []
        if runtime.llm is not None:
            # The LLM server reads each flow's fixed prompt once, in the background, so the
            # first handoff does not pay for it; calls are answered meanwhile.
            warmers = [asyncio.create_task(runtime.llm.warm(runtime.flows.get(n))) for n in runtime.flows.names]
        try:
            yield
        finally:
            watcher.cancel()
            retention.cancel()
            for task in warmers:
                task.cancel()
            runtime.draining = True
            if runtime.llm is not None:
                await runtime.llm.aclose()
            runtime.store.close()

    app = FastAPI(title="ivr", lifespan=lifespan)
    app.state.ivr = state
    dashboard = Dashboard(settings, lambda: state["runtime"])
    app.include_router(dashboard.router, prefix="/dashboard")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_home():
        return RedirectResponse("/dashboard/", status_code=307)

    @app.get("/healthz")
    async def healthz():
        runtime: Runtime | None = state["runtime"]
        if runtime is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        if runtime.draining:  # shutting down (ivr/serving/drain.py): a load balancer should move on
            return JSONResponse({"status": "draining", "active_calls": len(runtime.active_calls)}, status_code=503)
        return {
            "status": "ok",
            "active_calls": len(runtime.active_calls),
            "flows": {name: runtime.flows.get(name).version for name in runtime.flows.names},
            "flow_errors": {str(p): [str(e) for e in errs] for p, errs in runtime.flows.errors.items()},
            "models": runtime.models,
            "load_seconds": runtime.load_seconds,
        }

    @app.get("/metrics")
    async def metrics():
        runtime: Runtime | None = state["runtime"]
        if runtime is None:
            return Response("loading\n", status_code=503)
        metrics = runtime.store.metrics
        metrics.sample_server(media_sockets=sockets.open, media_sockets_waiting=sockets.waiting,
                              loop_tasks=len(asyncio.all_tasks()))
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/twilio/voice")
    async def voice_webhook(request: Request):
        runtime: Runtime | None = state["runtime"]
        source = _source(request)
        form = await request.form(max_fields=WEBHOOK_MAX_FIELDS, max_part_size=WEBHOOK_MAX_FIELD_BYTES)
        params = {k: str(v) for k, v in form.items()}
        base = _public_base(settings, str(request.url), request.headers)
        if settings.twilio_auth_token:
            url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if not valid_twilio_signature(settings.twilio_auth_token, url, params, request.headers.get("x-twilio-signature")):
                refused("webhook", "signature")
                if (skipped := quiet.allow("signature", source)) is not None:
                    log.warning("webhook from %s refused: bad or missing X-Twilio-Signature for %s (CallSid %r)%s",
                                source, url, params.get("CallSid"), suffix(skipped))
                return Response("invalid signature", status_code=403)
        elif not settings.dev_mode:
            refused("webhook", "not_configured")
            if (skipped := quiet.allow("unconfigured", source)) is not None:
                log.warning("webhook from %s refused: TWILIO_AUTH_TOKEN is not set and dev mode is off%s",
                            source, suffix(skipped))
            return Response("signature checking is not configured", status_code=403)
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return Response("CallSid missing", status_code=400)
        if not webhook_rate.allow(source):
            refused("webhook", "rate_per_source")
            if (skipped := quiet.allow("webhook_rate", source)) is not None:
                log.warning("call %r from %s refused: over %g new calls a second from this source (burst %d); "
                            "answering busy%s", call_sid, source, webhook_rate.rate, webhook_rate.burst, suffix(skipped))
            return Response(twiml.busy(), media_type="application/xml")
        if runtime is None or runtime.draining:
            return Response(twiml.busy(), media_type="application/xml")
        if len(runtime.active_calls) >= settings.max_calls:
            refused("webhook", "max_calls")
            log.warning("call %s refused: %d calls active (limit %d)", call_sid, len(runtime.active_calls), settings.max_calls)
            return Response(twiml.busy(), media_type="application/xml")
        flow_name = request.query_params.get("flow") or settings.default_flow
        if runtime.flows.get(flow_name) is None:
            log.error("call %s: flow '%s' is not loaded (have %s)", call_sid, flow_name, runtime.flows.names)
            return Response(
                twiml.reject("Sorry, this line is not available right now. Please try again later."),
                media_type="application/xml",
            )
        ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        token = make_stream_token(runtime.secret, call_sid, flow_name)
        body = twiml.connect_stream(
            f"{ws_base}/twilio/media",
            {"flow": flow_name, "token": token, "caller": params.get("From", ""), "called": params.get("To", "")},
        )
        log.info("call %s from %s: answering with flow %s", call_sid, params.get("From"), flow_name)
        return Response(body, media_type="application/xml")

    @app.api_route("/twilio/whisper", methods=["GET", "POST"])
    async def whisper(request: Request):
        """TwiML said to the agent before a transferred caller is connected (telephony/agent_whisper.py)."""
        runtime: Runtime | None = state["runtime"]
        q = request.query_params
        problem = "server is loading" if runtime is None else check_whisper(
            runtime.secret, q.get("call", ""), q.get("s", ""), q.get("t", ""))
        if problem:
            log.warning("whisper for call %r refused: %s", q.get("call"), problem)
            return Response("forbidden", status_code=403)
        return Response(say_to_agent(q["s"]), media_type="application/xml")

    @app.websocket("/twilio/media")
    async def media_stream(websocket: WebSocket):
        source = _source(websocket)
        refusal = sockets.admit(source)
        await websocket.accept()
        if refusal is not None:  # before any other work: a flood must stay cheap
            kind, why = refusal
            refused("media", kind)
            if (skipped := quiet.allow("socket", kind, source)) is not None:
                log.warning("media websocket from %s refused (1013, try again later): %s%s", source, why, suffix(skipped))
            await _close(websocket, 1013, "try again later")
            return
        waiting = True

        def started() -> None:
            nonlocal waiting
            if waiting:
                waiting = False
                sockets.started(source)

        try:
            await _media(websocket, source, started)
        finally:
            sockets.closed(source, waiting=waiting)

    async def _media(websocket: WebSocket, source: str, started: Callable[[], None]) -> None:
        runtime: Runtime | None = state["runtime"]
        if runtime is None:
            await websocket.close(code=1013, reason="server is loading")
            return
        watch = SocketWatch(websocket)
        try:
            start = await asyncio.wait_for(_read_start(websocket), settings.media_start_timeout)
        except asyncio.TimeoutError:
            refused("media", "no_start")
            if (skipped := quiet.allow("no_start", source)) is not None:
                log.warning("media websocket from %s closed: no `start` within %gs%s",
                            source, settings.media_start_timeout, suffix(skipped))
            await _close(websocket, 1008, "no start")
            return
        except (WebSocketDisconnect, _ProtocolError) as exc:
            why = watch.problem or str(exc) or f"the caller's side closed it ({getattr(exc, 'code', '?')})"
            refused("media", "too_big" if watch.problem else "protocol")
            if (skipped := quiet.allow("prestart", source, why)) is not None:
                log.warning("media websocket from %s closed before the call started: %s%s", source, why, suffix(skipped))
            await _close(websocket, 1008, "protocol error")
            return
        started()
        from ivr.media.pipeline import StreamStart, run_call  # pipecat stays in the media layer

        custom = start.get("customParameters") or {}
        call_sid, stream_sid = start.get("callSid") or "", start.get("streamSid") or ""
        flow_name = custom.get("flow") or ""
        problem = check_stream_token(runtime.secret, custom.get("token"), call_sid, flow_name, ttl=settings.stream_token_ttl)
        if problem:
            refused("media", "token")
            if (skipped := quiet.allow("token", source)) is not None:
                log.warning("media websocket from %s for call %r refused: %s%s", source, call_sid, problem, suffix(skipped))
            await _close(websocket, 1008, "bad token")
            return
        if call_sid in runtime.active_calls:
            refused("media", "replayed")
            log.warning("media websocket refused: call %s already has a stream (replayed token?)", call_sid)
            await _close(websocket, 1008, "duplicate stream")
            return
        if call_sid in seen_streams:
            refused("media", "replayed")
            log.warning("media websocket from %s refused: call %s already had a stream, now ended (replayed token?)",
                        source, call_sid)
            await _close(websocket, 1008, "duplicate stream")
            return
        if len(runtime.active_calls) >= settings.max_calls:
            # The webhook checked too, but streams of webhooks answered at the same moment can
            # all arrive: the pipelines are what max_calls is there to bound.
            refused("media", "max_calls")
            log.warning("call %s refused at stream start: %d calls active (limit %d)",
                        call_sid, len(runtime.active_calls), settings.max_calls)
            await _close(websocket, 1013, "busy")
            return
        flow = runtime.flows.get(flow_name)
        if flow is None:
            log.error("call %s: flow %s disappeared before the stream started", call_sid, flow_name)
            await _close(websocket, 1011, "flow unavailable")
            return
        seen_streams.add(call_sid)
        info = StreamStart(
            stream_sid=stream_sid,
            call_sid=call_sid,
            flow=flow_name,
            caller=custom.get("caller") or None,
            called=custom.get("called") or None,
            parameters=custom,
        )
        log.info("call %s: media stream %s started on flow %s v%s", call_sid, stream_sid, flow.name, flow.version)
        try:
            await run_call(websocket, info, flow, runtime, watch=watch)
        finally:
            await _close(websocket, 1000, "call ended")

    return app


class _ProtocolError(Exception):
    pass


async def _read_start(websocket: WebSocket) -> dict:
    """Read until Twilio's `start`; tolerate `connected` and a few early or junk messages."""
    for _ in range(MAX_PRELUDE_MESSAGES):
        received = await websocket.receive()
        if received["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(received.get("code", 1000), received.get("reason"))
        raw = received.get("text") if received.get("text") is not None else received.get("bytes") or b""
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            log.warning("media websocket: message before `start` is not JSON: %r", raw[:80])
            continue
        event = message.get("event") if isinstance(message, dict) else None
        if event == "start":
            start = message.get("start")
            if not isinstance(start, dict) or not start.get("callSid") or not message.get("streamSid", start.get("streamSid")):
                raise _ProtocolError("`start` without callSid/streamSid")
            start.setdefault("streamSid", message.get("streamSid"))
            custom = start.get("customParameters")
            if not all(isinstance(v, str) for v in (start["callSid"], start["streamSid"])) or not (
                    custom is None or (isinstance(custom, dict) and all(isinstance(v, str) for v in custom.values()))):
                raise _ProtocolError("`start` with callSid, streamSid or customParameters that are not text")
            return start
        if event == "stop":
            raise _ProtocolError("`stop` before `start`")
        if event != "connected":
            log.warning("media websocket: %r event before `start`, ignored", event)
    raise _ProtocolError(f"no `start` in the first {MAX_PRELUDE_MESSAGES} messages")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code=code, reason=reason)
    except Exception:
        pass
