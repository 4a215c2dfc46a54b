"""Twilio's side of the server: the voice webhook, the media-stream websocket and the agent's
whisper. Each checks what it is sent (signatures, stream tokens, floods and replays: the
reasoning is in ivr/telephony/guard.py) before any call work starts.

POST /twilio/voice    checks X-Twilio-Signature, answers TwiML <Connect><Stream> with the flow's
                      name and a per-call token as stream parameters.
WS   /twilio/media    reads Twilio's `connected`/`start`, checks the token, then hands the socket
                      to the call's pipeline (ivr.media.pipeline).
GET  /twilio/whisper  what an agent hears before a transferred caller is put through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response

from ivr.serving.config import Settings
from ivr.serving.runtime import Runtime
from ivr.telephony import twiml
from ivr.telephony.agent_whisper import check_whisper, public_http_base, say_to_agent
from ivr.telephony.guard import LogThrottle, SeenStreams, SocketLimits, SocketSlot, SocketWatch, SourceRate, suffix
from ivr.telephony.security import check_stream_token, make_stream_token, valid_twilio_signature

log = logging.getLogger("ivr.serving.app")

MAX_PRELUDE_MESSAGES = 50  # messages tolerated before `start` (media sent early, junk)
# Twilio's webhook is ~25 short fields (more with SIP headers or add-ons); starlette's own caps
# (1000 fields of 1 MB) would let one request hold a gigabyte while it is parsed.
WEBHOOK_MAX_FIELDS = 200
WEBHOOK_MAX_FIELD_BYTES = 64 * 1024


def source_of(connection) -> str:
    """The client's address: uvicorn has already taken it from X-Forwarded-For when the peer is
    a trusted proxy (IVR_TRUSTED_PROXIES, ivr/tools/cli.py)."""
    return connection.client.host if connection.client else "unknown"


class TwilioRoutes:
    def __init__(self, settings: Settings, runtime: Callable[[], Runtime | None]):
        """runtime(): the loaded runtime, or None while the server is still loading."""
        self.settings = settings
        self.runtime = runtime
        # Limits on floods and replays (the reasoning is in ivr/telephony/guard.py).
        self.sockets = SocketLimits(settings.media_sockets_limit, settings.max_waiting_sockets_per_source)
        self.webhook_rate = SourceRate(settings.webhook_rate(signed=bool(settings.twilio_auth_token)),
                                       settings.webhook_burst_per_source)
        self.seen_streams = SeenStreams(settings.stream_token_ttl + 60)
        self.quiet = LogThrottle()
        self.router = APIRouter()
        self.router.add_api_route("/twilio/voice", self.voice_webhook, methods=["POST"])
        self.router.add_api_route("/twilio/whisper", self.whisper, methods=["GET", "POST"])
        self.router.add_api_websocket_route("/twilio/media", self.media_stream)

    def refused(self, what: str, reason: str) -> None:
        runtime = self.runtime()
        if runtime is not None:
            runtime.store.metrics.refused.labels(what, reason).inc()

    async def voice_webhook(self, request: Request):
        runtime: Runtime | None = self.runtime()
        source = source_of(request)
        form = await request.form(max_fields=WEBHOOK_MAX_FIELDS, max_part_size=WEBHOOK_MAX_FIELD_BYTES)
        params = {k: str(v) for k, v in form.items()}
        base = public_http_base(self.settings.public_url, str(request.url), request.headers)
        if self.settings.twilio_auth_token:
            url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if not valid_twilio_signature(self.settings.twilio_auth_token, url, params, request.headers.get("x-twilio-signature")):
                self.refused("webhook", "signature")
                if (skipped := self.quiet.allow("signature", source)) is not None:
                    log.warning("webhook from %s refused: bad or missing X-Twilio-Signature for %s (CallSid %r)%s",
                                source, url, params.get("CallSid"), suffix(skipped))
                return Response("invalid signature", status_code=403)
        elif not self.settings.dev_mode:
            self.refused("webhook", "not_configured")
            if (skipped := self.quiet.allow("unconfigured", source)) is not None:
                log.warning("webhook from %s refused: TWILIO_AUTH_TOKEN is not set and dev mode is off%s",
                            source, suffix(skipped))
            return Response("signature checking is not configured", status_code=403)
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return Response("CallSid missing", status_code=400)
        if not self.webhook_rate.allow(source):
            self.refused("webhook", "rate_per_source")
            if (skipped := self.quiet.allow("webhook_rate", source)) is not None:
                log.warning("call %r from %s refused: over %g new calls a second from this source (burst %d); "
                            "answering busy%s", call_sid, source, self.webhook_rate.rate, self.webhook_rate.burst, suffix(skipped))
            return Response(twiml.busy(), media_type="application/xml")
        if runtime is None or runtime.draining:
            return Response(twiml.busy(), media_type="application/xml")
        if len(runtime.active_calls) >= self.settings.max_calls:
            self.refused("webhook", "max_calls")
            log.warning("call %s refused: %d calls active (limit %d)", call_sid, len(runtime.active_calls), self.settings.max_calls)
            return Response(twiml.busy(), media_type="application/xml")
        flow_name = request.query_params.get("flow") or self.settings.default_flow
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

    async def whisper(self, request: Request):
        """TwiML said to the agent before a transferred caller is connected (telephony/agent_whisper.py)."""
        runtime: Runtime | None = self.runtime()
        q = request.query_params
        problem = "server is loading" if runtime is None else check_whisper(
            runtime.secret, q.get("call", ""), q.get("s", ""), q.get("t", ""))
        if problem:
            log.warning("whisper for call %r refused: %s", q.get("call"), problem)
            return Response("forbidden", status_code=403)
        return Response(say_to_agent(q["s"]), media_type="application/xml")

    async def media_stream(self, websocket: WebSocket):
        source = source_of(websocket)
        refusal = self.sockets.admit(source)
        await websocket.accept()
        if refusal is not None:  # before any other work: a flood must stay cheap
            kind, why = refusal
            self.refused("media", kind)
            if (skipped := self.quiet.allow("socket", kind, source)) is not None:
                log.warning("media websocket from %s refused (1013, try again later): %s%s", source, why, suffix(skipped))
            await close_socket(websocket, 1013, "try again later")
            return
        slot = SocketSlot(self.sockets, source)
        try:
            await self._media(websocket, source, slot.started)
        finally:
            slot.release()

    async def _media(self, websocket: WebSocket, source: str, started: Callable[[], None]) -> None:
        runtime: Runtime | None = self.runtime()
        if runtime is None:
            await websocket.close(code=1013, reason="server is loading")
            return
        watch = SocketWatch(websocket)
        try:
            start = await asyncio.wait_for(read_start(websocket), self.settings.media_start_timeout)
        except asyncio.TimeoutError:
            self.refused("media", "no_start")
            if (skipped := self.quiet.allow("no_start", source)) is not None:
                log.warning("media websocket from %s closed: no `start` within %gs%s",
                            source, self.settings.media_start_timeout, suffix(skipped))
            await close_socket(websocket, 1008, "no start")
            return
        except (WebSocketDisconnect, StreamProtocolError) as exc:
            why = watch.problem or str(exc) or f"the caller's side closed it ({getattr(exc, 'code', '?')})"
            self.refused("media", "too_big" if watch.problem else "protocol")
            if (skipped := self.quiet.allow("prestart", source, why)) is not None:
                log.warning("media websocket from %s closed before the call started: %s%s", source, why, suffix(skipped))
            await close_socket(websocket, 1008, "protocol error")
            return
        started()
        from ivr.media.pipeline import StreamStart, run_call  # pipecat stays in the media layer

        custom = start.get("customParameters") or {}
        call_sid, stream_sid = start.get("callSid") or "", start.get("streamSid") or ""
        flow_name = custom.get("flow") or ""
        problem = check_stream_token(runtime.secret, custom.get("token"), call_sid, flow_name, ttl=self.settings.stream_token_ttl)
        if problem:
            self.refused("media", "token")
            if (skipped := self.quiet.allow("token", source)) is not None:
                log.warning("media websocket from %s for call %r refused: %s%s", source, call_sid, problem, suffix(skipped))
            await close_socket(websocket, 1008, "bad token")
            return
        if call_sid in runtime.active_calls:
            self.refused("media", "replayed")
            log.warning("media websocket refused: call %s already has a stream (replayed token?)", call_sid)
            await close_socket(websocket, 1008, "duplicate stream")
            return
        if call_sid in self.seen_streams:
            self.refused("media", "replayed")
            log.warning("media websocket from %s refused: call %s already had a stream, now ended (replayed token?)",
                        source, call_sid)
            await close_socket(websocket, 1008, "duplicate stream")
            return
        if len(runtime.active_calls) >= self.settings.max_calls:
            # The webhook checked too, but streams of webhooks answered at the same moment can
            # all arrive: the pipelines are what max_calls is there to bound.
            self.refused("media", "max_calls")
            log.warning("call %s refused at stream start: %d calls active (limit %d)",
                        call_sid, len(runtime.active_calls), self.settings.max_calls)
            await close_socket(websocket, 1013, "busy")
            return
        flow = runtime.flows.get(flow_name)
        if flow is None:
            log.error("call %s: flow %s disappeared before the stream started", call_sid, flow_name)
            await close_socket(websocket, 1011, "flow unavailable")
            return
        self.seen_streams.add(call_sid)
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
            await close_socket(websocket, 1000, "call ended")


class StreamProtocolError(Exception):
    pass


async def read_start(websocket: WebSocket) -> dict:
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
                raise StreamProtocolError("`start` without callSid/streamSid")
            start.setdefault("streamSid", message.get("streamSid"))
            custom = start.get("customParameters")
            if not all(isinstance(v, str) for v in (start["callSid"], start["streamSid"])) or not (
                    custom is None or (isinstance(custom, dict) and all(isinstance(v, str) for v in custom.values()))):
                raise StreamProtocolError("`start` with callSid, streamSid or customParameters that are not text")
            return start
        if event == "stop":
            raise StreamProtocolError("`stop` before `start`")
        if event != "connected":
            log.warning("media websocket: %r event before `start`, ignored", event)
    raise StreamProtocolError(f"no `start` in the first {MAX_PRELUDE_MESSAGES} messages")


async def close_socket(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code=code, reason=reason)
    except Exception:
        pass
