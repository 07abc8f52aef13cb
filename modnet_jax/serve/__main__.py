"""``python -m modnet_jax.serve --checkpoint CKPT``: the web page and the HTTP API.

CKPT is what predict takes: a modnet_jax checkpoint, the release's PyTorch state_dict or the
official ONNX file (imported on the fly). The page is at http://HOST:PORT/, the API at
/v1/matte and /v1/health (``api.py``). It listens on 127.0.0.1 (this machine only) unless
``--host`` says otherwise; any other address needs ``--auth TOKEN`` (or the environment
variable MODNET_SERVE_TOKEN), or ``--no-auth`` to accept that anyone who can reach it may use
it. Uploads live in a private temporary folder that is removed when the server stops.
Mistakes in the options end it before it starts with one ``error:`` line and exit status 2.
The parser needs the standard library only, so ``--help``, ``--version`` and usage mistakes
are answered before JAX, Gradio or FastAPI is imported. Details: docs/serve.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import sys
from typing import List, Optional

from modnet_jax.cliutil import command_parser, dashed
from modnet_jax.inference.options import add_model_args

TOKEN_ENV = "MODNET_SERVE_TOKEN"

HELP = """A local web page (Photo, Video, Live camera tabs) and an HTTP API for a MODNet model.

  python -m modnet_jax.serve --checkpoint modnet_photographic_portrait_matting.onnx
  curl -F image=@photo.jpg http://127.0.0.1:7860/v1/matte -o matte.png

API: POST /v1/matte (?output=matte|cutout|composite), GET /v1/health.
Exit status 2: a mistake in the options (one error: line, nothing started).
More (status codes, limits, batching): docs/serve.md."""


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("modnet_jax.serve", HELP, usage="--checkpoint CKPT [options]")
    add_model_args(p)
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; not the loopback: needs --auth or --no-auth")
    s.add_argument("--port", type=int, default=7860, help="port")
    s.add_argument("--auth", metavar="TOKEN", default=os.environ.get(TOKEN_ENV),
                   help=f"require this bearer token (default: ${TOKEN_ENV})")
    s.add_argument("--no-auth", action="store_true",
                   help="allow a --host other than the loopback without --auth")
    s.add_argument("--max-upload-mb", type=float, default=25.0, metavar="MB",
                   help="larger uploads are answered 413")
    s.add_argument("--max-queue", type=int, default=32, metavar="N",
                   help="photos waiting for the device; more are answered 503")
    s.add_argument("--max-batch", type=int, default=None, metavar="N",
                   help="photos matted together (default: 4 x --batch-size; 1: one at a time)")
    s.add_argument("--ref-sizes", default="256,384,512", metavar="PX,PX",
                   help="other reference sizes the page and API offer")
    s.add_argument("--no-clean-colours", action="store_true",
                   help="the page's 'clean colours' box starts unticked")
    s.add_argument("--video-batch-size", type=int, default=1, metavar="N",
                   help="video and camera frames per model call")
    s.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="split the CPU into N devices (default: 2 with 2 or more cores)")
    return p


if __name__ == "__main__":  # --help, --version, usage mistakes: answered before heavy imports
    build_parser().parse_args(dashed(sys.argv[1:]))

from modnet_jax.inference.cli import UserError, run_main, split_host_cpu  # noqa: E402


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
    args = build_parser().parse_args(dashed(argv))
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
