"""`atlasgen serve`: a preview on the loopback interface only."""

import json
import threading
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
