"""The HTTP API for programs (FastAPI; the web page is mounted beside it by ``__main__``).

    POST /v1/matte[?output=matte|cutout|composite][&background=green|#rrggbb|r,g,b]
                  [&ref_size=N]
        body: the image, as multipart form field ``image`` (curl -F image=@photo.jpg) or as
        the raw request body (curl --data-binary @photo.jpg)
        200: image/png -- the matte (8-bit grey), the cut-out (RGBA) or the composite (RGB),
             the same pixels ``predict`` writes for that file
    GET /v1/health -> {"status", "model", "device", "version", "ref_size", "queue"}

Errors are JSON ``{"error": "<one line>"}``: 400 empty / damaged / undecodable upload or a bad
form, 401 missing or wrong token (``--auth``), 413 upload above ``--max-upload-mb``, 415 not
an image, 422 image above ``--max-image-pixels`` (from its header, before decoding: this also
refuses decompression bombs) or a bad query value, 503 queue full (with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Callable, Dict, Optional

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from modnet_jax.inference import InputError
from modnet_jax.inference.images import composite, cutout, matte_to_uint8, parse_colour
from modnet_jax.serve.uploads import UploadError, UploadFolder, check_length, decode_upload
from modnet_jax.serve.uploads import too_large
from modnet_jax.serve.worker import BatchWorker, Busy

OUTPUTS = ("matte", "cutout", "composite")
TOKEN_COOKIE = "modnet_serve_token"


def error(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def png(image: np.ndarray) -> bytes:
    """PNG bytes of RGB [H, W, 3], RGBA [H, W, 4] or grey [H, W] uint8."""
    if image.ndim == 3:
        code = cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        image = cv2.cvtColor(image, code)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


class TokenAuth:
    """Every request (HTTP or websocket) needs the token: ``Authorization: Bearer TOKEN``, or
    the cookie that a visit to ``/?token=TOKEN`` sets (for the web page)."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token

    def _ok(self, value: Optional[str]) -> bool:
        return bool(value) and secrets.compare_digest(value.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        request = Request(scope)
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else None
        if self._ok(bearer) or self._ok(request.cookies.get(TOKEN_COOKIE)):
            return await self.app(scope, receive, send)
        if scope["type"] == "http" and self._ok(request.query_params.get("token")):
            response = RedirectResponse(str(request.url.remove_query_params("token")), 303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return await response(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        response = error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                              "(or open the page as /?token=TOKEN)")
        return await response(scope, receive, send)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, at most ``max_bytes`` (413 beyond), whatever Content-Length says."""
    check_length(request.headers.get("content-length"), max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise UploadError(413, too_large(max_bytes))
        chunks.append(chunk)
    return b"".join(chunks)


async def image_bytes(request: Request, max_bytes: int) -> bytes:
    """The upload's bytes: the ``image`` field of a multipart form, else the raw body."""
    body = await read_body(request, max_bytes + 64 * 1024)  # room for the form's headers
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        if len(body) > max_bytes:
            raise UploadError(413, too_large(max_bytes))
        return body

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except Exception as exc:  # noqa: BLE001 -- python-multipart's errors vary by version
        raise UploadError(400, f"cannot read the multipart form ({exc})") from None
    try:
        upload = form.get("image")
        if upload is None or not hasattr(upload, "read"):
            raise UploadError(400, "the form has no file field 'image' "
                                   "(curl -F image=@photo.jpg ...)")
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise UploadError(413, too_large(max_bytes))
    return data


def create_api(worker: BatchWorker, folder: UploadFolder, *, max_bytes: int,
               health: Callable[[], dict], token: Optional[str] = None) -> FastAPI:
    """The FastAPI app with the /v1 routes (and the token check when ``token``)."""
    app = FastAPI(title="modnet_jax", docs_url="/v1/docs", openapi_url="/v1/openapi.json",
                  redoc_url=None)
    if token:
        app.add_middleware(TokenAuth, token=token)
    adapter = worker.adapter
    reading = [0]  # requests between admission and the worker's queue (one event loop)
    admitted = worker.max_queue + worker.max_batch

    @app.exception_handler(UploadError)
    async def _refused(request: Request, exc: UploadError):
        return error(exc.status, exc.message)

    @app.exception_handler(InputError)
    async def _unusable(request: Request, exc: InputError):
        return error(400, str(exc))

    @app.get("/v1/health")
    async def health_route():
        return {"status": "ok", **health(),
                "queue": {"full": worker.full(), "served": worker.served,
                          "batches": worker.batches}}

    @app.post("/v1/matte")
    async def matte_route(request: Request, output: str = "matte", background: str = "green",
                          ref_size: Optional[int] = None):
        if output not in OUTPUTS:
            return error(422, f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        try:
            colour = parse_colour(background) if output == "composite" else None
        except ValueError as exc:
            return error(422, str(exc))
        if ref_size is not None and ref_size not in adapter.ref_sizes:
            return error(422, f"ref_size must be one of {adapter.ref_sizes}, got {ref_size}")
        # Before reading the body: a full queue costs the client nothing, and at most
        # ``admitted`` bodies are held at once (memory stays bounded, whatever the number of
        # connections).
        if worker.full() or reading[0] >= admitted:
            return _busy(worker.retry_after())
        reading[0] += 1
        try:
            data = await image_bytes(request, max_bytes)
            image = await asyncio.to_thread(decode_upload, data, folder, adapter)
            del data
            future = worker.submit_job(image, ref_size=ref_size)
        except Busy as exc:
            return _busy(exc.retry_after)
        finally:
            reading[0] -= 1
        result = await asyncio.wrap_future(future)
        body = await asyncio.to_thread(_encoded, output, image, result.matte, colour)
        return Response(body, media_type="image/png")

    return app


def _encoded(output: str, image: np.ndarray, matte: np.ndarray, colour) -> bytes:
    """The PNG asked for: the 8-bit matte, the RGBA cut-out (the image's colours, the matte
    as alpha) or the composite over ``colour`` -- predict's pixels for each."""
    if output == "cutout":
        return png(cutout(image, matte))
    if output == "composite":
        return png(composite(image, matte, colour))
    return png(matte_to_uint8(matte))


def _busy(retry_after: int) -> JSONResponse:
    return error(503, f"the server is busy: retry in {retry_after} s",
                 {"Retry-After": str(retry_after)})
