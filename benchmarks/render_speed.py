"""Rendering speed: every page of a full-size VGG16 atlas (4,224 filter pages) from a synthetic manifest.

    python benchmarks/render_speed.py [--out DIR]

No model runs: the manifest has VGG16's real layers and receptive fields and made-up metrics, and
no image files (pages only reference them). Prints the page count and seconds for a first render
and for a re-render (which rewrites nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from atlasgen.site.render import render_site

# The made-up manifest is the tests' (tests/support.py): the benchmark renders the full-size one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import synthetic_manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="atlas-render-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "vgg16").mkdir(exist_ok=True)
    (out / "vgg16" / "atlas.json").write_text(json.dumps(synthetic_manifest()))
    for label in ("first render", "re-render"):
        start = time.perf_counter()
        result = render_site(out, base_url="https://example.github.io/atlas/")
        print(json.dumps({"run": label, "pages": result.pages, "filters": result.filters,
                          "seconds": round(time.perf_counter() - start, 2)}))


if __name__ == "__main__":
    main()
