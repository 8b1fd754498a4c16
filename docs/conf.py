"""Sphinx configuration of nbcall's documentation site (``scripts/docs.sh`` builds it, ``sphinx-build -W``).

The build downloads nothing: no intersphinx inventories, the theme's assets come with furo, and myst-nb renders
the lessons as they are (executed copies from the browser test when present, else the stored notebooks: see
:func:`copy_lessons`), never running them.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

# The installed nbcall (``pip install -e '.[docs]'`` installs this tree, its browser bundle built): importing the
# source tree itself would need the bundle, which only an install builds.
import nbcall

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

project = "nbcall"
author = "the nbcall developers"
copyright = "the nbcall developers"
release = version = nbcall.__version__

extensions = [
    "myst_nb",  # Markdown pages (myst-parser, which it loads) and the lesson notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the numpy-style Parameters / Raises / Returns sections of the docstrings
    "sphinx.ext.viewcode",
    "sphinxarg.ext",  # the CLI reference, from nbcall.cli.parser()
]

# -- sources ---------------------------------------------------------------------------------------------------
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# Options and code stay as typed: no "--token" turned into an en dash, no curly quotes in help texts.
smartquotes = False
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
# Two lessons go from a title to ### sections on purpose (numbered steps under an unnumbered part).
suppress_warnings = ["myst.header"]
# "Deployment" in one page links to another's heading as [text](page.md#deployment).
myst_heading_anchors = 3

# -- notebooks: rendered, never executed ------------------------------------------------------------------------
nb_execution_mode = "off"
# A phone's output cell holds a widget view: without the page's JavaScript it cannot show, so its text stands in.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_merge_streams = True

# -- API reference ------------------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# The sibling modules' names appear in type hints without being documented pages of their own.
nitpicky = False


def class_signature(app, what, name, obj, options, signature, return_annotation):
    """A widget's or peer's class shows the arguments of its ``__init__``: traitlets' ``HasTraits.__new__``
    (``*args, **kwargs``) would stand in for them otherwise."""
    if what in ("class", "exception") and signature == "(*args, **kwargs)" and "__init__" in vars(obj):
        parameters = list(inspect.signature(obj.__init__).parameters.values())[1:]
        # The types are in the Parameters section (autodoc_typehints = "description").
        bare = [p.replace(annotation=inspect.Parameter.empty) for p in parameters]
        return str(inspect.Signature(bare)), return_annotation
    return None


def setup(app):
    app.connect("autodoc-process-signature", class_signature)
    app.connect("builder-inited", lambda app: copy_lessons())


# -- HTML -----------------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"nbcall {version}"
html_static_path = ["_static"]
html_show_sourcelink = False

# -- the course -----------------------------------------------------------------------------------------------------
NOTEBOOKS = ROOT / "notebooks"
#: Where tests/e2e/test_notebooks.py saves each lesson as it ran in the browser (git-ignored).
EXECUTED = ROOT / "test-artifacts" / "notebooks"
LESSONS = DOCS / "course" / "lessons"


def copy_lessons() -> None:
    """Put every lesson into docs/course/lessons/ (git-ignored) for myst-nb: the copy the browser test saved
    with its outputs when there is one, else the stored notebook; each opens with where its notebook is."""
    LESSONS.mkdir(parents=True, exist_ok=True)
    for old in LESSONS.glob("*.ipynb"):
        old.unlink()
    for stored in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        executed = EXECUTED / stored.name
        source = executed if executed.exists() else stored
        notebook = json.loads(source.read_text())
        shown = (
            "as it ran in a real browser in the project's tests, outputs included"
            if source is executed
            else "without outputs (run it to see them)"
        )
        intro = (
            f"```{{note}}\nThis page is the lesson notebook `notebooks/{stored.name}`, shown {shown}. "
            f"Download it: {{download}}`{stored.name} <../../../notebooks/{stored.name}>`, or run every "
            "lesson in JupyterLab with `scripts/lab.sh` ([Getting started](../../getting-started.md)).\n```"
        )
        note = {"cell_type": "markdown", "metadata": {}, "source": intro}
        if (notebook["nbformat"], notebook["nbformat_minor"]) >= (4, 5):
            note["id"] = "nbcall-lesson-source"
        notebook["cells"].insert(1, note)
        (LESSONS / stored.name).write_text(json.dumps(notebook, indent=1))
