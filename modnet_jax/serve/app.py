"""The web page (Gradio): Photo, Video and Live tabs over one engine, with shared settings.

* Photo: an upload -> the matte, the cut-out (PNG with alpha; with "clean colours" the
  foreground colours are re-estimated in the soft band, as ``predict --clean-colours``) and
  the photo on a new background (a colour or an uploaded image); each has a download button.
  Photos go through the same ``BatchWorker`` as the HTTP API, so page and API share the device.
* Video: an upload -> a matte or composite video (WebM, plays in the browser), with progress;
  One-Frame Delay as in predict unless switched off.
* Live: the browser's camera, streamed frame by frame through the engine's video path
  (``live.py``), with the frame rate and latency shown.

Every image the page shows is a PNG (lossless), so what it shows is what the engine gave.
"""

from __future__ import annotations

from typing import Optional

import cv2
import gradio as gr
import numpy as np

from modnet_jax.imaging.compositing import composite_over, estimate_foreground_ml
from modnet_jax.imaging.video import DEFAULT_FPS, open_video, read_frames
from modnet_jax.inference import InputError
from modnet_jax.inference.images import cutout, parse_colour
from modnet_jax.serve.live import MAX_SESSIONS, LiveSessions
from modnet_jax.serve.uploads import UploadError, UploadFolder, read_file_upload
from modnet_jax.serve.worker import BatchWorker, Busy

KEEP_SECONDS = 3600  # uploads and results the page keeps
TITLE = "modnet_jax: portrait matting"
INTRO = ("Trimap-free portrait matting with MODNet. Photos, videos and your camera are matted "
         "on this machine; nothing is sent elsewhere. Programs can use the HTTP API: "
         "`POST /v1/matte` (see `/v1/docs`).")


def _colour(value: str):
    """RGB from the colour picker's value ('#rrggbb', or 'rgba(r, g, b, a)' in some browsers)."""
    text = (value or "#00ff00").strip()
    if text.startswith("rgb"):
        parts = text[text.index("(") + 1:text.index(")")].split(",")[:3]
        text = ",".join(str(int(round(float(p)))) for p in parts)
    try:
        return parse_colour(text[:7] if text.startswith("#") else text)
    except ValueError as exc:
        raise gr.Error(str(exc)) from None


def _background(colour: str, image: Optional[np.ndarray]):
    return image if image is not None else _colour(colour)


def build_page(worker: BatchWorker, sessions: LiveSessions, folder: UploadFolder, *,
               clean_default: bool = True, model_line: str = "") -> gr.Blocks:
    adapter = worker.adapter

    def photo(path, ref_size, clean, colour, bg_image):
        if not path:
            return None, None, None
        try:
            image = read_file_upload(path, adapter)
            result = worker.matte(image, ref_size=int(ref_size))
        except UploadError as exc:
            raise gr.Error(exc.message) from None
        except Busy as exc:
            raise gr.Error(str(exc)) from None
        matte = result.matte
        fg = estimate_foreground_ml(image, matte) if clean else image  # as --clean-colours
        cut = cutout(np.clip(np.rint(fg), 0, 255).astype(np.uint8), matte)
        comp = composite_over(fg, matte, _background(colour, bg_image))
        return result.matte_uint8, cut, comp

    def video(path, ref_size, ofd, output, colour, bg_image, progress=gr.Progress()):
        if not path:
            return None
        try:
            return _video(path, ref_size, ofd, output, colour, bg_image, progress)
        except InputError as exc:
            raise gr.Error(str(exc).replace(path, "the video")) from None

    def _video(path, ref_size, ofd, output, colour, bg_image, progress):
        folder.prune(KEEP_SECONDS)
        cap, info = open_video(path)
        out_path = folder.new_path(".webm")
        writer = None
        background = _background(colour, bg_image)
        total = info.frame_count or None
        composite = output == "composite"
        try:
            results = adapter.video(read_frames(cap), ref_size=int(ref_size), ofd=ofd,
                                    background=background if composite else None,
                                    matte=not composite)
            for i, result in enumerate(results):
                frame = (cv2.cvtColor(result.composite, cv2.COLOR_RGB2BGR) if composite
                         else cv2.cvtColor(result.matte_uint8, cv2.COLOR_GRAY2BGR))
                if writer is None:
                    writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*"VP80"),
                                             info.fps or DEFAULT_FPS,
                                             (frame.shape[1], frame.shape[0]), True)
                writer.write(frame)
                progress((i + 1, total), desc="matting frames", unit="frames")
        finally:
            cap.release()
            if writer is not None:
                writer.release()
        if writer is None:
            raise gr.Error("the video has no frame that could be decoded")
        return out_path

    def live(frame, ref_size, ofd, view, colour, bg_image, request: gr.Request):
        if frame is None:
            return gr.skip(), gr.skip()
        key = request.session_hash or "default"
        try:
            session = sessions.session(key, (int(ref_size), bool(ofd)), frame.shape)
        except RuntimeError as exc:  # too many cameras at once
            raise gr.Error(str(exc)) from None
        seen = session.results
        session.push(frame)
        _, latest = session.latest(seen, timeout=2.0)
        if session.error:
            raise gr.Error(session.error)
        if latest is None:
            return gr.skip(), session.stats()
        shown, matte = latest
        if view == "matte":
            out = matte
        else:
            out = composite_over(shown, matte.astype(np.float32) / 255.0,
                                 _background(colour, bg_image))
        return out, session.stats()

    # Gradio's copies of uploads and results are deleted after KEEP_SECONDS as well.
    with gr.Blocks(title=TITLE, delete_cache=(KEEP_SECONDS // 4, KEEP_SECONDS)) as page:
        gr.Markdown(f"# {TITLE}\n{INTRO}" + (f"\n\n{model_line}" if model_line else ""))
        with gr.Accordion("Settings", open=True):
            with gr.Row():
                ref_size = gr.Dropdown([str(r) for r in adapter.ref_sizes],
                                       value=str(adapter.ref_size), label="Reference size",
                                       info="short side the model sees (larger: finer, slower)")
                ofd = gr.Checkbox(True, label="One-Frame Delay (video, live)",
                                  info="removes one-frame flicker; results come one frame later")
                clean = gr.Checkbox(clean_default, label="Clean colours (photo)",
                                    info="re-estimates hair colours for cut-out and composite")
                colour = gr.ColorPicker("#00ff00", label="Background colour")
                bg_image = gr.Image(None, type="numpy", label="Background image (optional)",
                                    sources=["upload"], height=120)
        with gr.Tab("Photo"):
            with gr.Row():
                src = gr.Image(type="filepath", image_mode=None, label="Photo",
                               sources=["upload", "clipboard"], elem_id="photo-in")
                matte = gr.Image(format="png", label="Matte", elem_id="photo-matte",
                                 image_mode="L", buttons=["download", "fullscreen"])
            with gr.Row():
                cut = gr.Image(format="png", label="Cut-out (PNG with alpha)", image_mode="RGBA",
                               elem_id="photo-cutout", buttons=["download", "fullscreen"])
                comp = gr.Image(format="png", label="On the background",
                                elem_id="photo-composite", buttons=["download", "fullscreen"])
            inputs = [src, ref_size, clean, colour, bg_image]
            src.change(photo, inputs, [matte, cut, comp], concurrency_limit=8)
        with gr.Tab("Video"):
            with gr.Row():
                vid = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
                vid_out = gr.Video(label="Result (WebM)", elem_id="video-out")
            with gr.Row():
                view = gr.Radio(["matte", "composite"], value="composite", label="Output")
                go = gr.Button("Matte the video", variant="primary")
            go.click(video, [vid, ref_size, ofd, view, colour, bg_image], vid_out,
                     concurrency_limit=1)
        with gr.Tab("Live"):
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy",
                               label="Camera", elem_id="live-in")
                live_out = gr.Image(format="png", label="Matted", elem_id="live-out",
                                    streaming=False)
            with gr.Row():
                live_view = gr.Radio(["composite", "matte"], value="composite", label="Show",
                                     elem_id="live-view")
                stats = gr.Textbox(label="Frame rate and latency", elem_id="live-stats",
                                   interactive=False)
            cam.stream(live, [cam, ref_size, ofd, live_view, colour, bg_image],
                       [live_out, stats], stream_every=0.1, concurrency_limit=MAX_SESSIONS)
    return page

