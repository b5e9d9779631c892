"""The atlases in an output folder: each `<name>/atlas.json`, read through its typed records and checked
against its own folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from atlasgen.manifest import MANIFEST, Manifest, ManifestError, load_manifest


def atlas_folders(out: Path) -> list[str]:
    """The atlases in an output folder: every subfolder (not a link) that holds a regular atlas.json."""
    try:
        with os.scandir(out) as entries:
            names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        raise ManifestError(f"{out} does not exist; run `atlasgen build --out {out}` first") from None
    except OSError as exc:
        raise ManifestError(f"{out} cannot be read ({exc.strerror}); check its permissions") from None
    return [name for name in names if os.path.lexists(out / name / MANIFEST)]


def load_atlas(out: Path, name: str) -> Manifest:
    """The atlas in `out/name`, checked against its schema and its folder: its name and every page are its own."""
    atlas = load_manifest(out / name)
    if atlas.name != name or any(not path.startswith(f"{name}/") for path in _paths(atlas)):
        raise ManifestError(f"{out / name / MANIFEST} names pages outside its folder {name}/; rebuild with atlasgen build")
    return atlas


def load_atlases(out: Path) -> list[Manifest]:
    """Every atlas in `out`, each checked against its schema and against its own folder."""
    atlases = [load_atlas(out, name) for name in atlas_folders(out)]
    if not atlases:
        raise ManifestError(f"{out} holds no atlas (no <name>/{MANIFEST}); run `atlasgen build --out {out}` first")
    return atlases


@dataclass(frozen=True)
class ModelGroup:
    """The atlases of one model in an output folder, as the root page lists them."""

    model: str
    atlases: list[Manifest]  # trained weights before random ones, then by name

    @property
    def random_only(self) -> bool:
        return all(is_random(atlas) for atlas in self.atlases)


def is_random(atlas: Manifest) -> bool:
    """Whether an atlas shows untrained weights (`--weights random`): its filters mean nothing learnt."""
    return atlas.weights.source == "random"


def by_model(atlases: list[Manifest]) -> list[ModelGroup]:
    """The atlases grouped by their model, the models in name order; in each group trained weights
    come before random ones, then atlases by name."""
    groups: dict[str, list[Manifest]] = {}
    for atlas in atlases:
        groups.setdefault(atlas.model, []).append(atlas)
    return [ModelGroup(model, sorted(members, key=lambda a: (is_random(a), a.name)))
            for model, members in sorted(groups.items(), key=lambda item: item[0].lower())]


def _paths(atlas: Manifest):
    yield from (p.image for p in atlas.probes)
    for layer in atlas.layers:
        yield layer.path
        yield from (unit.page for unit in layer.units)
