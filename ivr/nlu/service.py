"""The NLU step of a turn: the current node's candidates + the caller's words -> understanding.

Blocking model work (embeddings, llama.cpp) runs on the NLU worker thread, never on the event
loop. Per-node preparation (example embeddings, the SLM's prompt prefix) happens when a flow is
loaded, so the first caller does not pay for it.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

from ivr.nlu.understanding import Candidates, NLUOutcome, Understanding
from ivr.speech.workers import ModelWorker

log = logging.getLogger("ivr.nlu")


class NLUService:
    def __init__(self, classifier, *, timeout: float | None = 5.0, concurrency: int = 2):
        """concurrency 2: a turn the example router settles in ~10 ms must not queue behind
        another call's small-LM turn (0.6-1 s). The classifier is thread-safe, and the small
        LM keeps its own lock, so its turns still run one at a time (measured with 8 calls: a
        router-only turn waited 2 s for the single worker)."""
        self.classifier = classifier
        self.worker = ModelWorker("nlu", concurrency, timeout)

    def prepare(self, candidates: Candidates) -> bool:
        """Cache one node's examples and prompt prefix (blocking)."""
        if not candidates.intents:
            return False
        self.classifier.prepare(candidates.key, list(candidates.intents))
        return True

    def prepare_all(self, nodes: Iterable[Candidates]) -> int:
        """Cache every listening node of a flow (blocking; call at load, with
        `ivr.dialog.engine.listening_candidates(flow)`). Returns the nodes prepared."""
        return sum(self.prepare(candidates) for candidates in nodes)

    @property
    def routes_every_turn(self) -> bool:
        """True for the tool-call baseline, which asks its model on collect nodes too."""
        return getattr(self.classifier, "routes_every_turn", False)

    def understand_sync(self, candidates: Candidates, text: str) -> NLUOutcome:
        started = time.perf_counter()
        intents = list(candidates.intents)
        if self.routes_every_turn and text.strip() and (intents or candidates.slot):
            result = self.classifier.classify(candidates.key, intents, text, slot=candidates.slot)
        elif not intents or not text.strip():
            return NLUOutcome(Understanding(None, 0.0, "none"), [], 0.0)
        else:
            result = self.classifier.classify(candidates.key, intents, text)
        latency = (time.perf_counter() - started) * 1000
        return NLUOutcome(
            Understanding(result.intent, float(result.confidence), result.source),
            list(result.ranked),
            latency,
        )

    async def understand(self, candidates: Candidates, text: str) -> NLUOutcome:
        return await self.worker.run(self.understand_sync, candidates, text)
