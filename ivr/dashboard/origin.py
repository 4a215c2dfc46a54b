"""Whether a request comes from the dashboard's own pages: the check that stands in front of the
live feed, browser calls and anything that writes."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException, Request


def same_origin(headers) -> bool:
    """A request from another site would carry our cookie if SameSite failed: refuse it. No
    Origin header: not a browser (a script with the Bearer token)."""
    origin = headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == (headers.get("x-forwarded-host") or headers.get("host"))


async def json_from_own_page(request: Request, what: str) -> dict:
    """The JSON object a request that writes carries: only from the dashboard's own pages
    (SameSite alone lets a sibling site's form through), and only as JSON, which a plain
    cross-site form cannot send."""
    if not same_origin(request.headers):
        raise HTTPException(403, f"only the dashboard's own pages may send {what}")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "the body must be application/json")
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body
