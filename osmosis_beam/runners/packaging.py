"""Packaging for remote workers: the osmosis-beam sdist that workers install (``--setup_file``).

Example::

    from osmosis_beam.runners.packaging import package_setup_file
    package_setup_file()      # this checkout's setup.py, or one written beside a copy of the installed package
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    WorkerOptions,
)

__all__ = ['package_setup_file', 'installed_package_setup', 'staging_args']

log = logging.getLogger(__name__)


def package_setup_file() -> str | None:
    """A ``setup.py`` that builds the osmosis-beam package workers install (``--setup_file``).

    The source tree's own when osmosis-beam runs from one (``pip install -e``); else one written beside a
    copy of the installed package, with its install requirements, in a temporary folder.
    """
    import osmosis_beam

    candidate = Path(osmosis_beam.__file__).resolve().parent.parent / "setup.py"
    try:
        project = candidate.with_name("pyproject.toml")
        if candidate.is_file() and project.is_file() and 'name = "osmosis-beam"' in project.read_text(encoding="utf-8"):
            return str(candidate)
    except OSError:
        pass
    try:
        return installed_package_setup()
    except OSError as exc:
        log.warning("could not prepare the osmosis-beam package for workers: %s", exc)
        return None


@functools.lru_cache(maxsize=None)
def installed_package_setup() -> str:
    import atexit
    import shutil
    import tempfile
    from importlib import metadata

    import osmosis_beam

    root = Path(tempfile.mkdtemp(prefix="osmosis-beam-package-"))
    atexit.register(shutil.rmtree, root, True)
    shutil.copytree(Path(osmosis_beam.__file__).resolve().parent, root / "osmosis_beam",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    try:
        requires = [r for r in metadata.requires("osmosis-beam") or () if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        requires = []
    (root / "setup.py").write_text(
        "from setuptools import find_packages, setup\n"
        f"setup(name='osmosis-beam', version={osmosis_beam.__version__!r}, "
        "packages=find_packages(include=['osmosis_beam', 'osmosis_beam.*']), "
        f"package_data={{'osmosis_beam': ['py.typed']}}, install_requires={requires!r})\n",
        encoding="utf-8",
    )
    return str(root / "setup.py")


def staging_args(runner: str, parsed: PipelineOptions, problems: list[str]) -> list[str]:
    """``--setup_file`` for workers that install staged packages (Docker and process environments)."""
    setup = parsed.view_as(SetupOptions)
    if setup.setup_file or parsed.view_as(WorkerOptions).sdk_container_image:
        return []  # the user's package build, or an image with osmosis-beam installed
    if any(Path(str(p)).name.startswith(("osmosis_beam", "osmosis-beam")) for p in setup.extra_packages or ()):
        return []
    found = package_setup_file()
    if found is None:
        problems.append(
            "the workers need the osmosis-beam package, and it could not be prepared here; pass "
            "--setup_file=/path/to/osmosis-beam/setup.py, or --extra_package=dist/osmosis_beam-VERSION.tar.gz "
            "(python -m build --sdist), or --sdk_container_image=IMAGE with osmosis-beam installed"
        )
        return []
    return [f"--setup_file={found}"]
