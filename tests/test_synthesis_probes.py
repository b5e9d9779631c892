"""Probe photos: files and folders, the default photo, one-line errors, names that stay apart."""

import os
import struct
import threading
import zlib
from pathlib import Path

import pytest

from atlasgen.errors import AtlasgenError
from atlasgen.synthesis import default_probe, load_probes
from atlasgen.codec import MAX_IMAGE_BYTES as MAX_PROBE_BYTES, MAX_IMAGE_PIXELS as MAX_PROBE_PIXELS


def test_default_probe_is_the_astronaut():
    probe = default_probe()
    assert probe.name == "astronaut" and probe.image.shape == (512, 512, 3) and len(probe.digest) == 64


def test_probe_folder_and_bad_probes(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (30, 20), (10, 20, 30)).save(folder / "b.png")
    Image.new("RGB", (900, 600), (1, 2, 3)).save(folder / "a.jpg")
    (folder / "notes.txt").write_text("not a photo")
    probes = load_probes([folder])
    assert [p.name for p in probes] == ["a", "b"]
    assert probes[0].image.shape == (341, 512, 3)  # longest side capped at 512
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image")
    with pytest.raises(AtlasgenError, match="not an image"):
        load_probes([fake])
    with pytest.raises(AtlasgenError, match="does not exist"):
        load_probes([tmp_path / "missing.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AtlasgenError, match="no image files"):
        load_probes([empty])
    assert [p.name for p in load_probes([])] == ["astronaut"]


def test_probes_whose_names_clean_to_one_file_are_refused(tmp_path):
    from PIL import Image

    from atlasgen.names import safe_name

    # safe_name keeps 'a b' and 'a-b' apart by a hash; a file named after that hash still collides.
    cleaned = safe_name("a b")
    for name in ("a b.png", f"{cleaned}.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(AtlasgenError, match=f"would share the file name '{cleaned}'"):
        load_probes([tmp_path])


def load_within(paths, seconds=20.0):
    """load_probes(paths) in a thread: what it returned or raised, or a test failure if it blocks
    (a FIFO read with no writer would block for ever)."""
    outcome = {}

    def run():
        try:
            outcome["probes"] = load_probes(paths)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in (p for p in paths if p.exists() and p.is_fifo()):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # an EOF for the blocked reader
        pytest.fail(f"load_probes({paths}) still blocks after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["probes"]


def one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message and message.strip(), message
    return message


def test_a_fifo_probe_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(AtlasgenError) as info:
        load_within([fifo])
    assert one_line(info) == f"probe {fifo} is not a regular file (a FIFO); give an image file"


def test_a_device_probe_is_refused_before_any_read(tmp_path):
    # /dev/zero never ends: reading it whole would fill the memory. A symlink to it is no better.
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    for path in (Path("/dev/zero"), link):
        with pytest.raises(AtlasgenError) as info:
            load_within([path])
        assert one_line(info) == f"probe {path} is not a regular file (a character device); give an image file"


def test_a_symlink_to_a_photo_is_a_probe(tmp_path):
    from PIL import Image

    Image.new("RGB", (12, 10), (9, 8, 7)).save(tmp_path / "real.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "real.png")
    (probe,) = load_probes([tmp_path / "link.png"])
    assert probe.name == "link" and probe.image.shape == (10, 12, 3)


def test_a_folder_gives_only_its_regular_files_in_order(tmp_path):
    from PIL import Image

    for name in ("c.png", "a.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    os.mkfifo(tmp_path / "b.png")
    (tmp_path / "d.png").symlink_to("/dev/zero")
    (tmp_path / "e.png").mkdir()
    assert [p.name for p in load_within([tmp_path])] == ["a", "c"]


def test_an_oversize_probe_file_is_refused_unread(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as handle:
        handle.truncate(MAX_PROBE_BYTES + 1)  # sparse: no disk, no memory
    with pytest.raises(AtlasgenError) as info:
        load_probes([big])
    assert one_line(info) == (
        f"probe {big} is {MAX_PROBE_BYTES + 1:,} bytes, over the cap of {MAX_PROBE_BYTES >> 20} MiB; "
        f"give a smaller image file"
    )


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height 1-bit pixels and holds none: a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "width, height, size",
    [
        (20000, 20000, "400,000,000"),  # over Pillow's own limit: DecompressionBombError
        (10000, 10000, "100,000,000"),  # between Pillow's warning and its error: DecompressionBombWarning
        (10000, 4001, "10000x4001"),  # under Pillow's limits, over atlasgen's
    ],
)
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, width, height, size):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(width, height))
    assert width * height > MAX_PROBE_PIXELS
    with pytest.raises(AtlasgenError) as info:
        load_probes([bomb])
    assert one_line(info) == (
        f"probe {bomb} has {size} pixels, over the cap of {MAX_PROBE_PIXELS:,} pixels; give a smaller image"
    )


def test_a_probe_whose_file_name_is_not_utf8_is_named_with_its_bytes_escaped(tmp_path):
    from PIL import Image

    folder = tmp_path / "probes"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"ph\xffoto.png")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(os.fsdecode(raw))
    (probe,) = load_probes([folder])
    assert probe.name == "ph\\xffoto"
    probe.name.encode("utf-8")  # valid text: no lone surrogates reach atlas.json or a page
