"""`atlasgen serve`: a local preview of the atlas folder on the loopback interface only."""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path

import click

from atlasgen.errors import AtlasgenError


def make_server(out: Path, port: int) -> http.server.ThreadingHTTPServer:
    if not (out / "index.html").is_file():
        raise AtlasgenError(f"{out} has no index.html; build the atlas first (atlasgen build --out {out})")
    handler = functools.partial(_QuietHandler, directory=str(out))
    try:
        return _PreviewServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise AtlasgenError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); choose another --port") from None


def serve_forever(out: Path, port: int) -> None:
    server = make_server(out, port)
    click.echo(f"serving {out} on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class _PreviewServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A browser that navigates away drops its requests: not an error, and never a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        click.echo(f"serve: a request from {client_address[0]} failed ({type(error).__name__}: {error})", err=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request is noise in a preview
        pass
