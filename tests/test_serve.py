"""`atlasgen serve`: a preview on the loopback interface only."""

import contextlib
import os
import socket
import threading
import time
import urllib.request

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.site.serve import make_server
from atlasgen.site.render import render_site
from support import synthetic_manifest, write_manifest


def test_serve_needs_a_built_site(tmp_path):
    with pytest.raises(AtlasgenError, match="index.html"):
        make_server(tmp_path, 0)


def test_serve_listens_on_loopback(tmp_path):
    write_manifest(tmp_path, synthetic_manifest(layers=[("block1_conv1", 2)]))
    render_site(tmp_path)
    server = make_server(tmp_path, 0)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/vgg16/block1_conv1/") as response:
            assert response.status == 200 and b"block1_conv1" in response.read()
    finally:
        server.shutdown()
        server.server_close()


def test_a_dropped_connection_prints_no_traceback(tmp_path, capsys):
    from atlasgen.site.serve import make_server

    write_manifest(tmp_path, synthetic_manifest(layers=[("block1_conv1", 1)]))
    (tmp_path / "index.html").write_text("<!DOCTYPE html><title>x</title>")
    server = make_server(tmp_path, 0)
    try:
        for error in (ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(32, "Broken pipe"),
                      ValueError("odd request")):
            try:
                raise error
            except Exception:
                server.handle_error(None, ("127.0.0.1", 5555))
    finally:
        server.server_close()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == ["serve: a request from 127.0.0.1 failed (ValueError: odd request)"]


# Links, traversal and idle connections (issue 19, item 8). Every link in a site is refused, the
# ones that point inside it too: atlasgen never writes a link, so a link is never part of an atlas.

SECRET = "outside secret"


@pytest.fixture
def site(tmp_path):
    """A site folder beside an outside folder, with every kind of link from the one to the other."""
    site, outside = tmp_path / "site", tmp_path / "outside"
    (site / "sub").mkdir(parents=True)
    (site / "empty").mkdir()
    (site / "index.html").write_text("<!DOCTYPE html><title>home</title>")
    (site / "sub" / "index.html").write_text("<!DOCTYPE html><title>sub</title>")
    (site / "sub" / "style.css").write_text("body{}")
    (site / "empty" / "listed.txt").write_text("a file of a folder without index.html")
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / "index.html").write_text(SECRET)
    (site / "x").symlink_to(outside)  # a symlinked folder
    (site / "secret.txt").symlink_to(outside / "secret.txt")  # a link to a file outside
    (site / "sub" / "up").symlink_to("../..")  # a relative link that climbs out
    (site / "loop").symlink_to("loop")  # a link loop
    (site / "a").symlink_to("b")
    (site / "b").symlink_to("a")
    (site / "inner.html").symlink_to("index.html")  # a link inside, pointing inside: refused too
    (site / "insub").symlink_to("sub")
    os.mkfifo(site / "pipe.html")  # a special file: never opened
    return site


@contextlib.contextmanager
def serving(site, **settings):
    server = make_server(site, 0, **settings)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def ask(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Sends the request line exactly as given (no client-side normalisation) and reads the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"{method} {target} HTTP/1.0\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def test_the_site_itself_is_served(site):
    with serving(site) as port:
        assert ask(port, "/")[0] == 200 and b"home" in ask(port, "/")[2]
        status, headers, body = ask(port, "/sub/style.css")
        assert (status, headers["Content-type"], body) == (200, "text/css", b"body{}")
        status, headers, _ = ask(port, "/sub")
        assert (status, headers["Location"]) == (301, "/sub/")
        assert ask(port, "/sub/?q=1#top")[2].endswith(b"<title>sub</title>")
        status, headers, body = ask(port, "/sub/index.html", "HEAD")
        assert (status, headers["Content-Length"], body) == (200, str(len("<!DOCTYPE html><title>sub</title>")), b"")


@pytest.mark.parametrize("target", [
    "/x/secret.txt", "/x/", "/x", "/x/index.html",  # through a symlinked folder
    "/secret.txt",  # a link to a file outside
    "/sub/up/outside/secret.txt", "/sub/up/",  # a relative link that climbs out
    "/loop", "/loop/", "/a", "/b/",  # link loops
    "/inner.html", "/insub/", "/insub/style.css",  # links that stay inside
    "/pipe.html",  # a FIFO
])
def test_links_are_never_followed(site, target):
    with serving(site) as port:
        status, _, body = ask(port, target)
    assert status == 404 and SECRET.encode() not in body and b"secret.txt" not in body


@pytest.mark.parametrize("target", [
    "/../outside/secret.txt", "/sub/../../outside/secret.txt", "/%2e%2e/outside/secret.txt",
    "/%2E%2E%2Foutside%2Fsecret.txt", "/sub/%2e%2e/%2e%2e/outside/secret.txt", "/..%5Coutside%5Csecret.txt",
    "/..\\outside\\secret.txt", "//etc/passwd", "/%2Fetc%2Fpasswd", "/./index.html", "/index.html%00.txt",
    "/%ff", "http://127.0.0.1/../outside/secret.txt", "*",
])
def test_traversal_is_refused(site, target):
    with serving(site) as port:
        status, _, body = ask(port, target)
    assert status == 404 and SECRET.encode() not in body


def test_a_folder_without_index_is_not_listed(site):
    with serving(site) as port:
        status, _, body = ask(port, "/empty/")
    assert status == 404 and b"listed.txt" not in body


@pytest.mark.parametrize("sent", [b"", b"GET /index.ht", b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n"])
def test_an_idle_connection_is_dropped(site, sent):
    # Nothing, half a request line, or a request line whose headers never end: closed by the server
    # after its idle timeout, with no answer.
    with serving(site, idle_timeout=0.3) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(sent)
            started = time.monotonic()
            try:
                answer = sock.recv(1024)
            except ConnectionResetError:
                answer = b""
            waited = time.monotonic() - started
    assert answer == b"" and waited < 4, (answer, waited)


def test_connections_beyond_the_cap_are_closed_at_once(site):
    with serving(site, idle_timeout=30, max_connections=2) as port:
        # Accepted in the order they connect: the two held ones take the slots, the third finds none.
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
                try:
                    answer = extra.recv(1024)
                except ConnectionResetError:
                    answer = b""
                assert answer == b""
            for sock in held:
                sock.close()
            # The slots come back when the held connections end.
            for _ in range(50):
                try:
                    if ask(port, "/")[0] == 200:
                        break
                except (ConnectionError, ValueError, IndexError):
                    time.sleep(0.05)
            else:
                pytest.fail("no slot came back after the held connections closed")
        finally:
            for sock in held:
                sock.close()
