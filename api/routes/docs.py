"""API docs served from here: Swagger UI's assets from the swagger-ui-py package, no CDN.

FastAPI's default ``/docs`` page loads Swagger UI from a public CDN: blank on an air-gapped OT
network, and a request to the outside from the analyst's browser. This page is the same Swagger
UI, its script, stylesheet and icon served by the app itself under ``/static/swagger-ui/``
from the files the ``swagger-ui-py`` wheel ships (Swagger UI 5, which reads OpenAPI 3.1).
ReDoc, which FastAPI would also load from a CDN, is not offered.
"""

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from cybermission.errors import NotFoundError

DOCS_PATH = "/docs"
ASSETS_PATH = "/static/swagger-ui"
# The only files the page needs; nothing else of the package's folder is served.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

router = APIRouter(include_in_schema=False)


@cache
def _assets_dir() -> Path:
    # Resolved on first use (not at import): the package's own static folder.
    return Path(str(files("swagger_ui").joinpath("static")))


@router.get(DOCS_PATH)
def docs_page() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="cybermission: API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        # No online validator badge (it would call validator.swagger.io).
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Referrer-Policy"] = "no-referrer"
    page.headers["X-Content-Type-Options"] = "nosniff"
    return page


@router.get(ASSETS_PATH + "/{name}")
def docs_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"no asset {name!r}")
    return FileResponse(
        _assets_dir() / name,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
