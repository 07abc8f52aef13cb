"""``python -m modnet_jax.serve --checkpoint CKPT``: the web page and the HTTP API.

    python -m modnet_jax.serve --checkpoint CKPT [--host 127.0.0.1] [--port 7860]
        [--auth TOKEN] [--max-upload-mb 25] [--max-queue 32] [--max-batch N]
        [--ref-sizes 256,384,512] [--no-clean-colours] [predict's model options]

CKPT is what predict takes: a modnet_jax checkpoint, the release's PyTorch state_dict or the
official ONNX file (imported on the fly). The page is at http://HOST:PORT/, the API at
/v1/matte and /v1/health (``api.py``). It listens on 127.0.0.1 (this machine only) unless
``--host`` says otherwise; any other address needs ``--auth TOKEN`` (or the environment
variable MODNET_SERVE_TOKEN), or ``--no-auth`` to accept that anyone who can reach it may use
it. Uploads live in a private temporary folder that is removed when the server stops.
Mistakes in the options end it before it starts with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import sys
from typing import List, Optional

from modnet_jax.cliutil import add_version
from modnet_jax.inference.cli import UserError, run_main, split_host_cpu
from modnet_jax.inference.options import add_model_args

TOKEN_ENV = "MODNET_SERVE_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modnet_jax.serve",
        description="A local web page (Photo, Video, Live camera) and an HTTP API "
                    "(POST /v1/matte, GET /v1/health) for a MODNet checkpoint.")
    add_model_args(p)
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only)")
    s.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    s.add_argument("--auth", metavar="TOKEN", default=os.environ.get(TOKEN_ENV),
                   help="require this token: 'Authorization: Bearer TOKEN' for the API, "
                        "/?token=TOKEN once for the page (default: $" + TOKEN_ENV + ")")
    s.add_argument("--no-auth", action="store_true",
                   help="allow a --host other than the loopback without --auth")
    s.add_argument("--max-upload-mb", type=float, default=25.0,
                   help="largest upload; larger ones are answered 413 (default: %(default)s)")
    s.add_argument("--max-queue", type=int, default=32,
                   help="photos that may wait for the device; more are answered 503 with "
                        "Retry-After (default: %(default)s)")
    s.add_argument("--max-batch", type=int, default=None,
                   help="photos the worker takes at once (default: 4 x --batch-size; "
                        "1: one request at a time)")
    s.add_argument("--ref-sizes", default="256,384,512",
                   help="reference sizes the page and API offer besides --ref-size "
                        "(comma-separated; default: %(default)s)")
    s.add_argument("--no-clean-colours", action="store_true",
                   help="the page's 'clean colours' box starts unticked")
    s.add_argument("--video-batch-size", type=int, default=1,
                   help="video and camera frames per model call, on the first device (default: "
                        "%(default)s, the lowest latency)")
    s.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="on a CPU, split the cores into N JAX devices that each matte one of "
                        "the photos that come together, at the same time (as predict; "
                        "default: 2 with 2 or more cores; not with --exact-shapes)")
    add_version(p)
    return p


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_args(args: argparse.Namespace) -> List[int]:
    """The reference sizes to serve; UserError for a mistake."""
    if not _loopback(args.host) and not args.auth and not args.no_auth:
        raise UserError(f"--host {args.host} opens the server to other machines: give "
                        f"--auth TOKEN (or ${TOKEN_ENV}), or --no-auth to accept that")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    if args.cpu_devices is not None and args.cpu_devices < 1:
        raise UserError(f"--cpu-devices must be >= 1, got {args.cpu_devices}")
    if args.max_upload_mb <= 0 or args.max_queue < 1 or (args.max_batch or 1) < 1:
        raise UserError("--max-upload-mb, --max-queue and --max-batch must be positive")
    try:
        sizes = [int(v) for v in args.ref_sizes.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--ref-sizes: not a list of numbers: {args.ref_sizes!r}") from None
    if any(r < 32 for r in sizes):
        raise UserError(f"--ref-sizes must be >= 32, got {args.ref_sizes}")
    return sizes


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    ref_sizes = check_args(args)
    for module in ("gradio", "fastapi", "uvicorn", "multipart"):
        if importlib.util.find_spec(module) is None:
            raise UserError(f"the server needs the optional extra 'serve' ({module} is "
                            f"missing): pip install -e '.[serve]'")
    if not args.exact_shapes:
        split_host_cpu(args.cpu_devices)  # before JAX starts (inference/cli.py)
    from modnet_jax.serve.server import Server  # imports gradio/jax: after the checks

    server = Server.from_args(args, ref_sizes)
    try:
        server.run(args.host, args.port)
    finally:
        server.close()
    return 0


def cli(argv: Optional[list] = None) -> int:
    return run_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
