"""What every server-rendered page shares: the Jinja environment, the security headers, who is
signed in (the dashboard's browser session) and the CSRF token of the console's forms.

Pages are HTML for people; the JSON API stays under ``/api/v1``. Sign-in is the dashboard's form
(``/dashboard``): a page asked for without a live session sends the browser there. A session
reads through :func:`api.deps.session_principal`, the same check every API call makes; a form
that changes something (findings triage) carries a CSRF token derived from the session secret
(HMAC-SHA256), so only a page this service rendered for that session can post it, and is refused
from another site (``Sec-Fetch-Site`` / ``Origin``) on top of the cookie's SameSite=Strict.
"""

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from api.deps import SESSION_COOKIE, admin_token_of, get_engine, get_settings, session_principal
from api.errors import AuthenticationError
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.db import session_scope
from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.sites.models import Site, Zone
from cybermission.sites.service import list_site_zones, list_sites

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SIGN_IN_PATH = "/dashboard"
# The coordinator's page (it reads no organisation's, so the dashboard sends it there).
TERRITORY_PATH = "/console/territory"
FORM_MAX_BYTES = 64 * 1024
FORM_MAX_FIELDS = 600
_CSRF_CONTEXT = b"cybermission console form"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The templates of every page. Built on first use, not at import; autoescape: every value
    from devices is untrusted text."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )
    env.filters["when"] = _when
    env.filters["query"] = _query
    return env


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _query(params: dict[str, Any]) -> str:
    """``?a=1&b=2`` of the parameters that are set (lists repeat), for links that keep filters."""
    pairs = [
        (key, str(item))
        for key, value in params.items()
        for item in (value if isinstance(value, list | tuple) else [value])
        if item not in (None, "")
    ]
    return "?" + urlencode(pairs) if pairs else ""


def security_headers(nonce: str) -> dict[str, str]:
    """Only this page's own inline script and style (the nonce), no other origin, no framing."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def render(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered with a fresh CSP nonce (``nonce`` in the context)."""
    nonce = secrets.token_urlsafe(16)
    html = environment().get_template(template).render(nonce=nonce, **context)
    return HTMLResponse(html, status_code=status, headers=security_headers(nonce))


def see_other(path: str) -> RedirectResponse:
    # 303: the browser follows with a GET (Post/Redirect/Get).
    return RedirectResponse(
        path,
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def not_found(user: "ConsoleUser", section: str, what: str) -> HTMLResponse:
    """The page of a row that does not exist or belongs to an organisation the user does not see
    (the same answer for both)."""
    return render("console/not_found.html", status=404, user=user, section=section, what=what)


def sign_in_first() -> RedirectResponse:
    """Where a page sends a browser without a live session: the dashboard's sign-in form."""
    return see_other(SIGN_IN_PATH)


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """Who is signed in, and the CSRF token their forms carry."""

    principal: Principal
    csrf: str

    def can(self, permission: str) -> bool:
        return self.principal.can(Permission(permission))


def _csrf_of(secret: str) -> str:
    return hmac.new(secret.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def signed_in(request: Request, permission: Permission = Permission.READ) -> ConsoleUser | None:
    """The session's user, or None (no cookie, a session that ended, or a role without
    ``permission``: an organisation's pages need ``read``, the territory's ``territory``) when
    the browser must sign in again. Blocking (reads the store): call it from a sync route or a
    thread."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    try:
        principal = session_principal(
            get_engine(request), secret, admin_token_of(get_settings(request))
        )
    except AuthenticationError:
        return None
    if not principal.can(permission):
        return None
    return ConsoleUser(principal=principal, csrf=_csrf_of(secret))


def same_origin(request: Request) -> bool:
    """Whether a form post comes from this site's own page (a cross-site form is refused)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def csrf_ok(request: Request, user: ConsoleUser, presented: str) -> bool:
    return same_origin(request) and hmac.compare_digest(presented.encode(), user.csrf.encode())


def form_refusal(
    request: Request, user: ConsoleUser, form: Mapping[str, Sequence[str]], permission: Permission
) -> str | None:
    """Why a posted form changes nothing (no page's CSRF token, another site, a role without
    ``permission``), or None when it may go on. Either refusal is a 403."""
    presented = form.get("csrf", [""])[0]
    if not csrf_ok(request, user, presented):
        return "the form expired or came from another page: do it again from here"
    if not user.can(permission):
        return f"the {user.principal.role} role may not do this"
    return None


async def read_form(
    request: Request, *, max_bytes: int = FORM_MAX_BYTES, max_fields: int = FORM_MAX_FIELDS
) -> dict[str, list[str]] | None:
    """A urlencoded form read with a bound on the body; None when too large or not text."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return None
    try:
        return parse_qs(body.decode("utf-8"), max_num_fields=max_fields, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None


Form = Mapping[str, Sequence[str]]
# What a form does once allowed: where the browser goes next (303), or a CybermissionError.
FormAction = Callable[[ConsoleUser, Form], Awaitable[str]]
# The page the form was on, drawn again with an error above it and the answer's status.
FormPage = Callable[[Session, ConsoleUser, Form, str, int], HTMLResponse]
# A page's view: ``view(session, user, *ids, notice=, error=, status=)`` draws it.
PageView = Callable[..., HTMLResponse]
_FAILURE_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ValidationError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
)


def redraw(view: PageView, *ids: object) -> FormPage:
    """The form's page drawn again by its ``view`` (with the page's own ``ids``), for
    :func:`post_form`, where the page does not depend on what the form posted."""

    def again(
        session: Session, user: ConsoleUser, form: Form, error: str, status: int
    ) -> HTMLResponse:
        return view(session, user, *ids, error=error, status=status)

    return again


async def post_form(
    request: Request,
    *,
    permission: Permission,
    act: FormAction,
    again: FormPage,
    max_fields: int = FORM_MAX_FIELDS,
    failed: str = "nothing changed: ",
) -> Response:
    """Every console form that changes something, one way: the form read with a bound (413),
    a live session (else sign in), the page's CSRF token from this site and a role with
    ``permission`` (403), then ``act``. A refusal, or what ``act`` raised (422, 404, 409,
    prefixed with ``failed``), is drawn on the page again; success is Post/Redirect/Get."""
    form = await read_form(request, max_fields=max_fields)
    if form is None:
        return HTMLResponse("the form is too large or not text", status_code=413)
    user = await run_in_threadpool(signed_in, request)
    if user is None:
        return sign_in_first()
    engine = get_engine(request)

    def page(error: str, status: int) -> HTMLResponse:
        with session_scope(engine) as session:
            return again(session, user, form, error, status)

    refusal = form_refusal(request, user, form, permission)
    if refusal is not None:
        return await run_in_threadpool(page, refusal, 403)
    try:
        return see_other(await act(user, form))
    except (ValidationError, NotFoundError, ConflictError) as exc:
        status = next(code for kind, code in _FAILURE_STATUS if isinstance(exc, kind))
        return await run_in_threadpool(page, f"{failed}{exc}", status)


def places(session: Session, user: ConsoleUser) -> tuple[list[Site], dict[str, list[Zone]]]:
    """The sites the user sees, and each one's zones (the filters of several pages)."""
    visible_to = user.principal.organization_id
    sites = list_sites(session, visible_to=visible_to)
    zones = {
        s.id: list_site_zones(session=session, site_id=s.id, visible_to=visible_to) for s in sites
    }
    return sites, zones
