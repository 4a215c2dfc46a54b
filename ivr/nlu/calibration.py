"""Calibrated confidence: turn a decision's raw score into "how often is this decision right".

The classifier decides in one of four ways, each with its own raw score x (larger = surer):
  router_in   the router routes to its best intent; x = z, the router's conf minus the menu's
              threshold in units of the menu's leave-one-out spread
  router_oos  the router says out of scope; x = -z
  slm_in      the SLM confirms the router's best intent; x = s, the SLM's yes/no log-odds
              combined with z
  slm_oos     the SLM rejects it; x = -s
x is already scaled per menu (z by the menu's own calibration), so one logistic map per kind,
p = 1 / (1 + exp(-(a x + b))), carries across menus. The maps are fitted by
`python -m ivr.bench.calibrate` on Banking77's train split over many random menus and
example counts (never on the test split the benchmark reports), and shipped in
calibration.json next to this file. Without that file (or for an unknown kind) the identity-ish
defaults below apply: honest about direction, not about level.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

KINDS = ("router_in", "router_oos", "slm_in", "slm_oos")
DEFAULT_FILE = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True)
class Platt:
    a: float
    b: float

    def __call__(self, x: float) -> float:
        return sigmoid(self.a * x + self.b)


def sigmoid(t: float) -> float:
    """1 / (1 + e^-t), without overflow for large negative t."""
    if t >= 0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


_DEFAULTS = {"router_in": Platt(2.0, 0.0), "router_oos": Platt(2.0, 0.0),
             "slm_in": Platt(1.0, 0.0), "slm_oos": Platt(1.0, 0.0)}


class Calibrator:
    def __init__(self, maps: dict[str, Platt] | None = None, source: str = "defaults",
                 provenance: dict | None = None):
        self.maps = dict(_DEFAULTS)
        self.maps.update(maps or {})
        self.source = source
        self.provenance = dict(provenance or {})  # what it was fitted on, "slm" included

    def __call__(self, kind: str, x: float) -> float:
        return self.maps.get(kind, _DEFAULTS["router_in"])(x)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_FILE) -> "Calibrator":
        path = Path(path)
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        maps = {k: Platt(float(v["a"]), float(v["b"])) for k, v in data.get("maps", {}).items() if k in KINDS}
        return cls(maps, source=str(path), provenance=data.get("provenance"))

    def dump(self, path: str | Path, provenance: dict) -> None:
        Path(path).write_text(json.dumps(
            {"maps": {k: {"a": round(m.a, 4), "b": round(m.b, 4)} for k, m in self.maps.items()},
             "provenance": provenance}, indent=1) + "\n")


def fit_platt(x, y, *, l2: float = 1e-3, iters: int = 50) -> Platt:
    """Logistic regression of y (0/1) on x by Newton's method, lightly regularised so a kind
    with few or separable samples still gets a finite slope."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    weights, bias = fit_logistic(x[:, None], y, l2=l2, iters=iters)
    return Platt(float(weights[0]), bias)


def fit_logistic(features, y, *, l2: float = 1e-3, iters: int = 50, weights=None) -> tuple[list[float], float]:
    """Weights and bias of p(y=1) = sigmoid(w . features + b), by Newton's method; `weights`:
    how much each sample counts (1 each by default)."""
    import numpy as np

    F = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(F) == 0:
        raise ValueError("no samples to fit")
    c = np.ones(len(F)) if weights is None else np.asarray(weights, dtype=np.float64)
    X = np.hstack([F, np.ones((len(F), 1))])
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (c * (p - y)) + l2 * w
        H = (X * (c * p * (1 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])
        step = np.linalg.solve(H, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return [float(v) for v in w[:-1]], float(w[-1])
