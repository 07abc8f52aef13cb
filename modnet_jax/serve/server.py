"""The server's parts put together: engine adapter, worker, upload folder, live sessions, the
API (``api.py``) with the page (``app.py``) mounted at ``/``, run by uvicorn.

``Server`` is what ``__main__`` runs and what the tests start in a thread (``start``), on a
free port, with a small model.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Iterable, Optional

from modnet_jax import __version__
from modnet_jax.serve.engine_adapter import EngineAdapter
from modnet_jax.serve.live import LiveSessions
from modnet_jax.serve.uploads import UploadFolder
from modnet_jax.serve.worker import BatchWorker


class _Stopped(Exception):
    pass


def _stop(signum, frame):
    raise _Stopped()


class Server:
    """Owns the worker thread, the live sessions and the upload folder (``close`` ends them)."""

    def __init__(self, adapter: EngineAdapter, *, model: str = "", token: Optional[str] = None,
                 max_upload_mb: float = 25.0, max_queue: int = 32,
                 max_batch: Optional[int] = None, clean_default: bool = True):
        self.folder = UploadFolder()
        # Gradio's own uploads and results go into the same private folder.
        os.environ["GRADIO_TEMP_DIR"] = os.path.join(self.folder.path, "page")
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        import gradio as gr  # after GRADIO_TEMP_DIR is set

        from modnet_jax.serve.api import create_api
        from modnet_jax.serve.app import build_page

        self.adapter = adapter
        self.worker = BatchWorker(adapter, max_queue=max_queue, max_batch=max_batch)
        self.sessions = LiveSessions(adapter)
        self.model = model
        max_bytes = int(max_upload_mb * 1e6)
        self.app = create_api(self.worker, self.folder, max_bytes=max_bytes,
                              health=self.health, token=token)
        page = build_page(self.worker, self.sessions, self.folder, clean_default=clean_default,
                          model_line=f"Model: `{model}` on {adapter.device()}" if model else "")
        page.queue(default_concurrency_limit=4)
        self.app = gr.mount_gradio_app(self.app, page, path="/", max_file_size=max_bytes,
                                       show_error=True)
        self._uvicorn = None
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def from_args(cls, args, ref_sizes: Iterable[int] = ()) -> "Server":
        adapter = EngineAdapter.from_args(args, ref_sizes)
        return cls(adapter, model=os.path.basename(os.path.normpath(args.checkpoint)),
                   token=args.auth, max_upload_mb=args.max_upload_mb,
                   max_queue=args.max_queue, max_batch=args.max_batch,
                   clean_default=not args.no_clean_colours)

    def health(self) -> dict:
        return {"model": self.model, "device": self.adapter.device(), "version": __version__,
                "ref_size": self.adapter.ref_size, "ref_sizes": self.adapter.ref_sizes}

    def _config(self, host: str, port: int):
        import uvicorn

        return uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                              timeout_graceful_shutdown=5)

    def run(self, host: str, port: int) -> None:
        """Serve until Ctrl-C or SIGTERM (then returns, so the caller can ``close``)."""
        import uvicorn

        # uvicorn re-raises the signal that stopped it once it has shut down; without a
        # handler of ours SIGTERM would then end the process before the upload folder is
        # removed.
        signal.signal(signal.SIGTERM, _stop)
        print(f"serving on http://{host}:{port}/  (API: POST /v1/matte, GET /v1/health; "
              f"Ctrl-C stops)", flush=True)
        try:
            uvicorn.Server(self._config(host, port)).run()
        except (KeyboardInterrupt, _Stopped):
            pass

    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0) -> str:
        """Serve on a thread; returns the base URL once it answers."""
        import uvicorn

        self._uvicorn = uvicorn.Server(self._config(host, port))
        self._thread = threading.Thread(target=self._uvicorn.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        sock = self._uvicorn.servers[0].sockets[0]
        return f"http://{host}:{sock.getsockname()[1]}"

    def close(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
            self._thread.join(timeout=15)
        self.sessions.close()
        self.worker.close()
        self.folder.close()
