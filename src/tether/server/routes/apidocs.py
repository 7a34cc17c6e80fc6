"""The API's documentation page, ``/docs``: Swagger UI from its wheel, so that nothing is
fetched from the network (FastAPI's default page loads it from a CDN)."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from tether.errors import NotFoundError
from tether.server.routing import ApiRoute

SWAGGER_UI = Path(swagger_ui_bundle.swagger_ui_path)
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
pages = APIRouter(route_class=ApiRoute, include_in_schema=False)


# Relative to /docs, never from "/": behind a proxy that serves tether under a path
# (``location /tether/``), "/openapi.json" would be the proxy's, and the page empty.
@pages.get("/docs")
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="openapi.json",
        title="tether API",
        swagger_js_url="docs/static/swagger-ui-bundle.js",
        swagger_css_url="docs/static/swagger-ui.css",
        swagger_favicon_url="docs/static/favicon-32x32.png",
        # Put after the page's origin by FastAPI, so from "/"; the document has no OAuth2
        # scheme for Swagger UI to use it with.
        oauth2_redirect_url="/docs/oauth2-redirect",
    )


@pages.get("/docs/oauth2-redirect")
async def oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@pages.get("/docs/static/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError(f"no documentation file {name!r}")
    return Response((SWAGGER_UI / name).read_bytes(), media_type=ASSETS[name])
