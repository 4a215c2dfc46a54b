"""Query parameters of the dashboard's API, checked: a bad one is a 400 that says what was
wrong, never a 500 or a silently ignored filter."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from fastapi import HTTPException


def parse_time(name: str, raw: str | None) -> float | None:
    """Epoch seconds, or an ISO 8601 date/time (UTC when it names no zone)."""
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise HTTPException(400, f"{name}: expected epoch seconds or an ISO 8601 date/time, got {raw!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    if not math.isfinite(value) or value < 0:
        raise HTTPException(400, f"{name}: expected epoch seconds, got {raw!r}") from None
    return value


def parse_int(name: str, raw: str | None, default: int, lo: int, hi: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name}: expected a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise HTTPException(400, f"{name}: must be between {lo} and {hi}, got {value}")
    return value
