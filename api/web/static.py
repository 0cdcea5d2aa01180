"""Static files: our own (api/static) and the vendored npm packages, served by the app.

Nothing is fetched from a CDN at run time: the DSFR, htmx and jsQR come from node_modules
(installed by `make run`/`make test`). Paths are resolved and kept inside their root; vendored
files are cached for a day, ours are revalidated by ETag so a deploy shows at once.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import FileResponse, Response

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE.parent / "static"
NODE_MODULES = HERE.parent.parent / "node_modules"

# URL prefix under /static/vendor/ → folder of an npm package.
VENDOR: dict[str, Path] = {
    "dsfr": NODE_MODULES / "@gouvfr" / "dsfr" / "dist",
    "htmx": NODE_MODULES / "htmx.org" / "dist",
    "jsqr": NODE_MODULES / "jsqr" / "dist",
}

mimetypes.add_type("font/woff2", ".woff2")
mimetypes.add_type("font/woff", ".woff")
mimetypes.add_type("image/svg+xml", ".svg")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/manifest+json", ".webmanifest")

router = APIRouter(include_in_schema=False)


def _resolve(root: Path, relative: str) -> Path:
    """The file `relative` under `root`, refusing anything that climbs out of it."""
    if not relative or "\x00" in relative:
        raise HTTPException(404)
    root = root.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404)
    return target


def _serve(request: Request, path: Path, cache_control: str) -> Response:
    response = FileResponse(path)
    response.headers["Cache-Control"] = cache_control
    etag = response.headers.get("etag")
    if etag and request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache_control})
    return response


@router.get("/static/vendor/{package}/{relative:path}")
async def vendor_file(package: str, relative: str, request: Request) -> Response:
    root = VENDOR.get(package)
    if root is None:
        raise HTTPException(404)
    return _serve(request, _resolve(root, relative), "public, max-age=86400")


@router.get("/static/{relative:path}")
async def static_file(relative: str, request: Request) -> Response:
    return _serve(request, _resolve(STATIC_DIR, relative), "no-cache")


@router.get("/mediateur/sw.js")
async def service_worker(request: Request) -> Response:
    """The scan page's service worker; its scope is the mediator's pages (/mediateur…)."""
    response = _serve(request, _resolve(STATIC_DIR, "js/sw.js"), "no-cache")
    response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    response.headers["Service-Worker-Allowed"] = "/mediateur"
    return response


@router.get("/favicon.ico")
async def favicon(request: Request) -> Response:
    return _serve(request, _resolve(VENDOR["dsfr"], "favicon/favicon.ico"), "public, max-age=86400")
