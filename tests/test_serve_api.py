"""The HTTP API of ``python -m modnet_jax.serve``: its results are predict's, every bad upload
gets its documented status and a message, a full queue answers 503 with Retry-After, the
server keeps serving, and the safe defaults hold (loopback only unless told, token check)."""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")

from serve_utils import model_argv, photo, start_server, tiny_checkpoint  # noqa: E402

MAX_PIXELS = 40_000   # --max-image-pixels: a 300 x 200 image is refused
MAX_MB = 0.1          # --max-upload-mb: 100 kB


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(str(tmp_path_factory.mktemp("serve_ckpt")))


@pytest.fixture(scope="module")
def served(checkpoint):
    server, url = start_server(checkpoint, "--max-image-pixels", str(MAX_PIXELS),
                               "--max-upload-mb", str(MAX_MB), "--max-queue", "2",
                               "--max-batch", "2")
    with httpx.Client(base_url=url, timeout=120) as client:
        yield server, client
    server.close()
    assert not os.path.exists(server.folder.path), "the upload folder is removed"


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4
                             else cv2.COLOR_BGR2RGB)
    return image


def _png_declaring(width: int, height: int) -> bytes:
    """A complete, tiny PNG whose header declares width x height (a decompression bomb's
    shape: a few hundred bytes that would decode to gigabytes)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_health(served):
    from modnet_jax import __version__

    _, client = served
    body = client.get("/v1/health").json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["device"].startswith("cpu")
    assert body["model"]


def test_results_equal_predicts(served, checkpoint, tmp_path):
    """The matte from /v1/matte is predict's file for the same JPEG (multipart and raw body
    alike); the cut-out is the image with the matte as alpha, the composite the image over
    the colour by that matte."""
    from modnet_jax.predict import cli

    _, client = served
    path = tmp_path / "person.jpg"
    data = _encode(photo(), ".jpg")
    path.write_bytes(data)
    out = tmp_path / "out"
    assert cli(model_argv(checkpoint) + [str(path), "--output", str(out), "--quiet"]) == 0
    expected = _decode((out / "person_matte.png").read_bytes())

    for send in (dict(files={"image": ("x.jpg", data, "image/jpeg")}), dict(content=data)):
        got = client.post("/v1/matte", **send)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        matte = _decode(got.content)
        assert matte.shape == expected.shape == (48, 64)
        assert np.abs(matte.astype(int) - expected).max() <= 1
        assert matte.std() > 0  # a real matte, not a constant
    image = _decode(data)
    cut = _decode(client.post("/v1/matte?output=cutout", content=data).content)
    assert np.array_equal(cut[..., :3], image)
    assert np.abs(cut[..., 3].astype(int) - expected).max() <= 1
    comp = _decode(client.post("/v1/matte?output=composite&background=0,0,255",
                               content=data).content)
    a = cut[..., 3:].astype(np.float64) / 255
    reference = np.rint(image * a + np.array([0, 0, 255]) * (1 - a))
    assert np.abs(comp - reference).max() <= 1


def _bad_uploads():
    good = photo()
    png = _encode(good, ".png")
    jpeg = _encode(good, ".jpg")
    rng = np.random.default_rng(0)
    noise = (rng.random((300, 400, 3)) * 255).astype(np.uint8)  # ~360 kB as PNG
    return {
        "empty": (b"", 400, "empty"),
        "not an image": (b"name,value\n" * 20, 415, "not an image"),
        "truncated JPEG": (jpeg[: len(jpeg) // 2], 400, "truncated"),
        "truncated PNG": (png[: len(png) // 2], 400, "upload"),
        "decompression bomb": (_png_declaring(100_000, 100_000), 422, "limit"),
        "too many pixels": (_encode(photo(200, 300), ".jpg"), 422, "limit"),
        "too many bytes": (_encode(noise, ".png"), 413, "limit"),
    }


@pytest.mark.parametrize("kind", list(_bad_uploads()))
def test_bad_upload_gets_its_status_and_the_server_goes_on(served, kind):
    server, client = served
    data, status, fact = _bad_uploads()[kind]
    for send in (dict(files={"image": ("a.png", data, "image/png")}), dict(content=data)):
        got = client.post("/v1/matte", **send)
        assert got.status_code == status, (kind, got.text)
        message = got.json()["error"]
        assert fact in message.lower() and "\n" not in message
        assert server.folder.path not in message  # no server paths in answers
    assert client.post("/v1/matte", content=_encode(photo(), ".png")).status_code == 200
    assert os.listdir(server.folder.path) == ["page"] or not os.listdir(server.folder.path)


def test_upload_above_the_limit_without_length_is_stopped(served):
    """A chunked body (no Content-Length) is counted as it arrives."""
    _, client = served

    def chunks():
        for _ in range(40):
            yield b"\x89PNG\r\n\x1a\n" + b"\x00" * 8192

    got = client.post("/v1/matte", content=chunks())
    assert got.status_code == 413


def test_bad_queries_are_422(served):
    _, client = served
    data = _encode(photo(), ".png")
    assert client.post("/v1/matte?output=trimap", content=data).status_code == 422
    assert client.post("/v1/matte?output=composite&background=nocolour",
                       content=data).status_code == 422
    assert client.post("/v1/matte?ref_size=999", content=data).status_code == 422


def test_full_queue_answers_503_and_nothing_is_lost(served):
    """With the engine held, 8 requests at once: at most 2 in the worker (--max-batch) and 2
    waiting (--max-queue); the others get 503 with Retry-After. Let go, all the rest are 200,
    and the ones that waited together were matted together (fewer engine calls than photos)."""
    server, client = served
    data = _encode(photo(), ".png")
    before = client.get("/v1/health").json()["queue"]
    codes, retry = [], []
    server.adapter.lock.acquire()
    try:
        def call():
            got = client.post("/v1/matte", content=data)
            codes.append(got.status_code)
            if got.status_code == 503:
                retry.append(got.headers.get("retry-after"))
        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while codes.count(503) < 4 and time.monotonic() < deadline:
            threads[0].join(0.05)
    finally:
        server.adapter.lock.release()
    for t in threads:
        t.join()
    assert len(codes) == 8 and set(codes) == {200, 503}
    assert codes.count(503) >= 4
    assert all(r is not None and int(r) >= 1 for r in retry)
    after = client.get("/v1/health").json()["queue"]
    assert after["served"] - before["served"] == codes.count(200)
    assert after["batches"] - before["batches"] < codes.count(200)


def test_other_hosts_need_a_token(capsys):
    from modnet_jax.serve.__main__ import cli

    assert cli(["--checkpoint", "nowhere", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--auth" in err[0]


def test_token(served):
    """--auth: the API wants the bearer token; /?token= gives the page a cookie."""
    from modnet_jax.serve.server import Server

    server = Server(served[0].adapter, model="tiny", token="s3cret")
    url = server.start()
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/v1/health").status_code == 401
            assert client.get("/").status_code == 401
            ok = client.get("/v1/health", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200
            assert client.get("/v1/health",
                              headers={"Authorization": "Bearer wrong"}).status_code == 401
            page = client.get("/?token=s3cret", follow_redirects=True)
            assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        server.close()


def test_photos_are_served_between_video_frames(served):
    """A video holds the engine only while it works on a frame: a photo asked for while the
    video waits for its next frame is matted then (it would wait forever otherwise), and the
    video still gives one result per frame."""
    server, _ = served
    frames = [photo(seed=s) for s in range(3)]
    got = []

    def source():
        for i, frame in enumerate(frames):
            if i == 1:
                got.append(server.worker.submit_job(photo()).result(timeout=120))
            yield frame

    results = list(server.adapter.video(source(), ofd=True))
    assert len(got) == 1 and got[0].matte.shape == (48, 64)
    assert len(results) == 3 and all(r.matte.shape == (48, 64) for r in results)
