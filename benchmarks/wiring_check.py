"""Issue 22's "Done when", checked: the wiring against an independent computation from the weights, every
link of the Wiring sections, and `atlasgen figure --wiring`.

    python benchmarks/wiring_check.py [--weights hed-bsds500] [--k 6] [--layers all] [--around block3_conv3/10]
                                      [--size 32] [--steps 8] [--workdir DIR]

1. **Every filter, independently.** For every conv layer of the model (--layers; default all 13 of
   VGG16, 4,224 filters), each filter's wiring computed here with numpy straight from the kernel
   arrays: the conv layers in the model's layer order, checked to be one chain with nothing but
   max-pooling between consecutive ones (so no scale to fold); for filter d of layer L with kernel W
   (h, w, c_in, c_out), inputs are the k filters c of the layer before with the largest positive
   sum of W[:, :, c, d] (ties to the lower c), inhibitors the k most negative, outputs the k filters
   e of the next layer with the largest positive sum of W_next[:, :, d, e]; norm the slice's L2
   norm. It is compared with `atlasgen.model.wiring` (LayerWiring over model_wiring, what the build's
   compute function runs) for every filter: the same layers and filters in the same order, weights
   and norms within 1e-9 (relative), slices equal to 6 significant digits, the first layer's inputs
   and the last layer's outputs unclaimed with a reason. Both are timed.
2. **A small real build** (`atlasgen.build.run.run_build`) of two consecutive layers that no test
   uses (--around's layer and the one before it, block3_conv2 and block3_conv3 by default), of the
   filters that make links inside the atlas (`pick_filters`; --filters is one list for both layers):
   the filter d of --around, its 3 strongest inputs and 2 strongest inhibitors, and the 3 filters that
   filter d of the layer before excites most. Every unit's `wiring` in atlas.json is compared with the
   independent computation, field by field.
3. **Every link resolves.** On every built filter's page, each entry of the Wiring section names the
   link's layer and filter in atlas.json's order; a built filter is a link to exactly its page (the
   file exists) with its picture (the file exists); a filter not built is named and not linked. On
   every filter and layer page, every relative href and src resolves to a file in the site.
4. **`atlasgen figure --wiring`** on a built filter with inputs writes a PDF (its header and trailer).

Prints one line per check and a JSON summary; exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from atlasgen.build.config import BuildConfig
from atlasgen.build.run import run_build
from atlasgen.model.weights import load_model
from atlasgen.progress import Progress
from atlasgen.tf import keras
from machine import in_workdir

SLICE_DIGITS = 6


# --- 1. the independent computation -------------------------------------------------------------


def conv_chain(model) -> list[str]:
    """The conv layers in layer order, checked to be one chain with only max-pooling between them."""
    convs, between = [], []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            if convs and any(not isinstance(op, keras.layers.MaxPooling2D) for op in between):
                raise SystemExit(f"{layer.name}: {[type(op).__name__ for op in between]} between convs; this check "
                                 f"folds nothing")
            convs.append(layer.name)
            between = []
        elif not isinstance(layer, keras.layers.InputLayer):
            between.append(layer)
    return convs


def top(sums: np.ndarray, k: int, lowest: bool = False) -> list[int]:
    keep = [c for c in range(len(sums)) if (sums[c] < 0 if lowest else sums[c] > 0)]
    return sorted(keep, key=lambda c: (sums[c] if lowest else -sums[c], c))[:k]


def rounded(slice_: np.ndarray) -> list[list[float]]:
    return [[float(f"{w:.{SLICE_DIGITS}g}") for w in row] for row in slice_]


def link(layer: str, c: int, slice_: np.ndarray) -> dict:
    return {"layer": layer, "filter": c, "weight": float(slice_.sum()), "norm": float(np.sqrt((slice_ ** 2).sum())),
            "slice": rounded(slice_)}


def independent(model, convs: list[str], k: int, layers: list[str]) -> dict[str, list[dict]]:
    """Every filter's wiring of `layers`, from the kernel arrays alone."""
    kernels = {name: np.asarray(model.get_layer(name).kernel, np.float64) for name in convs}
    out = {}
    for name in layers:
        i = convs.index(name)
        before, after = (convs[i - 1] if i else None), (convs[i + 1] if i + 1 < len(convs) else None)
        own = kernels[name]
        records = []
        for d in range(own.shape[3]):
            record = {"inputs": [], "inhibitors": [], "outputs": [], "source": None, "target": None}
            if before:
                sums = own[:, :, :, d].sum(axis=(0, 1))
                record["source"] = {"name": before, "filters": own.shape[2]}
                record["inputs"] = [link(before, c, own[:, :, c, d]) for c in top(sums, k)]
                record["inhibitors"] = [link(before, c, own[:, :, c, d]) for c in top(sums, k, lowest=True)]
            if after:
                nxt = kernels[after]
                sums = nxt[:, :, d, :].sum(axis=(0, 1))
                record["target"] = {"name": after, "filters": nxt.shape[3]}
                record["outputs"] = [link(after, e, nxt[:, :, d, e]) for e in top(sums, k)]
            records.append(record)
        out[name] = records
    return out


def compare(mine: dict, theirs: dict) -> list[str]:
    """Where atlasgen's record of one filter differs from the independent one (empty: the same)."""
    problems = []
    for end, way in (("source", "inputs"), ("target", "outputs")):
        if mine[end] is None:
            if theirs.get(end) is not None or not theirs.get("unclaimed", {}).get(way):
                problems.append(f"{end}: expected unclaimed with a reason, got {theirs.get(end)} / {theirs.get('unclaimed')}")
        elif theirs.get(end) != mine[end]:
            problems.append(f"{end}: {theirs.get(end)} not {mine[end]}")
    for name in ("inputs", "inhibitors", "outputs"):
        a, b = mine[name], theirs.get(name, [])
        if [(x["layer"], x["filter"]) for x in a] != [(x["layer"], x["filter"]) for x in b]:
            problems.append(f"{name}: {[x['filter'] for x in b]} not {[x['filter'] for x in a]}")
            continue
        for x, y in zip(a, b):
            for field in ("weight", "norm"):
                if abs(x[field] - y[field]) > 1e-9 * max(1e-3, abs(x[field])):
                    problems.append(f"{name} {x['filter']}: {field} {y[field]!r} not {x[field]!r}")
            if [[float(f"{w:.{SLICE_DIGITS}g}") for w in row] for row in y["slice"]] != x["slice"]:
                problems.append(f"{name} {x['filter']}: slice {y['slice']} not {x['slice']}")
    return problems


def library(loaded, layers: list[str], k: int) -> dict[str, list[dict]]:
    from atlasgen.model.wiring import LayerWiring, model_wiring

    wiring = model_wiring(loaded.model)
    out = {}
    for name in layers:
        wired = LayerWiring(loaded.model, wiring, name)
        out[name] = [wired.unit(d, k) for d in range(loaded.model.get_layer(name).kernel.shape[3])]
    return out


# --- 3. pages and their links ---------------------------------------------------------------------


class WiringPage(HTMLParser):
    """The Wiring section's entries by group (inputs, inhibitors, outputs), and every href and src of the page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self.groups: dict[str, list[dict]] = {}
        self.in_wiring = 0  # section depth
        self.group = None
        self.entry = None
        self.span = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("href", "src"):
            if attrs.get(name):
                self.refs.append(attrs[name])
        classes = (attrs.get("class") or "").split()
        if tag == "section":
            if self.in_wiring or "wiring" in classes:
                self.in_wiring += 1
        if not self.in_wiring:
            return
        if tag == "h3" and (attrs.get("id") or "").startswith("wiring-"):
            self.group = attrs["id"][len("wiring-"):]
            self.groups[self.group] = []
        elif tag == "li" and self.group:
            self.entry = {"href": None, "img": None, "not_built": False, "texts": []}
        elif self.entry is not None:
            if tag == "a" and "wired-filter" in classes:
                self.entry["href"] = attrs.get("href")
            elif tag == "a":
                self.entry.setdefault("other_links", []).append(attrs.get("href"))
            elif tag == "span" and "not-built" in classes:
                self.entry["not_built"] = True
            elif tag == "img":
                self.entry["img"] = attrs.get("src")

    def handle_endtag(self, tag):
        if tag == "section" and self.in_wiring:
            self.in_wiring -= 1
        if tag == "li" and self.entry is not None:
            self.groups[self.group].append(self.entry)
            self.entry = None

    def handle_data(self, data):
        if self.entry is not None and data.strip():
            self.entry["texts"].append(data.strip())


def resolves(page: Path, ref: str, site: Path) -> Path | None:
    """The file a page-relative href or src names (a folder: its index.html), if it is inside the site; None otherwise."""
    parts = urlsplit(ref)
    path = (page.parent / unquote(parts.path)).resolve()
    if path.is_dir():
        path = path / "index.html"
    return path if path.is_file() and site.resolve() in path.parents else None


def check_pages(site: Path, atlas: dict) -> dict:
    built = {(layer["name"], unit["index"]): unit for layer in atlas["layers"] for unit in layer["units"]}
    root = site / atlas["name"]
    entries = linked = named = 0
    refs = 0
    problems = []
    pages = [(root / layer["name"] / "index.html", None) for layer in atlas["layers"]]
    pages += [(site / unit["page"] / "index.html", (layer, unit)) for layer in atlas["layers"] for unit in layer["units"]]
    for page, owner in pages:
        if not page.is_file():
            problems.append(f"{page}: no page")
            continue
        parsed = WiringPage()
        parsed.feed(page.read_text())
        for ref in parsed.refs:
            if urlsplit(ref).scheme or ref.startswith(("#", "//", "mailto:")):
                continue
            refs += 1
            if resolves(page, ref, site) is None:
                problems.append(f"{page.relative_to(site)}: {ref} does not resolve")
        if owner is None:
            continue
        layer, unit = owner
        wiring = unit.get("wiring")
        if wiring is None:
            problems.append(f"{page.relative_to(site)}: no wiring in atlas.json")
            continue
        for group in ("inputs", "inhibitors", "outputs"):
            want = wiring.get(group, [])
            shown = parsed.groups.get(group)
            if shown is None:
                problems.append(f"{page.relative_to(site)}: no {group} heading")
                continue
            if len(shown) != len(want):
                problems.append(f"{page.relative_to(site)}: {len(shown)} {group} shown, atlas.json has {len(want)}")
                continue
            for entry, link_ in zip(shown, want):
                entries += 1
                key = (link_["layer"], link_["filter"])
                text = " ".join(entry["texts"])
                if link_["layer"] not in entry["texts"] or f"filter {link_['filter']}" not in entry["texts"]:
                    problems.append(f"{page.relative_to(site)} {group}: entry {text!r} does not name {key}")
                if key in built:
                    linked += 1
                    target = resolves(page, entry["href"] or "", site)
                    if entry["not_built"] or target != (site / built[key]["page"] / "index.html").resolve():
                        problems.append(f"{page.relative_to(site)} {group}: {key} links {entry['href']!r}, not its page")
                    if entry["img"] is None or resolves(page, entry["img"], site) is None:
                        problems.append(f"{page.relative_to(site)} {group}: {key}'s picture {entry['img']!r} missing")
                else:
                    named += 1
                    if entry["href"] or entry.get("other_links") or not entry["not_built"]:
                        problems.append(f"{page.relative_to(site)} {group}: {key} is not built but is linked "
                                        f"({entry['href']!r})")
    return {"pages": len(pages), "refs": refs, "entries": entries, "linked": linked, "named_not_linked": named,
            "problems": problems}


# --- 2. the build ---------------------------------------------------------------------------------


def pick_filters(records: dict, before: str, layer: str, d: int) -> list[int]:
    """Filter d, its 3 strongest inputs and 2 strongest inhibitors (filters of `before`), and the 3 filters of
    `layer` that filter d of `before` excites most: one list for both layers, so links go both ways."""
    mine = records[layer][d]
    picked = {d}
    picked.update(x["filter"] for x in mine["inputs"][:3])
    picked.update(x["filter"] for x in mine["inhibitors"][:2])
    picked.update(x["filter"] for x in records[before][d]["outputs"][:3])
    return sorted(picked)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="hed-bsds500")
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--layers", default="all", help="layers of the independent check (comma list, or all)")
    parser.add_argument("--around", default="block3_conv3/10", help="layer/filter the small build is made around")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workdir", help="keep the store and site here; default: a temp folder, removed after")
    args = parser.parse_args()
    return in_workdir(args.workdir, "wiring-check-", lambda work: run(args, work))


def run(args, work: Path) -> int:
    loaded = load_model(args.weights)
    model = loaded.model
    convs = conv_chain(model)
    layers = convs if args.layers == "all" else args.layers.split(",")
    filters = sum(model.get_layer(name).kernel.shape[3] for name in layers)

    start = time.perf_counter()
    mine = independent(model, convs, args.k, layers)
    mine_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = library(loaded, layers, args.k)
    theirs_s = time.perf_counter() - start
    differ = [f"{name}/{d}: {p}" for name in layers for d, (a, b) in enumerate(zip(mine[name], theirs[name]))
              for p in compare(a, b)]
    links = sum(len(r[g]) for name in layers for r in mine[name] for g in ("inputs", "inhibitors", "outputs"))
    print(f"independent: {filters - len({p.split(':')[0] for p in differ})}/{filters} filters of {len(layers)} layers have "
          f"atlasgen.model.wiring's wiring equal to numpy's from the kernels ({links} links, k {args.k}; numpy "
          f"{mine_s:.2f} s, atlasgen {theirs_s:.2f} s)")
    for problem in differ[:20]:
        print(f"  DIFFERS: {problem}")

    # 2. the build
    layer, d = args.around.split("/")
    d = int(d)
    before = convs[convs.index(layer) - 1]
    picked = pick_filters(independent(model, convs, args.k, [before, layer]) if layer not in mine or before not in mine
                          else mine, before, layer, d)
    spec = ",".join(str(f) for f in picked)
    config = BuildConfig(preset="quick", weights=args.weights, layers=(before, layer), filters=spec, size=args.size,
                         steps=args.steps, dataset_size=64, examples=3, wiring_k=args.k,
                         store=work / "store", out=work / "site")
    start = time.perf_counter()
    result = run_build(config, Progress(stream=sys.stderr, bars=False))
    build_s = time.perf_counter() - start
    if not result.complete:
        print(f"build: not complete ({result.missing} missing)")
        return 1
    atlas = json.loads(Path(result.manifest).read_text())
    print(f"build: {atlas['name']}, {before} and {layer}, filters {spec}, {args.size} px, {args.steps} steps, "
          f"{build_s:.0f} s")
    truth = independent(model, convs, args.k, [before, layer])
    built_differ = []
    units = 0
    for rec in atlas["layers"]:
        for unit in rec["units"]:
            units += 1
            wiring = unit.get("wiring")
            if wiring is None:
                built_differ.append(f"{rec['name']}/{unit['index']}: no wiring")
                continue
            if wiring.get("k") != args.k:
                built_differ.append(f"{rec['name']}/{unit['index']}: k {wiring.get('k')}")
            built_differ += [f"{rec['name']}/{unit['index']}: {p}" for p in compare(truth[rec["name"]][unit["index"]], wiring)]
    print(f"atlas.json: {units - len({p.split(':')[0] for p in built_differ})}/{units} built units' wiring equal to "
          f"numpy's from the kernels")
    for problem in built_differ[:20]:
        print(f"  DIFFERS: {problem}")

    # 3. links
    pages = check_pages(work / "site", atlas)
    print(f"links: {pages['entries']} wiring entries on {units} filter pages: {pages['linked']} link a built filter's page "
          f"(and picture), {pages['named_not_linked']} name a filter not built without a link; {pages['refs']} relative "
          f"hrefs and srcs on {pages['pages']} filter and layer pages; {len(pages['problems'])} problems")
    for problem in pages["problems"][:20]:
        print(f"  BROKEN: {problem}")

    # 4. the figure
    pdf = work / f"wiring-{layer}-{d}.pdf"
    command = [str(Path(sys.executable).parent / "atlasgen"), "figure", "--out", str(work / "site"), "--atlas",
               atlas["name"], "--wiring", f"{layer}/{d}", "-o", str(pdf)]
    figure = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    data = pdf.read_bytes() if pdf.is_file() else b""
    pdf_ok = figure.returncode == 0 and data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]
    print(f"figure: atlasgen figure --wiring {layer}/{d} -o {pdf.name}: exit {figure.returncode}, "
          f"{'a PDF' if pdf_ok else 'NO PDF'} of {len(data)} bytes" + (f" ({figure.stderr.strip()})" if figure.returncode else ""))

    passed = not differ and not built_differ and not pages["problems"] and pdf_ok and pages["linked"] > 0
    print(json.dumps({"passed": passed, "independent": {"filters": filters, "layers": len(layers), "links": links,
                                                         "differ": len(differ), "numpy_seconds": round(mine_s, 3),
                                                         "atlasgen_seconds": round(theirs_s, 3)},
                      "build": {"layers": [before, layer], "filters": picked, "units": units, "differ": len(built_differ),
                                "seconds": round(build_s, 1)},
                      "links": {key: value for key, value in pages.items() if key != "problems"},
                      "link_problems": len(pages["problems"]), "pdf_bytes": len(data), "pdf_ok": pdf_ok}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
