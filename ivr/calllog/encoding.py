"""The one JSON encoding of stored data (event data, summaries, model versions), the same on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping


def _finite(obj: Any) -> Any:
    """``obj`` with NaN/infinity as strings and NUL characters replaced: neither is valid in
    PostgreSQL's JSON, and SQLite would store text no JSON parser reads back."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, str):
        return obj.replace("\x00", "\ufffd")
    if isinstance(obj, Mapping):
        return {(k.replace("\x00", "\ufffd") if isinstance(k, str) else k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str | None:
    if obj is None:
        return None
    try:
        text = json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if "\\u0000" not in text:
            return text
    except ValueError:  # NaN or infinity somewhere
        pass
    except TypeError as exc:  # non-string keys, circular references
        return json.dumps({"unserializable": repr(obj)[:4000], "error": str(exc)})
    try:
        return json.dumps(_finite(obj), default=str, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return json.dumps({"unserializable": repr(obj)[:4000], "error": str(exc)})
