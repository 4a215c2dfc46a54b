"""The NLU step of a turn: the current node's expectation + the caller's words -> understanding.

Blocking model work (embeddings, llama.cpp) runs on the NLU worker thread, never on the event
loop. Per-node preparation (example embeddings, the SLM's prompt prefix) happens when a flow is
loaded, so the first caller does not pay for it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ivr.dialog.engine import Expectation, Understanding
from ivr.dialog.loader import LoadedFlow
from ivr.speech.workers import ModelWorker

log = logging.getLogger("ivr.nlu")


@dataclass
class NLUOutcome:
    understanding: Understanding
    ranked: list[tuple[str, float]] = field(default_factory=list)
    latency_ms: float = 0.0


def _intents_for(expectation: Expectation):
    from .intents import Intent

    return [Intent(o.name, tuple(o.examples), o.description) for o in expectation.intents]


class NLUService:
    def __init__(self, classifier, *, timeout: float | None = 5.0, concurrency: int = 2):
        """concurrency 2: a turn the example router settles in ~10 ms must not queue behind
        another call's small-LM turn (0.6-1 s). The classifier is thread-safe, and the small
        LM keeps its own lock, so its turns still run one at a time (measured with 8 calls: a
        router-only turn waited 2 s for the single worker)."""
        self.classifier = classifier
        self.worker = ModelWorker("nlu", concurrency, timeout)

    def prepare(self, expectation: Expectation) -> bool:
        """Cache one node's examples and prompt prefix (blocking)."""
        if not expectation.intents:
            return False
        self.classifier.prepare(expectation.key, _intents_for(expectation))
        return True

    def prepare_flow(self, loaded: LoadedFlow) -> int:
        """Cache every listening node of a flow (blocking; call at load). Returns nodes prepared."""
        from ivr.dialog.engine import FlowEngine

        count = 0
        for name, node in loaded.flow.nodes.items():
            if node.listens:
                engine = FlowEngine(loaded)
                engine.state.node = name
                count += self.prepare(engine.expectation())
        return count

    @property
    def routes_every_turn(self) -> bool:
        """True for the tool-call baseline, which asks its model on collect nodes too."""
        return getattr(self.classifier, "routes_every_turn", False)

    def understand_sync(self, expectation: Expectation, text: str) -> NLUOutcome:
        started = time.perf_counter()
        if self.routes_every_turn and text.strip() and (expectation.intents or expectation.slot):
            result = self.classifier.classify(expectation.key, _intents_for(expectation), text, slot=expectation.slot)
        elif not expectation.intents or not text.strip():
            return NLUOutcome(Understanding(None, 0.0, "none"), [], 0.0)
        else:
            result = self.classifier.classify(expectation.key, _intents_for(expectation), text)
        latency = (time.perf_counter() - started) * 1000
        return NLUOutcome(
            Understanding(result.intent, float(result.confidence), result.source),
            list(result.ranked),
            latency,
        )

    async def understand(self, expectation: Expectation, text: str) -> NLUOutcome:
        return await self.worker.run(self.understand_sync, expectation, text)
