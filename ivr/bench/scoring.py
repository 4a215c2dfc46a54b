"""Scores for an intent benchmark: accuracy, out-of-scope recall, calibration, latency."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ivr.calllog.reads import percentile as calllog_percentile
from ivr.nlu.intents import IntentResult
from ivr.nlu.understanding import OUT_OF_SCOPE


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: the gap between stated confidence and observed accuracy, averaged over equal-width
    confidence bins weighted by how many turns fall in each (0 = perfectly calibrated)."""
    c = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if not len(c):
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(c, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(ok[m].mean() - c[m].mean())
    return float(ece)


def reliability(confidences: Sequence[float], correct: Sequence[bool], lo: float = 0.85, hi: float = 0.95):
    """(accuracy, n) of the turns whose confidence lies in [lo, hi): "scored 0.9, right 90%"."""
    c = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    m = (c >= lo) & (c < hi)
    return (float(ok[m].mean()) if m.any() else float("nan")), int(m.sum())


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a proportion k/n (Wilson score): 0.89 of 200 turns is 0.84-0.93, so a
    benchmark's single figure is read against its noise, not to the last turn."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation, as the dashboard computes it), or None for no values."""
    return calllog_percentile(sorted(float(v) for v in values), q) if len(values) else None


def summarize(name: str, results: Sequence[tuple[str, IntentResult]]) -> dict:
    """`results`: (expected intent or OUT_OF_SCOPE, what the classifier said) per turn."""
    ins = [(e, r) for e, r in results if e != OUT_OF_SCOPE]
    oos = [(e, r) for e, r in results if e == OUT_OF_SCOPE]
    lat = np.asarray([r.latency_ms for _, r in results]) if results else np.zeros(1)
    slm_lat = np.asarray([r.latency_ms for _, r in results if r.source == "slm"])
    confs = [r.confidence for _, r in results]
    correct = [r.intent == e for e, r in results]
    rel, rel_n = reliability(confs, correct)
    in_ok = sum(r.intent == e for e, r in ins)
    oos_ok = sum(r.intent == OUT_OF_SCOPE for _, r in oos)
    return {
        "mode": name,
        "n": len(results),
        "in_menu_acc": in_ok / max(1, len(ins)),
        "in_menu_ci": wilson_interval(in_ok, len(ins)),
        "oos_ci": wilson_interval(oos_ok, len(oos)),
        "in_menu_top1": sum((r.ranked[0][0] if r.ranked else None) == e for e, r in ins) / max(1, len(ins)),
        "oos_recall": oos_ok / max(1, len(oos)),
        "accuracy": float(np.mean(correct)) if correct else float("nan"),
        "ece": expected_calibration_error(confs, correct),
        "acc_at_0.9": rel,
        "n_at_0.9": rel_n,
        "slm_share": len(slm_lat) / max(1, len(results)),
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "slm_p50_ms": float(np.percentile(slm_lat, 50)) if len(slm_lat) else float("nan"),
        "slm_p95_ms": float(np.percentile(slm_lat, 95)) if len(slm_lat) else float("nan"),
    }
