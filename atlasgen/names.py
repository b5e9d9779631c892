"""URL-safe names: the path segments of every page and image, which published links depend on."""

from __future__ import annotations

import hashlib
import re


def safe_name(text: str) -> str:
    """A name fit to be one URL path segment: letters, digits, '-', '_' and '.', never '.' or '..'.

    A name that is already safe stays as it is (published links depend on it). One that had to be
    cleaned gets a short hash of the real name, so two names that clean alike ('a b', 'a-b') stay apart."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", text) and not text.endswith("."):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "name"
    return f"{cleaned[:80]}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


def layer_folder(model: str, layer: str) -> str:
    """The permanent, page-relative folder of one layer: <model>/<layer>/."""
    return f"{safe_name(model)}/{safe_name(layer)}/"


def unit_folder(model: str, layer: str, filter_id: int) -> str:
    """The permanent, page-relative folder of one filter: <model>/<layer>/<filter>/."""
    return f"{layer_folder(model, layer)}{filter_id}/"


def probe_image(probe: str) -> str:
    """Where a probe photo lives in the site."""
    return f"probes/{safe_name(probe)}.webp"
