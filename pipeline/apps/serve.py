"""``python -m pipeline serve``: colorize and stylize photos from a web page on this machine, for
people who do not use a terminal.

One page (pipeline.apps.web), served by uvicorn on 127.0.0.1 and a free port unless ``--host`` /
``--port`` say otherwise, working offline (its script and style ship with the package; nothing
is fetched, nothing reported). Drop photos or a folder to colorize them (gray | colour with a
slider; vividness, saturation, seed and steps under "advanced"; each or all as a zip at full
resolution), or a photo and a painting to stylize it. The work is the colorize and stylize
commands' own, with their defaults and bounds (``--max-megapixels``; one photo at a time, so the
memory in use is one command's), done in a bounded queue off the request threads, each browser
tab served in turn. Outputs are written into ``--out`` only, never over a file (``NAME.png``,
else ``NAME_2.png`` ...); uploads wait in a hidden folder inside it, removed when the server stops.

Why Starlette and uvicorn: MLflow already brings them, and the page is one static HTML file with
a small script; a UI framework (Gradio, Streamlit) would add hundreds of megabytes of
dependencies and fetch assets or report usage by default.
"""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

from pipeline.apps.args import add_precision, int_in
from pipeline.apps.inputs import add_max_megapixels
from pipeline.photo_colorizer import Colorizer

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one); OSError with the address when
    taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    except OSError as exc:
        sock.close()
        raise OSError(f"--host {host} --port {port}: {exc.strerror}") from None
    return sock


def run(args: argparse.Namespace) -> None:
    import uvicorn  # the web stack only for this command

    from pipeline.apps.web.app import Studio, build_app

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out}: not a folder")
    sock = listen(args.host, args.port)
    colorizer = Colorizer.load(args.model, args.guide, args.device, args.precision)
    out.mkdir(parents=True, exist_ok=True)
    studio = Studio(colorizer, out.resolve(), round(args.max_megapixels * 1e6))
    host, port = sock.getsockname()[:2]
    if args.host != LOOPBACK:
        log.warning("serving on %s: anyone who can reach it may use the page (no login)", host)
    # the one line a person (or a test) reads: where the page is
    print(f"serving http://{host}:{port}/ (outputs in {out}); Ctrl+C stops", flush=True)
    config = uvicorn.Config(build_app(studio), log_level="warning", access_log=False)
    with sock:  # the studio closes with the app (build_app's lifespan)
        uvicorn.Server(config).run(sockets=[sock])


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve",
        help="a web page on this machine to colorize and stylize photos",
        description=__doc__.split("\n\n")[0].replace("``", "").rstrip(".") + ".",
    )
    parser.add_argument("--out", required=True, help="folder for the outputs (made if missing)")
    parser.add_argument(
        "--host", default=LOOPBACK, help="address to serve on (default %(default)s: this machine)"
    )
    parser.add_argument(
        "--port", type=int_in(0, 65535), default=0, help="port (default 0: a free one)"
    )
    parser.add_argument(
        "--model", help="an exported colorizer (default: the shipped one, as for colorize)"
    )
    parser.add_argument("--guide", help="its guide (default: as for colorize)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    add_precision(parser, cpu_bf16=True)
    add_max_megapixels(parser, "larger uploads fail with a message; see docs/colorization.md")
    parser.set_defaults(func=run)
