"""Sphinx configuration of the mnist-lab website (`make site` builds it into build/site/).

Sphinx with myst-nb reads the committed notebooks and shows their saved outputs without running
them (`nb_execution_mode = "off"`). Everything the pages load is served from build/site/ itself:
the theme's CSS, JS and fonts come with its PyPI package, and MathJax 3 is copied from the
`sphinx-mathjax-offline` package instead of being fetched from a CDN.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS.parent)]  # our extensions; this checkout's mnist_lab

project = "mnist-lab"
author = "the mnist-lab authors"
copyright = "2026, the mnist-lab authors"

extensions = [
    "myst_nb",  # Markdown pages and notebooks
    "sphinx.ext.autodoc",  # the API page, from docstrings
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax, mathjax_path set to it
    "notebook_pages",  # device, date and download link on each notebook page; no broken widget bars
    "package_api",  # the API page's modules, found at build time
]

# notebooks/ is a link to the repository's notebooks folder; smoke/ holds CI parameter files only.
# sweep-*, bench-*: results of `mnist-lab batch` sweeps and `mnist-lab bench` runs that the README shows, not pages
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "notebooks/smoke", "sweep-*", "bench-*"]

# The committed outputs are the real runs: show them, never execute anything.
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {}  # no widget JavaScript from a CDN (widget outputs are dropped, see notebook_pages)
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True  # $$...$$ right under a line of text is display maths, as in JupyterLab
myst_heading_anchors = 3

package_api_package = "mnist_lab"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True  # `log=print`, not `log=<built-in function print>`
autodoc_inherit_docstrings = False  # not torch's "Define the computation performed at every call" on every forward()
toc_object_entries = False  # the API page's side bar lists its modules, not every function
smartquotes = False  # keep "--out" and quotes in docstrings and READMEs as typed
default_role = "py:obj"  # `name` in a docstring links when Sphinx knows it, else shows as code

html_theme = "sphinx_book_theme"
html_title = "mnist-lab"
html_static_path = ["_static"]
templates_path = ["_templates"]
html_css_files = ["site.css"]
html_show_sourcelink = False
html_last_updated_fmt = None
html_context = {"default_mode": "light"}  # the figures are drawn on white, as in JupyterLab
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
}
