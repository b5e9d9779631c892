"""Wiring between filters (atlasgen.model.wiring, site.wiring): read from the weights, checked against
numpy on the raw kernels, folded through batch norms, refused with a reason across residual adds and
channel-mixing layers, and shown on the pages and in `atlasgen figure --wiring`."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from support import HED_ATLAS, synthetic_manifest, write_manifest

K = 6
#: The wired CNN's batch norm: gamma and moving variance (beta and the mean do not move a weight).
GAMMA = np.array([2.0, -1.0, 0.5, 1.0])
VARIANCE = np.array([3.0, 0.0, 1.0, 0.25])
EPSILON = 1e-3


def build_wired_cnn(keras):
    """a -> batch norm -> ReLU -> pool -> b -> c (a 3 x 2 kernel), then b + c -> crop -> head: the
    batch norm folds into b's slices, b feeds c by a single chain (and the add beside it), and the
    add stands between c and head. Its weights are drawn from a fixed seed, the same in every process."""
    L = keras.layers
    image = keras.Input((None, None, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", name="a")(image)
    x = L.BatchNormalization(epsilon=EPSILON, name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b")(x)
    c = L.Conv2D(4, (3, 2), padding="same", activation="relu", name="c")(b)
    x = L.Add(name="add")([b, c])
    x = L.Cropping2D(1, name="crop")(x)
    x = L.Conv2D(3, 3, name="head")(x)
    model = keras.Model(image, x, name="wired_cnn")
    rng = np.random.default_rng(22)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()])
    model.get_layer("bn").set_weights([GAMMA.astype(np.float32), np.full(4, 0.1, np.float32),
                                       np.full(4, 0.2, np.float32), VARIANCE.astype(np.float32)])
    return model


def expected_links(kernel: np.ndarray, d: int, k: int = K, lowest: bool = False, outgoing: bool = False) -> list[dict]:
    """The top k computed here, from the raw kernel (height, width, in, out), in plain Python: filter d's
    inputs (`outgoing`: what it feeds, kernel[:, :, d, :]), positive sums largest first, or (`lowest`)
    negative sums most negative first; ties to the lower index."""
    slices = kernel[:, :, d, :] if outgoing else kernel[:, :, :, d]
    sums = [(float(slices[:, :, c].astype(np.float64).sum()), c) for c in range(slices.shape[2])]
    chosen = sorted((s for s in sums if (s[0] < 0 if lowest else s[0] > 0)),
                    key=lambda s: (s[0], s[1]) if lowest else (-s[0], s[1]))[:k]
    return [{"filter": c, "weight": w, "slice": slices[:, :, c].astype(np.float64),
             "norm": float(np.sqrt((slices[:, :, c].astype(np.float64) ** 2).sum()))} for w, c in chosen]


def assert_links(found: list[dict], expected: list[dict], layer: str) -> None:
    assert [(e["layer"], e["filter"]) for e in found] == [(layer, e["filter"]) for e in expected]
    for got, want in zip(found, expected):
        assert got["weight"] == pytest.approx(want["weight"], rel=1e-9, abs=1e-12)
        assert got["norm"] == pytest.approx(want["norm"], rel=1e-9)
        assert np.allclose(np.array(got["slice"]), want["slice"], rtol=1e-5, atol=1e-9)


# --- the model: which conv feeds which ----------------------------------------------------------------


def test_the_vgg16_trunk_is_one_chain(hed_model):
    from atlasgen.model.wiring import Link, model_wiring

    wiring = model_wiring(hed_model.model)
    names = list(wiring.feeds)
    assert len(names) == 13 and names[0] == "block1_conv1" and names[-1] == "block5_conv3"
    assert wiring.feeds["block1_conv1"] == "it reads the image: its kernel weighs pixels, not filters"
    for before, after in zip(names, names[1:]):
        # Through a ReLU (inside the conv) and, between blocks, a max-pool: nothing folded.
        assert wiring.feeds[after] == wiring.fed[before] == Link(before, after)
    assert wiring.fed["block5_conv3"] == "no conv layer comes after it"


@pytest.mark.parametrize("layer, after", [("block4_conv2", "block4_conv3"), ("block5_conv3", None)])
def test_the_build_s_wiring_equals_numpy_on_the_raw_kernels(hed_model, layer, after):
    """Through the build's compute function: a layer's inputs, inhibitors and outputs against the top k
    computed here from the kernels as stored in the model (layers no other test reads)."""
    from atlasgen.build.compute import Job, filter_wiring
    from atlasgen.build.plan import make_plan

    filters = [0, 5, 137, 511]
    plan = make_plan("vgg16", hed_model.fingerprint, [(layer, filters)], {"size": 64}, [])
    artifacts = [a for a in plan.artifacts if a.kind == "wiring"]
    job = Job("wiring", artifacts, None, {}, None, None, make_engine=None, loaded=hed_model)
    made = {artifact.filter: (blobs, facts) for artifact, blobs, facts in filter_wiring(job)}
    assert sorted(made) == filters
    before = names_before(hed_model, layer)
    kernel = np.asarray(hed_model.model.get_layer(layer).kernel)
    for d in filters:
        blobs, facts = made[d]
        wiring = facts["wiring"]
        assert blobs == {} and wiring["k"] == K and wiring["folded"] == {}
        assert wiring["source"] == {"name": before, "filters": 512}
        assert_links(wiring["inputs"], expected_links(kernel, d), before)
        assert_links(wiring["inhibitors"], expected_links(kernel, d, lowest=True), before)
        if after is None:
            assert "target" not in wiring and wiring["outputs"] == []
            assert wiring["unclaimed"] == {"outputs": "no conv layer comes after it"}
        else:
            assert wiring["target"] == {"name": after, "filters": 512} and wiring["unclaimed"] == {}
            outgoing = np.asarray(hed_model.model.get_layer(after).kernel)
            assert_links(wiring["outputs"], expected_links(outgoing, d, outgoing=True), after)
        assert len(wiring["inputs"]) == len(wiring["inhibitors"]) == K  # 512 channels: k of each sign


def names_before(hed_model, layer: str) -> str:
    from atlasgen.model.graph import conv_layers

    names = [c.name for c in conv_layers(hed_model.model)]
    return names[names.index(layer) - 1]


def test_ranked_keeps_only_the_sign_asked_for_and_breaks_ties_by_index():
    from atlasgen.model.wiring import ranked

    sums = np.array([0.5, -1.0, 2.0, 0.5, 0.0, -1.0, -0.2])
    assert ranked(sums, 3) == [2, 0, 3]
    assert ranked(sums, 10) == [2, 0, 3]  # no zero, no negative weight among the inputs
    assert ranked(sums, 2, lowest=True) == [1, 5]
    assert ranked(sums, 10, lowest=True) == [1, 5, 6]
    assert ranked(np.zeros(4), 3) == [] == ranked(np.zeros(4), 3, lowest=True)


# --- folding and where no wiring is claimed -------------------------------------------------------------


def test_a_batch_norm_is_folded_forward_into_the_next_kernel(keras):
    """Effective slice W_b[:, :, c, d] * gamma_c / sqrt(var_c + eps): in units of a's own output."""
    from atlasgen.model.wiring import Link, LayerWiring, model_wiring

    model = build_wired_cnn(keras)
    wiring = model_wiring(model)
    scale = GAMMA / np.sqrt(VARIANCE + EPSILON)
    link = wiring.feeds["b"]
    assert isinstance(link, Link) and (link.source, link.folded) == ("a", ("bn",))
    assert np.allclose(link.scale, scale) and wiring.fed["a"] == link
    folded = np.asarray(model.get_layer("b").kernel, dtype=np.float64) * scale[None, None, :, None]
    for d in range(4):
        record = LayerWiring(model, wiring, "b").unit(d, 2)
        assert record["folded"] == {"inputs": ["bn"]}
        assert_links(record["inputs"], expected_links(folded, d, 2), "a")
        assert_links(record["inhibitors"], expected_links(folded, d, 2, lowest=True), "a")
    # A negative gamma turns a's channel 1 round: an excitatory raw slice becomes an inhibitor.
    raw = np.asarray(model.get_layer("b").kernel, dtype=np.float64)
    flipped = [d for d in range(4) if raw[:, :, 1, d].sum() > 0]
    assert flipped
    for d in flipped:
        assert 1 in [e["filter"] for e in LayerWiring(model, wiring, "b").unit(d, 4)["inhibitors"]]
    # Seen from a: what each of its filters excites in b, through the same fold.
    outputs = LayerWiring(model, wiring, "a").unit(0, 4)
    assert outputs["folded"] == {"outputs": ["bn"]}
    assert_links(outputs["outputs"], expected_links(folded, 0, 4, outgoing=True), "b")


def test_several_per_channel_scales_multiply(keras):
    from atlasgen.model.wiring import model_wiring

    L = keras.layers
    image = keras.Input((None, None, 3))
    x = L.Conv2D(2, 3, name="a")(image)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Rescaling(0.5, name="half")(x)
    x = L.Dropout(0.3, name="drop")(x)
    x = L.Conv2D(2, 1, name="b")(x)
    model = keras.Model(image, x)
    bn = model.get_layer("bn")
    bn.set_weights([np.array([3.0, -2.0]), np.zeros(2), np.zeros(2), np.array([1.0, 4.0])])
    link = model_wiring(model).feeds["b"]
    assert link.folded == ("bn", "half")
    assert np.allclose(link.scale, np.array([3.0, -2.0]) / np.sqrt(np.array([1.0, 4.0]) + bn.epsilon) * 0.5)


def test_a_residual_add_gets_wiring_only_along_its_single_chain(custom_cnn):
    """The tests' small CNN (support.build_custom_cnn): pool -> res_conv is a single chain; res_conv's
    output and head's input pass the Add, so they are refused, each with its reason."""
    from atlasgen.model.wiring import Link, LayerWiring, model_wiring

    wiring = model_wiring(custom_cnn)
    assert wiring.feeds["dilated"] == Link("c1", "dilated") and wiring.fed["c1"] == Link("c1", "dilated")
    assert wiring.feeds["res_conv"] == Link("strided_same", "res_conv")  # through pad and pool
    assert wiring.fed["strided_same"] == Link("strided_same", "res_conv")  # the add beside it takes nothing away
    assert wiring.feeds["head"] == ("its input comes through add (Add), which merges 2 tensors: no single chain from "
                                    "one conv layer")
    assert wiring.fed["res_conv"] == "its output goes on through add (Add), which merges 2 tensors"
    record = LayerWiring(custom_cnn, wiring, "head").unit(0, K)
    assert record["inputs"] == record["inhibitors"] == [] and "source" not in record
    assert "add (Add)" in record["unclaimed"]["inputs"] and "\n" not in record["unclaimed"]["inputs"]


def test_a_depthwise_conv_is_a_conv_layer_of_its_own_whose_inputs_are_not_claimed(keras):
    # Its channels are units of the atlas: what it feeds is wired from them; what feeds it is not claimed.
    from atlasgen.model.wiring import Link, model_wiring

    L = keras.layers
    image = keras.Input((None, None, 3))
    a = L.Conv2D(4, 3, name="a")(image)
    b = L.Conv2D(2, 1, name="b")(L.DepthwiseConv2D(3, name="mid")(a))
    wiring = model_wiring(keras.Model(image, b))
    assert wiring.feeds["mid"] == "it is a DepthwiseConv2D: each filter reads one channel, or mixes them after a depthwise step"
    assert isinstance(wiring.feeds["b"], Link) and wiring.feeds["b"].source == "mid"
    assert isinstance(wiring.fed["a"], str) and "mid" in wiring.fed["a"]


@pytest.mark.parametrize("between, reason", [
    ("dense", "its input comes through mid (Dense), which mixes channels (a dense layer)"),
    ("softmax", "its input comes through mid (Activation), which mixes channels (a softmax)"),
    ("layernorm", "its input comes through mid (LayerNormalization), which is not known to act on each channel alone"),
    ("concatenate", "its input comes through mid (Concatenate), which merges 2 tensors"),
])
def test_what_mixes_channels_between_two_convs_is_named(keras, between, reason):
    from atlasgen.model.wiring import model_wiring

    L = keras.layers
    image = keras.Input((None, None, 3))
    a = L.Conv2D(4, 3, name="a")(image)
    mid = {"dense": lambda: L.Dense(4, name="mid")(a),
           "softmax": lambda: L.Activation("softmax", name="mid")(a),
           "layernorm": lambda: L.LayerNormalization(name="mid")(a),
           "concatenate": lambda: L.Concatenate(name="mid")([a, a])}[between]()
    b = L.Conv2D(2, 1, name="b")(mid)
    wiring = model_wiring(keras.Model(image, b))
    assert wiring.feeds["b"].startswith(reason), wiring.feeds["b"]
    assert isinstance(wiring.fed["a"], str) and "mid" in wiring.fed["a"]


def test_a_fork_to_two_convs_and_a_grouped_conv_are_refused(keras):
    from atlasgen.model.wiring import model_wiring

    L = keras.layers
    image = keras.Input((None, None, 3))
    a = L.Conv2D(4, 3, name="a")(image)
    one, two = L.Conv2D(2, 1, name="one")(a), L.Conv2D(4, 1, groups=2, name="two")(a)
    wiring = model_wiring(keras.Model(image, [one, two]))
    assert wiring.fed["a"] == "it feeds 2 conv layers (one, two): no single next layer"
    assert wiring.feeds["two"].startswith("it is a grouped convolution (2 groups)")


# --- atlas.json ---------------------------------------------------------------------------------------


def wiring_record(**changes) -> dict:
    link = {"layer": "block1_conv1", "filter": 3, "weight": 0.5, "norm": 0.4, "slice": [[0.1] * 3] * 3}
    record = {"k": 2, "source": {"name": "block1_conv1", "filters": 4}, "target": None,
              "inputs": [link, {**link, "filter": 1, "weight": 0.25}], "inhibitors": [{**link, "weight": -0.5}],
              "outputs": [], "unclaimed": {"outputs": "no conv layer comes after it"}, "folded": {}}
    record.update(changes)
    return record


def manifest_with_wiring(record: dict) -> dict:
    manifest = synthetic_manifest([("block1_conv1", 4), ("block2_conv1", 2)], size=64)
    manifest["layers"][1]["units"][0]["wiring"] = record
    return manifest


def test_a_manifest_s_wiring_is_checked_field_by_field():
    from atlasgen.manifest import Manifest, ManifestError

    read = Manifest.from_json(manifest_with_wiring(wiring_record()))
    wiring = read.layers[1].units[0].wiring
    assert [link.filter for link in wiring.inputs] == [3, 1] and wiring.target is None
    assert read.layers[0].units[0].wiring is None  # optional: an older atlas.json has none
    link = wiring_record()["inputs"][0]
    bad = [
        (wiring_record(inputs=[{**link, "filter": 4}]), "inputs[0].filter", "below the 4 filters of block1_conv1"),
        (wiring_record(inputs=[{**link, "slice": [[1, 2], [3]]}]), "inputs[0].slice", "rectangle"),
        (wiring_record(inputs=[{**link, "slice": []}]), "inputs[0].slice", "rectangle"),
        (wiring_record(inputs=[link, {**link, "filter": 1, "slice": [[0.1] * 2] * 3}]), "inputs[1].slice", "3 × 3"),
        (wiring_record(inputs=[{**link, "layer": "block1_conv2"}]), "inputs[0].layer", "source layer"),
        (wiring_record(inputs=[{**link, "weight": 0.1}, link]), "inputs[1].weight", "strongest first"),
        (wiring_record(inhibitors=[link]), "inhibitors[0].weight", "negative"),
        (wiring_record(inputs=[link, link]), "wiring.inputs", "distinct filters"),
        (wiring_record(k=1), "wiring.inputs", "at most k = 1"),
        (wiring_record(unclaimed={}), "unclaimed.outputs", "a reason exactly when"),
        (wiring_record(unclaimed={"outputs": "two\nlines"}), "unclaimed.outputs", "one line"),
        (wiring_record(source={"name": "block1_conv1", "filters": 64}), "wiring.source.filters", "4, the filters"),
        (wiring_record(inputs=[{**link, "norm": -1}]), "inputs[0].norm", "at least 0"),
    ]
    for record, where, expected in bad:
        with pytest.raises(ManifestError) as raised:
            Manifest.from_json(manifest_with_wiring(record))
        message = str(raised.value)
        assert where in message and expected in message and "\n" not in message, message


# --- pages and figures --------------------------------------------------------------------------------


class Links(HTMLParser):
    """Every href and src of a page, and whether it is inside the wiring section or grid."""

    def __init__(self):
        super().__init__()
        self.inside, self.depth, self.links, self.styles = False, 0, [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("section", "div") and (attrs.get("class") == "wiring" or attrs.get("id") == "view-wiring"):
            self.inside, self.depth = True, 0
        if self.inside:
            self.depth += tag in ("section", "div")
            self.styles += "style" in attrs
            self.links += [attrs[name] for name in ("href", "src") if attrs.get(name)]

    def handle_endtag(self, tag):
        if self.inside and tag in ("section", "div"):
            self.depth -= 1
            self.inside = self.depth > 0


def wiring_links(page: Path) -> tuple[list[Path], int]:
    parser = Links()
    parser.feed(page.read_text())
    return [(page.parent / link.split("#")[0]).resolve() for link in parser.links], parser.styles


@pytest.fixture(scope="module")
def wired_atlas(tmp_path_factory, worker_id, keras):
    """The wired CNN, saved as .keras and built with --weights FILE.keras: every filter of a, b, c and
    head at 32 px and 2 steps, once for the run (conftest.build_once)."""
    from conftest import build_once

    path = tmp_path_factory.mktemp("wired") / "wired_cnn.keras"
    build_wired_cnn(keras).save(path)
    config = build_once(tmp_path_factory, worker_id, "wired-atlas", weights=str(path), layers=("a", "b", "c", "head"),
                        filters="all", steps=2)
    name = next(p.parent.name for p in config.out.glob("*/atlas.json"))
    return config, config.out / name


def test_a_keras_model_s_atlas_has_folded_and_unclaimed_wiring(wired_atlas, keras):
    _, home = wired_atlas
    atlas = json.loads((home / "atlas.json").read_text())
    units = {layer["name"]: layer["units"] for layer in atlas["layers"]}
    model = build_wired_cnn(keras)
    folded = np.asarray(model.get_layer("b").kernel, dtype=np.float64) * (GAMMA / np.sqrt(VARIANCE + EPSILON))[None, None, :, None]
    for unit in units["b"]:
        wiring = unit["wiring"]
        assert wiring["folded"] == {"inputs": ["bn"]} and wiring["target"] == {"name": "c", "filters": 4}
        assert_links(wiring["inputs"], expected_links(folded, unit["index"]), "a")
        assert all(len(link["slice"]) == 3 and len(link["slice"][0]) == 2 for link in wiring["outputs"])  # c's 3 x 2
    for unit in units["a"]:
        assert unit["wiring"]["unclaimed"] == {"inputs": "it reads the image: its kernel weighs pixels, not filters"}
    assert all("add (Add)" in u["wiring"]["unclaimed"]["outputs"] for u in units["c"])
    assert all("add (Add)" in u["wiring"]["unclaimed"]["inputs"] for u in units["head"])
    page = (home / "head" / "0" / "index.html").read_text()
    assert "No inputs or inhibitors are claimed: its input comes through add (Add), which merges 2 tensors" in page


def test_every_wiring_link_of_a_built_site_resolves(wired_atlas, built_atlas):
    """Both atlases: the wired CNN's, where every linked filter is built, and the HED trunk's
    (block1_conv1 and block2_conv1), whose linked filters are mostly not: named, never linked."""
    _, home = wired_atlas
    linked = 0
    for root in (home, built_atlas.out / HED_ATLAS):
        atlas = json.loads((root / "atlas.json").read_text())
        for layer in atlas["layers"]:
            pages = [root.parent / unit["page"] / "index.html" for unit in layer["units"]]
            assert all('<section class="wiring"' in page.read_text() for page in pages)  # the first layer's too
            for page in pages + [root.parent / layer["path"] / "index.html"]:
                links, styles = wiring_links(page)
                assert styles == 0  # no inline style: CSS classes only
                for target in links:
                    assert target.is_file(), (page, target)
                linked += sum(t.name == "index.html" for t in links)
    assert linked > 30  # the wired CNN's pages link to each other's pages, both ways
    b0 = (home / "b" / "0" / "index.html").read_text()
    assert re.search(r'href="\.\./\.\./\.\./[^"]+/a/\d/index\.html"', b0)  # page-relative, like the rest
    grid = (home / "b" / "index.html").read_text()
    assert 'id="view-wiring"' in grid and "strongest inputs from a" in grid
    hed = (built_atlas.out / HED_ATLAS / "block2_conv1" / "1" / "index.html").read_text()
    assert "block1_conv2" in hed and "not in this atlas" in hed


def test_a_filter_not_in_the_atlas_is_named_not_linked(tmp_path):
    """On a synthetic atlas: block2_conv1 filter 0's inputs are block1_conv1 3 (built) and 1 (not)."""
    from atlasgen.site.render import render_site

    manifest = manifest_with_wiring(wiring_record())
    manifest["layers"][0]["units"] = [u for u in manifest["layers"][0]["units"] if u["index"] != 1]
    write_manifest(tmp_path, manifest)
    render_site(tmp_path)
    page = tmp_path / "vgg16" / "block2_conv1" / "0" / "index.html"
    text = page.read_text()
    section = text[text.index('<section class="wiring"'):text.index("</section>", text.index('<section class="wiring"'))]
    assert 'href="../../../vgg16/block1_conv1/3/index.html"' in section
    assert "block1_conv1/1/" not in section and section.count("not in this atlas") == 1
    assert "No outputs are claimed: no conv layer comes after it." in section
    assert section.count('<rect class="w') == 3 * 9 + 11  # three 3 x 3 slices and the colour key
    links, styles = wiring_links(page)
    assert styles == 0 and all(target.is_file() for target in links if target.suffix == ".html")
    # The other filters have no wiring (an older atlas.json): no section, and no wiring tab on their layer.
    assert '<section class="wiring"' not in (tmp_path / "vgg16" / "block2_conv1" / "1" / "index.html").read_text()
    assert 'id="view-wiring"' not in (tmp_path / "vgg16" / "block2_conv1" / "index.html").read_text()


def test_the_figure_draws_each_filter_with_its_inputs(wired_atlas, built_atlas, tmp_path, cli, one_line_error):
    from atlasgen.site.figure import make_figure

    config, home = wired_atlas
    result = make_figure(config.out, [f"{home.name}/b/0-1"], tmp_path / "wiring.svg", wiring=True)
    svg = (tmp_path / "wiring.svg").read_text()
    atlas = json.loads((home / "atlas.json").read_text())
    b0 = atlas["layers"][1]["units"][0]["wiring"]["inputs"]
    assert result.columns == ("wiring",) and result.rows[0].layer == "b"
    assert f"a/{b0[0]['filter']}" in result.labels and f"{b0[0]['weight']:+.3g}" in result.labels
    assert f"{b0[0]['weight']:+.3g}" in svg and "input 1" in svg and "not built" not in svg  # a's filters are built
    assert result.images == svg.count("<image")
    # The HED atlas: block2_conv1's inputs are block1_conv2's filters, not built: empty boxes that say so.
    made = cli("figure", "--out", built_atlas.out, "block2_conv1/0", "--wiring", "-o", tmp_path / "hed.pdf")
    assert made.returncode == 0 and "1 filters each with its inputs (wiring)" in made.stdout, made.stderr
    assert (tmp_path / "hed.pdf").read_bytes().startswith(b"%PDF")
    hed = make_figure(built_atlas.out, ["block2_conv1/0"], tmp_path / "hed.svg", wiring=True)
    inputs = json.loads((built_atlas.out / HED_ATLAS / "atlas.json").read_text())["layers"][1]["units"][0]["wiring"]["inputs"]
    assert inputs and hed.images == 1 and hed.labels.count("not built") == len(inputs)
    one_line_error(cli("figure", "--out", built_atlas.out, "block1_conv1/0", "--wiring", "-o", tmp_path / "x.pdf"),
                   "block1_conv1/0 has no inputs to draw: it reads the image")
    one_line_error(cli("figure", "--out", built_atlas.out, "block2_conv1/0", "--wiring", "--columns", "channel",
                       "-o", tmp_path / "x.pdf"), "give --wiring or --columns, not both")
    assert not (tmp_path / "x.pdf").exists()


def test_the_figure_refuses_an_atlas_built_before_wiring(tmp_path, cli, one_line_error):
    write_manifest(tmp_path, synthetic_manifest([("block1_conv1", 2), ("block2_conv1", 2)], size=64))
    one_line_error(cli("figure", "--out", tmp_path, "block2_conv1/0", "--wiring", "-o", tmp_path / "x.pdf"),
                   "has no wiring for block2_conv1/0", "run atlasgen build again")


def test_k_is_a_plan_option_and_only_the_wiring_follows_it(built_atlas):
    """--wiring-k: every filter's wiring again, and nothing else (the atlas was built with the default 6)."""
    import dataclasses

    from atlasgen.build.config import BuildConfig
    from atlasgen.build.run import build_status

    assert BuildConfig(preset="quick").resolved().wiring_k == K
    assert build_status(built_atlas)["missing"] == 0
    report = build_status(dataclasses.replace(built_atlas, wiring_k=3))
    assert report["missing"] == 6  # 2 layers x filters 0-2
    assert all(counts["wiring"] == {"planned": 3, "missing": 3} for counts in report["layers"].values())
