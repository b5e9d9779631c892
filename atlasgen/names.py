"""URL-safe names: the path segments of every page and image, which published links depend on."""

from __future__ import annotations

import hashlib
import os
import re

from atlasgen.errors import AtlasgenError


def safe_name(text: str) -> str:
    """A name fit to be one URL path segment: letters, digits, '-', '_' and '.', never '.' or '..'.

    A name that is already safe stays as it is (published links depend on it). One that had to be
    cleaned gets a short hash of the real name, so two names that clean alike ('a b', 'a-b') stay apart."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", text) and not text.endswith("."):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "name"
    return f"{cleaned[:80]}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


#: An atlas's folder: lower-case letters, digits and inner '-', at most 64 characters.
ATLAS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
#: Names the site's root already uses.
RESERVED_NAMES = frozenset({"static"})


def atlas_name(model: str, weights_source: str, fingerprint: str, name: str | None = None) -> str:
    """The first URL segment of every page of an atlas. Published links depend on it, so this rule
    never changes: `--name` if given; else the model for the ImageNet weights (`vgg16`), the model
    and `-hed-bsds500` for the offline trunk, the model and `-random` for random weights
    (`resnet50-random`), and the model and the weights fingerprint's first 8
    hex digits for a weights file (`vgg16-1a2b3c4d`)."""
    if name is not None:
        return check_atlas_name(name)
    model = re.sub(r"[^a-z0-9]+", "-", safe_name(model).lower()).strip("-")[:40] or "model"
    if weights_source == "imagenet":
        return model
    if weights_source == "hed-bsds500":
        return f"{model}-hed-bsds500"
    if weights_source == "random":
        return f"{model}-random"
    return f"{model}-{fingerprint[:8]}"


def check_atlas_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AtlasgenError("--name is empty; give a short slug such as vgg16-finetuned")
    if not ATLAS_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise AtlasgenError(
            f"--name {name[:40]!r} is not a slug of lower-case letters, digits and '-' (at most 64, not "
            f"{', '.join(sorted(RESERVED_NAMES))}); give e.g. vgg16-finetuned"
        )
    return name


def layer_folder(atlas: str, layer: str) -> str:
    """The permanent, page-relative folder of one layer: <atlas>/<layer>/."""
    return f"{safe_name(atlas)}/{safe_name(layer)}/"


def unit_folder(atlas: str, layer: str, filter_id: int) -> str:
    """The permanent, page-relative folder of one filter: <atlas>/<layer>/<filter>/."""
    return f"{layer_folder(atlas, layer)}{filter_id}/"


def probe_image(probe: str, atlas: str = "") -> str:
    """Where a probe photo lives in the site: in its atlas's folder."""
    return f"{atlas + '/' if atlas else ''}probes/{safe_name(probe)}.webp"


def display_name(name: str | bytes) -> str:
    """A file name as atlas.json, the pages and the log show it: its bytes decoded as UTF-8, each byte
    that is not valid UTF-8 written as \\xNN and a backslash as \\\\, so that every name the OS allows
    shows as valid text and two names never show alike (`bad\\xff.png` is the byte 0xff)."""
    raw = os.fsencode(name) if isinstance(name, str) else bytes(name)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
