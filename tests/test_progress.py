"""Build progress: tqdm bars on a terminal, plain throttled lines elsewhere."""

import io

from atlasgen.progress import Progress


def test_progress_draws_bars_on_a_terminal():
    stream = io.StringIO()
    progress = Progress(stream=stream, bars=True)
    progress.start(4)
    progress.layer("block1_conv1", 4)
    progress.advance(4, "whole-filter images")
    progress.close()
    assert "atlas" in stream.getvalue() and "4/4" in stream.getvalue() and "artifact/s" in stream.getvalue()


def test_progress_writes_plain_lines_elsewhere_at_most_every_interval():
    lines = io.StringIO()
    plain = Progress(stream=lines, bars=False, interval=3600)
    plain.start(3)
    plain.layer("block1_conv1", 3)
    plain.advance(1, "centre-neuron images")
    plain.advance(1, "centre-neuron images")  # within the interval: no line
    assert "block1_conv1: centre-neuron images 1/3; overall 1/3" in lines.getvalue() and "ETA" in lines.getvalue()
    assert "2/3" not in lines.getvalue()
    plain.advance(1, "centre-neuron images")  # the layer's last: always a line
    assert "3/3; overall 3/3" in lines.getvalue()
    plain.close()
    assert "computed 3 artifacts" in lines.getvalue() and "\r" not in lines.getvalue()


def test_notes_are_plain_lines_in_a_log_and_above_the_bars_on_a_terminal():
    lines = io.StringIO()
    plain = Progress(stream=lines, bars=False)
    plain.start(2)
    plain.note("block1_conv1: whole-filter images in batches of 16 (fit to 3.2 GiB of the 12.8 GiB free on CPU)")
    assert lines.getvalue().splitlines()[-1] == (
        "block1_conv1: whole-filter images in batches of 16 (fit to 3.2 GiB of the 12.8 GiB free on CPU)"
    )
    terminal = io.StringIO()
    bars = Progress(stream=terminal, bars=True)
    bars.start(2)
    bars.layer("block1_conv1", 2)
    bars.note("block1_conv1: whole-filter images: out of memory at batch 16, retrying at 8")
    bars.advance(2, "whole-filter images")
    bars.close()
    assert "block1_conv1: whole-filter images: out of memory at batch 16, retrying at 8\n" in terminal.getvalue()
    assert "2/2" in terminal.getvalue()
