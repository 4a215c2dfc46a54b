"""The ASGI app: Twilio's routes (ivr.serving.twilio_routes), /healthz, /metrics and the
operator dashboard (/dashboard, ivr.dashboard), and what starts and stops with the server."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ivr.dashboard import Dashboard
from ivr.media.recording import retention_loop
from ivr.serving.browser_routes import BrowserCalls
from ivr.serving.config import Settings
from ivr.serving.metrics import Metrics, ObservedStore
from ivr.serving.runtime import Runtime
from ivr.serving.twilio_routes import TwilioRoutes

log = logging.getLogger("ivr.serving.app")


def create_app(settings: Settings, runtime_factory: Callable[[], Runtime] | None = None) -> FastAPI:
    state: dict = {"runtime": None}
    twilio = TwilioRoutes(settings, lambda: state["runtime"])

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
        if settings.warm_up and settings.default_flow in runtime.flows.names:
            # Before the server takes its first request: the first caller is greeted as fast as the
            # hundredth (ivr/media/warmup.py says what the first call used to pay for).
            from ivr.media.warmup import warm_call

            try:
                seconds = await warm_call(runtime, settings.default_flow)
                log.info("warm-up call greeted in %.0f ms", seconds * 1000)
            except Exception as exc:
                log.warning("warm-up call failed (the first call will be slower): %s", exc)
        state["runtime"] = runtime
        watcher = asyncio.create_task(runtime.flows.watch())
        retention = asyncio.create_task(retention_loop(settings.recordings_path, settings.recording_retention_days))
        forgetting = asyncio.create_task(runtime.forget_unused())
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
            forgetting.cancel()
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
        metrics.sample_server(media_sockets=twilio.sockets.open, media_sockets_waiting=twilio.sockets.waiting,
                              loop_tasks=len(asyncio.all_tasks()))
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    app.include_router(twilio.router)
    app.include_router(BrowserCalls(settings, lambda: state["runtime"], dashboard.auth, twilio).router)
    return app
