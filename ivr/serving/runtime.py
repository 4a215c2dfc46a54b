"""Everything a server process loads once and shares across calls: models, flows, the call log."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from ivr.serving.config import Settings
from ivr.dialog.engine import nlu_preparation
from ivr.dialog.loader import LoadedFlow
from ivr.nlu.understanding import Candidates
from ivr.serving.flows import FlowRepository, static_prompts
from ivr.registry import model_registry, voice_registry

log = logging.getLogger("ivr.serving.runtime")

#: What the NLU prepared for a flow version nothing has used for this long is forgotten, unless the
#: line answers with it: a replaced version once its calls have ended, a draft, a review's proof.
PREPARED_IDLE_S = 600.0


@dataclass
class Runtime:
    settings: Settings
    stt: object
    tts: object
    nlu: object
    store: object
    flows: FlowRepository
    models: dict
    secret: str
    twilio: object | None = None
    llm: object | None = None
    load_seconds: dict = field(default_factory=dict)
    active_calls: dict = field(default_factory=dict)
    draining: bool = False

    def versions_in_use(self) -> set[str]:
        """The flow versions the line answers with, and those calls in progress still hold."""
        live = {self.flows.get(n).version for n in self.flows.names if self.flows.get(n) is not None}
        held = {getattr(getattr(c.get("session"), "flow", None), "version", None) for c in list(self.active_calls.values())}
        return live | {v for v in held if v}

    async def forget_unused(self, idle_s: float = PREPARED_IDLE_S, every_s: float = 60.0) -> None:
        """Runs with the server: memory stays bounded however often flows are edited, drafts
        called or reviews proven (each prepared version holds a few MB per menu)."""
        sweep = getattr(self.nlu, "sweep", None)
        if sweep is None:
            return
        while True:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(sweep, self.versions_in_use(), idle_s)
            except Exception:
                log.exception("NLU: forgetting unused flow versions failed; will try again")

    @classmethod
    def load(cls, settings: Settings, progress: Callable[[str], None] = print, *, store=None) -> "Runtime":
        from ivr.calllog.store import open_store
        from ivr.nlu.example_advice import menus_advice
        from ivr.nlu.intents import load_intent_classifier
        from ivr.nlu.service import NLUService
        from ivr.speech.stt import STTSettings, Transcriber
        from ivr.speech.tts import Synthesizer

        models = model_registry()
        voices = voice_registry()
        timings: dict[str, float] = {}

        def step(label: str, fn):
            progress(f"  loading {label} ...")
            started = time.perf_counter()
            value = fn()
            timings[label] = round(time.perf_counter() - started, 2)
            progress(f"  loaded {label} in {timings[label]:.2f}s")
            return value

        stt_info = models.for_role("stt")
        stt = step(
            f"speech recogniser ({stt_info.version})",
            lambda: Transcriber(
                stt_info.path,
                STTSettings(
                    device=settings.stt_device,
                    compute_type=settings.stt_compute_type,
                    cpu_threads=settings.stt_threads,
                    beam_size=settings.stt_beam_size,
                    window_pad_s=1.0 if settings.stt_window_secs > 0 else None,
                    window_min_s=settings.stt_window_secs,
                ),
            ),
        )
        voice_info = voices.for_role("default")
        tts = step(f"voice ({voice_info.version})", lambda: Synthesizer(voice_info.path))
        emb_info = models.for_role("embedder")
        if settings.nlu_mode not in ("hybrid", "router", "toolcall"):
            raise ValueError(f"IVR_NLU_MODE must be hybrid, router or toolcall, not {settings.nlu_mode!r}")
        gpu_layers = -1 if settings.slm_device == "cuda" else 0
        use_slm = settings.nlu_mode == "toolcall" or (settings.slm_enabled and settings.nlu_mode == "hybrid")
        slm_info = models.for_role("slm") if use_slm else None
        if settings.nlu_mode == "toolcall":
            from ivr.nlu.toolcall import ToolCallClassifier

            classifier = step(f"tool-call baseline NLU ({slm_info.version})",
                              lambda: ToolCallClassifier(slm_info.path, n_threads=settings.slm_threads,
                                                         max_threads=settings.slm_max_threads,
                                                         n_gpu_layers=gpu_layers))
        else:
            label = f"NLU ({emb_info.version}" + (f" + {slm_info.version})" if slm_info else ")")
            classifier = step(
                label, lambda: load_intent_classifier(
                    models, use_slm=use_slm, threads=settings.nlu_threads, slm_threads=settings.slm_threads,
                    slm_max_threads=settings.slm_max_threads, slm_gpu_layers=gpu_layers,
                    slm_budget_ms=settings.slm_budget_ms,
                )
            )
        nlu = NLUService(classifier)

        def prepare(loaded: LoadedFlow) -> None:
            started = time.perf_counter()
            items = nlu_preparation(loaded)
            nodes = nlu.prepare_all(items)
            prompts = tts.warm(static_prompts(loaded))
            log.info(
                "flow %s v%s prepared: %d menu nodes, %d prompts synthesised in %.2fs",
                loaded.name, loaded.version, nodes, prompts, time.perf_counter() - started,
            )
            if hasattr(classifier, "calibration"):  # the example router (not the tool-call baseline)
                menus = [c for c in items if isinstance(c, Candidates) and c.intents]
                weak = [a.line() for a, _nodes in menus_advice(classifier, menus)]
                if weak:
                    log.warning("flow %s v%s: callers who word a request their own way may be turned away, "
                                "the examples are too few or too alike (ivr validate --explain): %s",
                                loaded.name, loaded.version, " | ".join(weak))

        flows = FlowRepository(settings.flows_dir, prepare=prepare)
        changed = step(f"flows from {settings.flows_dir}", flows.reload)
        for path, errors in flows.errors.items():
            for err in errors:
                progress(f"  flow error: {err}")
        if not changed and not flows.names:
            progress(f"  warning: no valid flow in {settings.flows_dir}")
        if store is None:
            store = open_store(settings.database)
        twilio = None
        if settings.twilio_account_sid and settings.twilio_auth_token:
            from ivr.telephony.rest import TwilioCalls

            twilio = TwilioCalls(settings.twilio_account_sid, settings.twilio_auth_token, api_url=settings.twilio_api_url)
        llm = None
        if settings.llm_base_url:
            from ivr.handoff.llm import LLMHandoff, llm_settings

            llm = LLMHandoff(llm_settings(settings))
            progress(f"  LLM handoff: {settings.llm_model} at {settings.llm_base_url}")
        secret = settings.secret or settings.twilio_auth_token or secrets.token_urlsafe(32)
        described = {"stt": stt_info.describe(), "voice": voice_info.describe(), "embedder": emb_info.describe()}
        if slm_info:
            described["slm"] = slm_info.describe()
        return cls(
            settings=settings, stt=stt, tts=tts, nlu=nlu, store=store, flows=flows,
            models=described, secret=secret, twilio=twilio, llm=llm, load_seconds=timings,
        )
