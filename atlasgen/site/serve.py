"""`atlasgen serve`: a local preview of the atlas folder on the loopback interface only.

Only regular files and folders inside the site folder are served. The path of a request is walked
one name at a time from the site folder, each folder opened relative to the one before without
following links: a link anywhere on the way (to the outside or not, a loop, or one swapped in while
the walk runs) is a 404, as are `..`, backslashes, special files and folders without an
index.html (there are no directory listings). atlasgen never writes links into a site."""

from __future__ import annotations

import http.server
import os
import stat
import sys
import threading
import urllib.parse
from http import HTTPStatus
from pathlib import Path

import click

from atlasgen.errors import AtlasgenError

#: Seconds a connection may stay silent (no request line, headers unfinished, a reader that stalls)
#: before the server drops it.
IDLE_TIMEOUT_S = 10.0
#: Connections served at once; one more is closed at once, unanswered.
MAX_CONNECTIONS = 32


def make_server(out: Path, port: int, *, idle_timeout: float = IDLE_TIMEOUT_S,
                max_connections: int = MAX_CONNECTIONS) -> http.server.ThreadingHTTPServer:
    if not (out / "index.html").is_file():
        raise AtlasgenError(f"{out} has no index.html; build the atlas first (atlasgen build --out {out})")
    try:
        return _PreviewServer(out.resolve(), port, idle_timeout, max_connections)
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


def url_names(target: str) -> list[str] | None:
    """The names of a request's path, percent-decoded; None for a path that is not a plain walk down
    from the site folder (`.` or `..`, a backslash, a NUL, bytes that are not UTF-8)."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    try:
        path = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    names = [name for name in path.split("/") if name]
    if any(name in (".", "..") or "\\" in name or "\0" in name for name in names):
        return None
    return names


def open_inside(root: Path, names: list[str]) -> tuple[int, os.stat_result]:
    """Opens root/names[0]/names[1]/... without following a link anywhere: each name is looked up
    with lstat in the folder opened before it, must be a folder (or, last, a regular file) and is
    opened with O_NOFOLLOW relative to that folder. Returns the open descriptor and its fstat;
    raises OSError (FileNotFoundError for a link or a special file) otherwise."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for position, name in enumerate(names):
            last = position == len(names) - 1
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if not (stat.S_ISDIR(mode) or (last and stat.S_ISREG(mode))):
                raise FileNotFoundError(name)
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | (0 if last else os.O_DIRECTORY)
            inner = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = inner
        info = os.fstat(fd)
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise FileNotFoundError(names[-1] if names else str(root))
        return fd, info
    except BaseException:
        os.close(fd)
        raise


class _PreviewServer(http.server.ThreadingHTTPServer):
    def __init__(self, root: Path, port: int, idle_timeout: float, max_connections: int):
        self.root = root
        self.idle_timeout = idle_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(("127.0.0.1", port), _SiteHandler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):  # every slot taken: close this one unanswered
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        # A browser that navigates away drops its requests: not an error, and never a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        click.echo(f"serve: a request from {client_address[0]} failed ({type(error).__name__}: {error})", err=True)


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, request, client_address, server):
        super().__init__(request, client_address, server, directory=str(server.root))

    def setup(self):
        self.timeout = self.server.idle_timeout  # the socket timeout of this connection
        super().setup()

    def send_head(self):
        names = url_names(self.path)
        try:
            if names is None:
                raise FileNotFoundError(self.path)
            fd, info = open_inside(self.server.root, names)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        name = names[-1] if names else "index.html"
        if stat.S_ISDIR(info.st_mode):
            os.close(fd)
            if not self.path.split("?", 1)[0].split("#", 1)[0].endswith("/"):
                return self._redirect("/" + "".join(urllib.parse.quote(n) + "/" for n in names))
            try:
                fd, info = open_inside(self.server.root, [*names, "index.html"])
            except OSError:  # a folder without index.html: no listing
                self.send_error(HTTPStatus.NOT_FOUND, "File not found")
                return None
            name = "index.html"
        handle = os.fdopen(fd, "rb")
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-type", self.guess_type(name))
            self.send_header("Content-Length", str(info.st_size))
            self.send_header("Last-Modified", self.date_time_string(info.st_mtime))
            self.end_headers()
        except BaseException:
            handle.close()
            raise
        return handle

    def _redirect(self, location: str):
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None

    def list_directory(self, path):  # never reached: send_head lists nothing
        self.send_error(HTTPStatus.NOT_FOUND, "File not found")
        return None

    def log_message(self, format, *args):  # one line per request is noise in a preview
        pass
