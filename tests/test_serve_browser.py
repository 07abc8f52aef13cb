"""The web page of ``python -m modnet_jax.serve`` in a real, headless Chromium (Playwright):
a photo uploaded on the page comes back as MattingEngine's matte (within 1/255), and the Live
tab, fed by a fake camera playing a clip, shows mattes with its frame rate and latency.

Needs Chromium at /usr/bin/chromium (``apt-get install chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")
playwright = pytest.importorskip("playwright.sync_api")

from serve_utils import REF, photo, start_server, tiny_checkpoint  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def write_y4m(path, frames, fps: int = 10) -> None:
    """An uncompressed YUV4MPEG2 clip (what Chromium's fake camera plays in a loop)."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            handle.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve_browser")
    checkpoint = tiny_checkpoint(str(folder / "ckpt"))
    frames = []
    for i in range(20):  # a bright disc moving over a dark background, 128 x 96
        frame = np.full((96, 128, 3), 40, np.uint8)
        cv2.circle(frame, (30 + 3 * i, 48), 20, (220, 180, 150), -1)
        frames.append(frame)
    clip = str(folder / "camera.y4m")
    write_y4m(clip, frames)
    server, url = start_server(checkpoint, "--no-clean-colours")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-video-capture={clip}"])
        context = browser.new_context(permissions=["camera"])
        yield server, url, context, folder
        browser.close()
    server.close()


def _fetch_png(url: str) -> np.ndarray:
    data = httpx.get(url, timeout=30).content
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "the page's image is not a decodable PNG"
    return image


def test_photo_upload_shows_the_engines_matte(site):
    from modnet_jax.inference import MattingEngine, read_image

    server, url, context, folder = site
    path = str(folder / "person.jpg")
    cv2.imwrite(path, cv2.cvtColor(photo(), cv2.COLOR_RGB2BGR))
    page = context.new_page()
    page.goto(url)
    page.set_input_files("#photo-in input[type=file]", path)
    img = page.wait_for_selector("#photo-matte img", timeout=120_000)
    shown = _fetch_png(img.get_attribute("src"))
    assert shown.ndim == 2 or np.ptp(shown[..., :3].astype(int), axis=-1).max() == 0
    shown = shown if shown.ndim == 2 else shown[..., 0]

    engine = server.adapter.engine  # the served weights, in a fresh engine of the same options
    fresh = MattingEngine(engine.model, engine.variables, ref_size=REF, canvases=False)
    expected = np.clip(np.rint(fresh.matte([read_image(path)])[0] * 255), 0, 255)
    assert shown.shape == expected.shape == (48, 64)
    assert np.abs(shown.astype(int) - expected).max() <= 1
    assert expected.std() > 0
    cut = page.wait_for_selector("#photo-cutout img").get_attribute("src")
    cutout = _fetch_png(cut)
    assert cutout.shape == (48, 64, 4) and np.abs(cutout[..., 3] - expected).max() <= 1
    page.close()


def test_live_tab_shows_mattes_of_the_camera(site):
    _, url, context, _ = site
    page = context.new_page()
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-view").get_by_label("matte", exact=True).check()
    page.get_by_text("Click to Access Webcam").click()
    page.get_by_role("button", name="capture photo").click()  # starts streaming
    page.wait_for_function(
        "() => { const t = document.querySelector('#live-stats textarea');"
        " return t && / fps/.test(t.value) && / mattes/.test(t.value)"
        " && parseInt(t.value.match(/(\\d+) mattes/)[1]) >= 3; }", timeout=120_000)
    stats = page.input_value("#live-stats textarea")
    assert "latency" in stats
    shown = _fetch_png(page.wait_for_selector("#live-out img").get_attribute("src"))
    assert shown.shape[:2] == (96, 128)  # the camera frame's size
    if shown.ndim == 3:  # a matte is grey
        assert np.ptp(shown[..., :3].astype(int), axis=-1).max() == 0
    page.close()
