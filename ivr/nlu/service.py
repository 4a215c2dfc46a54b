"""The NLU step of a turn: the current node's candidates + the caller's words -> understanding.

Blocking model work (embeddings, llama.cpp) runs on the NLU worker thread, never on the event
loop. Per-node preparation (example embeddings, the SLM's prompt prefix) happens when a flow is
loaded, so the first caller does not pay for it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterable

from ivr.nlu.understanding import (Candidates, ExtractionPlan, NLUOutcome, SignalExamples, SlotSpec, SlotValue,
                                   Understanding)
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
        self._flow_signal_cache: dict[SignalExamples, dict] = {}
        self._flow_signal_lock = threading.Lock()  # the worker's two threads share the cache

    def prepare(self, candidates: Candidates) -> bool:
        """Cache one node's examples and prompt prefix (blocking)."""
        if not candidates.intents:
            return False
        self.classifier.prepare(candidates.key, list(candidates.intents))
        return True

    def prepare_all(self, items: Iterable[Candidates | ExtractionPlan | SignalExamples]) -> int:
        """Cache every listening node of a flow and its extraction prompts (blocking; call at
        load, with `ivr.dialog.engine.nlu_preparation(flow)`). Returns the nodes prepared."""
        _ = self.signal_scorer  # its exemplars are embedded once, before the first caller
        n = 0
        for item in items:
            if isinstance(item, SignalExamples):
                if item and self.signal_scorer is not None:
                    self._flow_signals(item)
            elif isinstance(item, ExtractionPlan):
                if self.extractor is not None:
                    self.extractor.prepare(item.key, item.specs, item.shots)
            else:
                n += self.prepare(item)
        return n

    def sweep(self, keep: set[str], idle_s: float) -> set[str]:
        """Forget what was prepared for flow versions not in `keep` (the versions the line answers
        with) and unused for `idle_s`: replaced versions, drafts, the versions a review proved.
        Each holds a router index and, with the small model, a few MB of KV state per menu.
        Returns the versions forgotten."""
        idle = getattr(self.classifier, "idle_versions", None)
        if idle is None:
            return set()
        gone = idle(idle_s) - set(keep)
        if gone:
            menus = self.classifier.forget_versions(gone)
            log.info("NLU: forgot %d menu(s) of %d flow version(s) no call has used for %.0f s", menus, len(gone),
                     idle_s)
        return gone

    @property
    def extractor(self):
        """The small model's slot filler (ivr.nlu.slm_extract), where the SLM runs in process."""
        if not hasattr(self, "_extractor"):
            from ivr.nlu.slm import SlmScorer
            from ivr.nlu.slm_extract import SlotExtractor

            slm = getattr(self.classifier, "slm", None)
            self._extractor = SlotExtractor(slm) if isinstance(slm, SlmScorer) else None
        return self._extractor

    def extract_sync(self, plan: ExtractionPlan, ask: tuple[SlotSpec, ...], text: str,
                     claimed: tuple[tuple[int, int], ...] = ()) -> list[SlotValue]:
        if self.extractor is None or not ask:
            return []
        return self.extractor.extract(plan.key, plan.specs, ask, text, plan.shots,
                                      request_words=plan.request_words, claimed=claimed)

    async def extract(self, plan: ExtractionPlan, ask: tuple[SlotSpec, ...], text: str,
                      claimed: tuple[tuple[int, int], ...] = ()) -> list[SlotValue]:
        """The small model's values for the slots in `ask` (those of `plan` the parsers left;
        `claimed`: the character spans of the values they placed)."""
        return await self.worker.run(self.extract_sync, plan, ask, text, claimed)

    @property
    def signal_scorer(self):
        """The escalation signals' scorer (ivr.nlu.signal_model), on the classifier's embedder;
        None for a classifier without one (the tool-call baseline)."""
        if not hasattr(self, "_signal_scorer"):
            from ivr.nlu.signal_model import SignalScorer

            embedder = getattr(self.classifier, "embedder", None)
            self._signal_scorer = None
            if embedder is not None:
                try:
                    self._signal_scorer = SignalScorer(embedder)
                except Exception:  # a broken exemplar or heads file: the words still score the turn
                    log.exception("escalation signals: the model is off, words only")
        return self._signal_scorer

    def signals_sync(self, text: str, examples: SignalExamples | None = None) -> dict[str, float] | None:
        scorer = self.signal_scorer
        if scorer is None or not text.strip():
            return None
        return scorer.score(text, self._flow_signals(examples) if examples else None)

    async def signals(self, text: str, examples: SignalExamples | None = None) -> dict[str, float] | None:
        """The turn's escalation signal scores (~1-5 ms: the turn's vector is usually cached);
        `examples`: the flow's own signal sentences."""
        return await self.worker.run(self.signals_sync, text, examples)

    def _flow_signals(self, examples: SignalExamples) -> dict:
        """A flow's signal sentences, embedded once (at load, by `prepare_all`) and kept while
        any flow version uses them (a few dozen sentences each)."""
        cache = self._flow_signal_cache
        vectors = cache.get(examples)
        if vectors is None:
            vectors = self.signal_scorer.embed_examples(examples)
            with self._flow_signal_lock:
                if len(cache) >= 64:  # flows edited all day: the oldest go
                    cache.pop(next(iter(cache)))
                cache[examples] = vectors
        return vectors

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
        vector, by = self._vector(text)
        return NLUOutcome(
            Understanding(result.intent, float(result.confidence), result.source),
            list(result.ranked),
            latency,
            vector=vector,
            vector_by=by,
        )

    def _vector(self, text: str):
        """The words' embedding, from the embedder's cache (the router has just embedded them)."""
        embedder = getattr(self.classifier, "embedder", None)
        by = getattr(embedder, "id", None)
        if by is None or not text.strip():
            return None, None
        return embedder.encode([text.strip()])[0], by

    async def understand(self, candidates: Candidates, text: str) -> NLUOutcome:
        return await self.worker.run(self.understand_sync, candidates, text)
