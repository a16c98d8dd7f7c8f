"""Sphinx configuration of the rendered book (``make book``, ``usmlite-edu book``).

``usmlite_edu.course.book`` stages the sources in ``build/book/src`` (the README as the front page,
the notebooks as the project's own runner executed them) and runs ``sphinx-build -c book``.
MyST-NB only renders: it never executes a notebook (``nb_execution_mode = "off"``), so the
series has one code path that runs it, ``usmlite_edu.course.notebook_runner``.

Where the repository is hosted (``BOOK_REPOSITORY_URL``, or GitHub Actions'
``GITHUB_SERVER_URL``/``GITHUB_REPOSITORY``), the pages get a link to it and Colab / Binder
launch buttons for each notebook (its page path is its path in the repository).
"""

from __future__ import annotations

import os

from docutils import nodes

project = "usmlite_edu"
author = "usmlite_edu contributors"
copyright = "usmlite_edu contributors, Apache-2.0"

# MathJax ships with the book (sphinx-mathjax-offline copies MathJax 3 into _static and
# points mathjax_path at it): an offline reader sees formulas, not raw \(...\)
extensions = ["myst_nb", "sphinx-mathjax-offline"]
# Rendering only: the notebooks arrive executed (usmlite_edu.course.book runs notebook_runner).
nb_execution_mode = "off"
nb_merge_streams = True
# An output that is both a live widget and a PNG (the explorer of notebook 10: a picture of
# its state) shows the PNG: a page has no kernel to run the widget (lower is preferred)
nb_mime_priority_overrides = [("html", "image/png", 5)]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
# The README's links to files of the repository (results/, notebooks/...) are not pages.
suppress_warnings = ["myst.xref_missing", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = "usmlite_edu: quantization- and sparsity-aware fine-tuning, in notebooks"
html_last_updated_fmt = None
html_static_path = ["_static"]  # book/_static, beside this file
html_css_files = ["usmlite.css"]  # long code and output lines wrap instead of being cut
html_copy_source = False  # the executed notebooks are downloadable from each page anyway


def _repository_url() -> str:
    if os.environ.get("BOOK_REPOSITORY_URL"):
        return os.environ["BOOK_REPOSITORY_URL"].rstrip("/")
    server, repo = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    return f"{server}/{repo}" if server and repo else ""


html_theme_options: dict = {"show_toc_level": 2, "use_download_button": True}
if os.environ.get("USMLITE_BOOK_FAST") == "1":  # set by usmlite_edu.course.book.sphinx_build
    html_theme_options["announcement"] = (
        "Fast-mode build: the notebooks ran at tiny sizes with a few training steps (the "
        "test command's mode), so trained-model results are not what a learner sees. "
        "The page About this build says how it was made."
    )
if _repository_url():
    html_theme_options |= {
        "repository_url": _repository_url(),
        "repository_branch": os.environ.get("BOOK_REPOSITORY_BRANCH", "main"),
        "path_to_docs": "",  # a page's path under the book's source is its path in the repo
        "use_repository_button": True,
        "launch_buttons": {
            "colab_url": "https://colab.research.google.com",
            "binderhub_url": "https://mybinder.org",
            "notebook_interface": "jupyterlab",
        },
    }


def _in_cell_output(node) -> bool:
    while node is not None:
        if "cell_output" in node.get("classes", []):
            return True
        node = node.parent
    return False


def _name_figures(app, doctree, docname: str) -> None:
    """Give each notebook figure an id, ``figure-1``, ``figure-2``, ... in page order.

    A link ``page.html#figure-2`` then scrolls to that figure (the screenshot test uses it,
    and a lecturer can point students at one plot).
    """
    if not docname.startswith("notebooks/"):
        return
    figures = [
        img
        for img in doctree.findall(nodes.image)
        if str(img.get("uri", "")).lower().endswith(".png") and _in_cell_output(img)
    ]
    for i, img in enumerate(figures, start=1):
        img["ids"] = [f"figure-{i}"]


def setup(app):
    app.connect("doctree-resolved", _name_figures)
    return {"parallel_read_safe": True}
