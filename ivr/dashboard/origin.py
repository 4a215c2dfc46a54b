"""Whether a request comes from the dashboard's own pages: the check that stands in front of the
live feed, browser calls and anything that writes."""

from __future__ import annotations

from urllib.parse import urlsplit


def same_origin(headers) -> bool:
    """A request from another site would carry our cookie if SameSite failed: refuse it. No
    Origin header: not a browser (a script with the Bearer token)."""
    origin = headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == (headers.get("x-forwarded-host") or headers.get("host"))
