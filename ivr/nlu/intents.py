"""Intent classification for one menu: which of the current node's intents the caller means.

Two stages (docs/architecture.md, "Routing intents"; docs/nlu.md):

1. `ExampleRouter` (ONNX sentence embeddings, ~5-10 ms): scores the caller's words against the
   designer's examples. Its threshold is calibrated per menu from the examples themselves
   (leave-one-out) and a built-in background set of generic out-of-scope phrases. When its
   conf is far enough above the threshold it routes, far enough below it says out of scope.
2. `SlmScorer` (llama-cpp-python, ~150-400 ms on 2 cores), only for the turns in between: a
   few-shot prompt built from the designer's examples, cached per menu (so a turn evaluates only
   the caller's words), asks whether the caller wants the router's best intent (yes/no), with
   shots that answer "no" for the intent the router confuses an example with and for generic
   out-of-scope phrases. Its yes/no log-odds plus the router's standardised conf decide between
   that intent and out of scope. (`slm_mode="choose"` instead scores every intent and a "none
   of these" option by next-token likelihood and blends that with the router: measured weaker.)

Never returns an intent that is not among the candidates. `classify` is thread-safe and meant to
run on a worker thread (it blocks for the models), never on the event loop.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ivr.nlu.calibration import Calibrator
from ivr.nlu.router import ExampleRouter, RouterIndex
from ivr.nlu.slm_prompts import SlmBudgetExceeded
from ivr.nlu.understanding import OUT_OF_SCOPE, Intent

log = logging.getLogger(__name__)

VERIFY_THRESHOLD = -1.5  # measured for the embedded Qwen 0.5B (docs/nlu.md); a registry entry may set its own

@dataclass
class IntentResult:
    intent: str  # one of the candidate names, or "out_of_scope"
    confidence: float  # 0..1
    ranked: list[tuple[str, float]]  # top candidates with scores, best first
    source: str  # "router" or "slm"
    latency_ms: float
    detail: dict = field(default_factory=dict)  # router conf/tau, SLM probabilities: for logs


def _fingerprint(intents: Sequence[Intent]) -> str:
    h = hashlib.sha1()
    for i in intents:
        h.update(repr((i.name, tuple(i.examples), i.description)).encode())
    return h.hexdigest()


@dataclass
class _Prepared:
    fingerprint: str
    index: RouterIndex
    slm_ready: bool


class IntentClassifier:
    """Router first, SLM for the turns the router is unsure of.

    Tuning keywords (anything else goes to `ExampleRouter`; defaults measured with
    `python -m ivr.bench.nlu_quick --split dev`):
      accept_band:  route without the SLM when conf >= tau + accept_band * spread (1.0)
      reject_band:  out of scope without the SLM when conf < tau - reject_band * spread (0.5)
      slm_mode:     "verify" (yes/no on the router's best intent) or "choose" ("verify")
      verify_threshold: the best intent wins when yes-no log-odds + verify_router_weight * z
                    exceeds this, z being the router's (conf - tau) / spread (-1.5)
      verify_router_weight: (2.0)
      slm_weight:   "choose" only: weight of the SLM's distribution against the router's (0.5)
      top_k:        how many candidates `ranked` lists (5)
      slm_budget_ms: the SLM's time for a turn, counted from the start of classify; past it
                    the router's answer stands (None: no limit; the server sets one)
    """

    def __init__(self, embedder, slm=None, *, calibrator: Calibrator | None = None, **tuning):
        self.accept_band = float(tuning.pop("accept_band", 1.0))
        self.reject_band = float(tuning.pop("reject_band", 0.5))
        self.slm_mode = str(tuning.pop("slm_mode", "verify"))
        if self.slm_mode not in ("verify", "choose"):
            raise ValueError(f"slm_mode must be 'verify' or 'choose', not {self.slm_mode!r}")
        self.verify_threshold = float(tuning.pop("verify_threshold", VERIFY_THRESHOLD))
        self.verify_router_weight = float(tuning.pop("verify_router_weight", 2.0))
        self.slm_weight = float(tuning.pop("slm_weight", 0.5))
        self.router_temperature = float(tuning.pop("router_temperature", 0.05))
        self.top_k = int(tuning.pop("top_k", 5))
        budget = tuning.pop("slm_budget_ms", None)
        self.slm_budget_ms = float(budget) if budget else None
        self.embedder = embedder
        self.slm = slm
        self.calibrator = calibrator if calibrator is not None else Calibrator.load()
        self.router = ExampleRouter(embedder, **tuning)
        self._prepared: dict[str, _Prepared] = {}
        self._used: dict[str, float] = {}  # key -> when a turn (or a preparation) last needed it
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    # -- preparation ------------------------------------------------------------------------
    def prepare(self, key: str, intents: Sequence[Intent]) -> None:
        """Embed and calibrate this menu's examples (and warm the SLM's prompt for it).

        Idempotent: a second call with the same intents does nothing; changed intents rebuild.
        """
        self._get(key, intents)

    def _get(self, key: str, intents: Sequence[Intent]) -> _Prepared:
        self._used[key] = time.monotonic()
        fp = _fingerprint(intents)
        prep = self._prepared.get(key)
        if prep is not None and prep.fingerprint == fp:
            return prep
        with self._lock:
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:
            prep = self._prepared.get(key)
            if prep is not None and prep.fingerprint == fp:
                return prep
            # Reviewed out-of-scope turns ride along as an intent named out_of_scope: examples
            # of what this menu must not route, not a choice (ivr/nlu/router.py build).
            menu = [i for i in intents if i.name != OUT_OF_SCOPE]
            oos = [e for i in intents if i.name == OUT_OF_SCOPE for e in i.examples]
            index = self.router.build(menu, out_of_scope=oos)
            if index.calibration.get("background_in_menu"):
                log.info("menu %r handles these generic phrases itself, so they do not count as out of scope there: %s",
                         key, "; ".join(index.calibration["background_in_menu"]))
            slm_ready = False
            if self.slm is not None:
                try:
                    self.slm.prepare(key, menu, confusable=self._confusable(index), modes=(self.slm_mode,),
                                     in_menu=index.calibration.get("background_in_menu", ()))
                    slm_ready = True
                except Exception:  # the router still works without it
                    log.exception("SLM prompt for %r failed; router only", key)
            prep = _Prepared(fp, index, slm_ready)
            self._prepared[key] = prep
            self._used[key] = time.monotonic()  # a sweep during the build may have dropped it
            return prep

    def idle_versions(self, idle_s: float) -> set[str]:
        """Flow versions (a key's part before the first `:`) none of whose menus was used for
        `idle_s` seconds."""
        now, last = time.monotonic(), {}
        for key, used in list(self._used.items()):
            version = key.split(":", 1)[0]
            last[version] = max(last.get(version, 0.0), used)
        if self.slm is not None and hasattr(self.slm, "last_used"):
            # the small model's own prompts: slot extraction's too, which no menu lists
            for version, used in self.slm.last_used().items():
                last[version] = max(last.get(version, 0.0), used)
        return {v for v, used in last.items() if now - used > idle_s}

    def forget_versions(self, versions: set[str]) -> int:
        """Drop what was prepared for these flow versions (router indexes, small-model prompts
        and their KV state). A turn that needs one again prepares it afresh. Returns the menus
        dropped."""
        def of(key: str) -> bool:
            return key.split(":", 1)[0] in versions

        with self._lock:
            gone = [k for k in self._prepared if of(k)]
            for key in gone:
                del self._prepared[key]
                self._key_locks.pop(key, None)
            for key in [k for k in self._used if of(k)]:
                del self._used[key]
        if self.slm is not None and hasattr(self.slm, "forget"):
            self.slm.forget(of)
        return len(gone)

    @staticmethod
    def _confusable(index: RouterIndex) -> dict[str, list[str]]:
        """For each intent, the others ordered by how close their centroids are."""
        sims = index.centroids @ index.centroids.T
        out = {}
        for k, name in enumerate(index.names):
            order = [j for j in np.argsort(-sims[k]) if j != k]
            out[name] = [index.names[j] for j in order]
        return out

    def calibration(self, key: str) -> dict:
        """What the router learned about a prepared menu (for `ivr validate` / `ivr test`)."""
        prep = self._prepared.get(key)
        return dict(prep.index.calibration) if prep else {}

    # -- classification ---------------------------------------------------------------------
    def classify(self, key: str, intents: Sequence[Intent], text: str) -> IntentResult:
        t0 = time.perf_counter()
        if not intents:
            return IntentResult(OUT_OF_SCOPE, 1.0, [], "router", 0.0, {"reason": "no intents"})
        prep = self._get(key, intents)
        index = prep.index
        text = (text or "").strip()
        if not text:
            return IntentResult(
                OUT_OF_SCOPE, 1.0, [], "router", (time.perf_counter() - t0) * 1000, {"reason": "empty"}
            )
        vec = np.asarray(self.embedder.encode([text]))[0]
        rs = self.router.score(index, vec)
        z = (rs.conf - rs.tau) / max(index.spread, 1e-3)
        detail = {
            "conf": round(rs.conf, 4),
            "tau": round(rs.tau, 4),
            "z": round(z, 3),
            "margin": round(rs.margin, 4),
            "nearest_cosine": round(rs.raw_best, 4),
            "background": rs.background,
        }
        hi = rs.tau + self.accept_band * index.spread
        lo = rs.tau - self.reject_band * index.spread
        ranked = [(n, round(sc, 4)) for n, sc in rs.ranked[: self.top_k]]
        use_slm = prep.slm_ready and lo <= rs.conf < hi and not rs.background
        if use_slm:
            try:
                return self._ask_slm(key, intents, text, index, rs, z, ranked, detail, t0)
            except SlmBudgetExceeded as exc:  # expected under load or for long turns
                log.info("SLM over budget on %r (%s); the router decides", key, exc)
                detail["slm_skipped"] = "budget"
            except Exception:  # a failing SLM must not fail the turn: the router decides
                log.exception("SLM failed on %r; the router decides", key)
                detail["slm_error"] = True
        if rs.conf >= rs.tau and not rs.background:
            intent, kind, x = rs.best, "router_in", z
        else:
            # nearer a background phrase than any example: out of scope at least as surely
            # as the threshold itself says
            intent, kind, x = OUT_OF_SCOPE, "router_oos", (max(-z, 0.0) if rs.background else -z)
        detail["decision"], detail["score"] = kind, float(x)
        conf = self.calibrator(kind, x)
        return IntentResult(intent, conf, ranked, "router", (time.perf_counter() - t0) * 1000, detail)

    def _ask_slm(self, key, intents, text, index, rs, z, ranked, detail, t0) -> IntentResult:
        """The router is unsure: the SLM settles it."""
        if self.slm_mode == "verify":
            deadline = None
            if self.slm_budget_ms:
                # the budget counts from the start of the turn's NLU, embedding included
                deadline = time.monotonic() - (time.perf_counter() - t0) + self.slm_budget_ms / 1000
                log_odds = self.slm.verify(key, text, rs.best, deadline=deadline)
            else:
                log_odds = self.slm.verify(key, text, rs.best)
            s = log_odds + self.verify_router_weight * z - self.verify_threshold
            detail["slm_log_odds"] = round(log_odds, 3)
            detail["s"] = round(s, 3)
            intent, kind, x = (rs.best, "slm_in", s) if s > 0 else (OUT_OF_SCOPE, "slm_oos", -s)
            detail["decision"], detail["score"] = kind, float(x)
            conf = self.calibrator(kind, x)
            return IntentResult(intent, conf, ranked, "slm", (time.perf_counter() - t0) * 1000, detail)

        slm_probs = self.slm.score(key, text)  # {name: p, OUT_OF_SCOPE: p}, sums to 1
        router_probs = self._router_distribution(rs, self.router.probability(index, rs))
        w = self.slm_weight
        names = [i.name for i in intents] + [OUT_OF_SCOPE]
        blended = {n: w * slm_probs.get(n, 0.0) + (1 - w) * router_probs.get(n, 0.0) for n in names}
        ranked_all = sorted(blended.items(), key=lambda kv: -kv[1])
        intent, conf = ranked_all[0]
        detail["slm"] = {n: round(p, 4) for n, p in sorted(slm_probs.items(), key=lambda kv: -kv[1])[:4]}
        ranked = [(n, round(p, 4)) for n, p in ranked_all if n != OUT_OF_SCOPE][: self.top_k]
        return IntentResult(intent, float(conf), ranked, "slm", (time.perf_counter() - t0) * 1000, detail)

    def _router_distribution(self, rs, p_in: float) -> dict[str, float]:
        names = [n for n, _ in rs.ranked]
        s = np.asarray([v for _, v in rs.ranked], dtype=np.float64)
        e = np.exp((s - s.max()) / self.router_temperature)
        e /= e.sum()
        out = {n: float(p_in * p) for n, p in zip(names, e)}
        out[OUT_OF_SCOPE] = 1.0 - p_in
        return out


def load_intent_classifier(
    registry=None, *, use_slm: bool = True, threads: int = 1, slm_threads: int = 1,
    slm_max_threads: int | None = None, slm_gpu_layers: int = 0, **tuning
) -> IntentClassifier:
    """The registry's embedder (and SLM, unless use_slm=False) behind one IntentClassifier.

    `threads` is onnxruntime's intra-op thread count for the embedder; `slm_threads` is
    llama.cpp's. (Measured here: with other processes busy on the 2 cores, n_threads=2 turned a
    ~0.6 s SLM turn into 6-9 s, since llama.cpp's threads spin waiting for each other; 1 thread
    did not degrade. A server shares its cores between STT, TTS and NLU, so 1 is the default;
    `slm_max_threads` lets a turn take more while the other cores are idle.)
    If the SLM cannot be loaded
    (llama-cpp-python missing, file missing) the classifier runs router-only and logs why.
    """
    if registry is None:
        from ivr.registry import model_registry

        registry = model_registry()
    from ivr.nlu.embedder import load_embedder

    embedder = load_embedder(registry, threads=threads)
    slm = None
    if use_slm:
        try:
            from ivr.nlu.slm import load_slm

            slm = load_slm(registry, n_threads=slm_threads, max_threads=slm_max_threads,
                           n_gpu_layers=slm_gpu_layers)
        except Exception:
            log.exception("SLM unavailable; intent classification runs router-only")
    calibrator = None
    if slm is not None and getattr(slm, "info", None) is not None:
        calibrator, slm_tuning = calibration_for(slm.info, Path(registry.path).parent)
        tuning = {**slm_tuning, **tuning}
    return IntentClassifier(embedder, slm, calibrator=calibrator, **tuning)


def slm_tuning(info) -> dict:
    """Classifier settings a registry entry gives for its SLM: `verify_threshold`. The maps in
    `calibration` read scores made with that threshold, so `ivr.bench.calibrate` fits with it."""
    extra = getattr(info, "extra", None) or {}
    if "verify_threshold" not in extra:
        return {}
    try:
        return {"verify_threshold": float(extra["verify_threshold"])}
    except (TypeError, ValueError):
        raise ValueError(f"model '{info.name}': verify_threshold must be a number, "
                         f"not {extra['verify_threshold']!r}") from None


def calibration_for(info, base_dir: Path) -> tuple[Calibrator, dict]:
    """The confidence maps and verify threshold for the SLM the registry entry `info` names.

    The SLM's yes/no log-odds mean something different for every model, so the shipped maps
    (fitted for the embedded Qwen) are wrong for a bigger one. An entry may name its own maps,
    fitted with `python -m ivr.bench.calibrate --out FILE`, as `calibration = "FILE"` (relative
    to the registry file) and its own `verify_threshold`. Without them the shipped maps apply,
    with a warning when they were fitted for another model. A named file that does not exist
    is a configuration error, said at start-up."""
    extra = getattr(info, "extra", None) or {}
    tuning = slm_tuning(info)
    if extra.get("calibration"):
        path = Path(str(extra["calibration"])).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise ValueError(f"model '{info.name}': calibration file {path} does not exist "
                             "(fit one with `python -m ivr.bench.calibrate --out FILE`)")
        return Calibrator.load(path), tuning
    cal = Calibrator.load()
    fitted_for = cal.provenance.get("slm")
    if fitted_for and fitted_for != info.name:
        log.warning("confidences are calibrated for the SLM %r, not %r: fit maps for it with "
                    "`python -m ivr.bench.calibrate --out FILE` and name FILE as `calibration` in its "
                    "registry entry (docs/nlu.md)", fitted_for, info.name)
    return cal, tuning
