"""Sphinx extension: the book's formulas render without a network connection.

Sphinx loads MathJax from a CDN by default, so a book built and read offline shows raw TeX. This
extension serves MathJax from the build itself: it copies the MathJax 2.7 that the
``jupyter-server-mathjax`` package ships (Apache-2.0, the copy Jupyter itself serves) into
``_static/mathjax/`` and points ``mathjax_path`` there, with the STIX-Web fonts the package ships.
MathJax 2 reads the ``\\(…\\)`` and ``\\[…\\]`` delimiters that MyST writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jupyter_server_mathjax
from sphinx.application import Sphinx
from sphinx.config import Config

MATHJAX = Path(jupyter_server_mathjax.__file__).parent / "static"
TARGET = "mathjax"  # under the build's _static/
CONFIG = "TeX-AMS-MML_HTMLorMML-full"  # MathJax 2's combined configuration, shipped with the package
# The package ships the STIX-Web fonts only (as Jupyter configures it): use them, never look for others.
FONTS = {"HTML-CSS": {"availableFonts": [], "preferredFont": None, "imageFont": None, "webFont": "STIX-Web"}}


def use_local_mathjax(app: Sphinx, config: Config) -> None:
    """Point ``mathjax_path`` (relative to ``_static``) at the copy `copy_mathjax` makes."""
    config.mathjax_path = f"{TARGET}/MathJax.js?config={CONFIG}"
    config.mathjax2_config = FONTS
    config.mathjax3_config = None  # a MathJax 3 configuration would be read by MathJax 2 as its own
    config.myst_update_mathjax = False  # nor may MyST write one


def copy_mathjax(app: Sphinx, error: Exception | None) -> None:
    """Copy MathJax into the built site's ``_static/mathjax`` once an HTML build succeeded."""
    if error is None and app.builder.format == "html":
        shutil.copytree(MATHJAX, Path(app.outdir) / "_static" / TARGET, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", use_local_mathjax)
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
