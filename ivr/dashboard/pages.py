"""The dashboard's pages: static HTML shells whose JS modules fetch the API, plus login/logout.

A page asked for without a valid session goes to the login form; the static assets (CSS, JS)
hold nothing secret and are served to anyone so the login form itself can load them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from . import Dashboard

STATIC = Path(__file__).parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
FAILED_LOGIN_DELAY_S = 0.5


def _file(name: str) -> Response:
    path = STATIC / name
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"), headers=SECURITY_HEADERS)


def build_pages(dash: "Dashboard") -> APIRouter:
    router = APIRouter()
    assets = {p.name for p in STATIC.iterdir() if p.is_file()}

    def page(name: str):
        async def handler(request: Request):
            if not dash.auth.authenticated(request):
                return RedirectResponse("/dashboard/login", status_code=303)
            return _file(name)
        return handler

    router.add_api_route("/", page("live.html"), methods=["GET"], include_in_schema=False)
    router.add_api_route("/calls", page("calls.html"), methods=["GET"], include_in_schema=False)
    router.add_api_route("/calls/{call_id}", page("call.html"), methods=["GET"], include_in_schema=False)
    router.add_api_route("/summary", page("summary.html"), methods=["GET"], include_in_schema=False)
    router.add_api_route("/try", page("try.html"), methods=["GET"], include_in_schema=False)
    router.add_api_route("/review", page("review.html"), methods=["GET"], include_in_schema=False)

    @router.get("/login", include_in_schema=False)
    async def login_form(request: Request):
        if dash.auth.authenticated(request):
            return RedirectResponse("/dashboard/", status_code=303)
        return _file("login.html")

    @router.post("/login", include_in_schema=False)
    async def login(request: Request):
        form = await request.form()
        if not dash.auth.check_token(str(form.get("token") or "")):
            await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # slows guessing without blocking anything
            return RedirectResponse("/dashboard/login?error=token", status_code=303)
        response = RedirectResponse("/dashboard/", status_code=303)
        dash.auth.set_cookie(response, request)
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout():
        response = RedirectResponse("/dashboard/login", status_code=303)
        dash.auth.clear_cookie(response)
        return response

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in assets:
            raise HTTPException(404, "no such file")
        return _file(name)

    return router
