"""A wheel installed without the repository builds and renders an atlas.

The wheel is built (pip wheel --no-build-isolation, offline) from a copy of the checkout's files
(git ls-files: tracked, plus untracked files git does not ignore), not from the checkout itself:
setuptools stages everything in build/lib and packs whatever an earlier build left there, so a wheel
built in place can carry a template or module that pyproject.toml no longer ships and pass for the
wrong reason (and building in place writes build/ and atlasgen.egg-info into the working tree).

The wheel is installed with pip --target into a folder of its own and run from an empty folder under
`python -S`, with PYTHONPATH = that folder, then this environment's site-packages (TensorFlow and the
other dependencies). -S skips the .pth files, among them the editable install's finder: that finder
sits behind the ordinary path finder, so with a plain PYTHONPATH the installed copy would win for
every module it has, and the finder would still quietly serve from the checkout any module or
subpackage the wheel lacks.
"""

from __future__ import annotations

import pytest

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs inside the installed copy: argv[1] is the install folder.
BUILD_SCRIPT = r"""
import sys
from pathlib import Path

target = Path(sys.argv[1]).resolve()


def installed(path) -> bool:
    return Path(path).resolve().is_relative_to(target)


import atlasgen
import atlasgen.cli
import atlasgen.site.render

print("atlasgen from", atlasgen.__file__)
assert installed(atlasgen.__file__), f"atlasgen imported from {atlasgen.__file__}, not from {target}"
assert installed(atlasgen.site.render.templates_dir()), f"templates from {atlasgen.site.render.templates_dir()}"

atlasgen.cli.main(["build", "--preset", "quick", "--layers", "block1_conv1", "--filters", "0", "--size", "32",
                   "--steps", "2", "--store", "S", "--out", "O"])

stray = {name: module.__file__ for name, module in sys.modules.items()
         if name.partition(".")[0] == "atlasgen" and getattr(module, "__file__", None)
         and not installed(module.__file__)}
assert not stray, f"atlasgen modules imported from outside {target}: {stray}"
"""

BASE_URL = "https://example.org/atlas/"
PAGES = ["index.html", "static/atlas.css", "vgg16-hed-bsds500/block1_conv1/0/index.html"]


def copy_sources(destination: Path) -> None:
    """The files a commit of the working tree would hold: tracked ones that exist, and untracked ones
    git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def pip(*args: str | Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *map(str, args), "--no-index", "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def installed_env(target: Path) -> dict[str, str]:
    """PYTHONPATH: the installed copy first, then this environment's site-packages, never the checkout."""
    site_packages = list(dict.fromkeys(p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")))
    assert site_packages, sys.path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), *site_packages])
    return env


@pytest.mark.slow
def test_installed_wheel_builds_and_renders_an_atlas(tmp_path):
    source, wheels, target, work = (tmp_path / name for name in ("source", "wheels", "target", "work"))
    for folder in (source, wheels, work):
        folder.mkdir()
    copy_sources(source)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source)
    (wheel,) = wheels.glob("atlasgen-*.whl")
    pip("install", "--no-deps", "--target", target, wheel)
    env = installed_env(target)

    built = subprocess.run([sys.executable, "-S", "-c", BUILD_SCRIPT, str(target)],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert f"atlasgen from {target}" in built.stdout, built.stdout
    out = work / "O"
    for page in PAGES:
        assert (out / page).is_file(), page
        (out / page).unlink()  # render must write them again

    # render through the console script the wheel installs ([project.scripts] atlasgen = atlasgen.cli:main);
    # with a base URL, so that sitemap.xml (the one .xml template) is rendered too.
    rendered = subprocess.run([sys.executable, "-S", str(target / "bin" / "atlasgen"), "render", "--out", "O",
                               "--base-url", BASE_URL], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert "site: 5 pages, 1 filters" in rendered.stdout, rendered.stdout
    for page in [*PAGES, "404.html", "sitemap.xml"]:
        assert (out / page).is_file(), page
    assert "block1_conv1" in (out / "vgg16-hed-bsds500/block1_conv1/0/index.html").read_text()
    assert BASE_URL + "vgg16-hed-bsds500/block1_conv1/0/" in (out / "sitemap.xml").read_text()
