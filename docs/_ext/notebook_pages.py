"""Sphinx extension: show each committed notebook as it ran, with where and when its outputs come from.

The notebooks are never executed here (``nb_execution_mode = "off"``): their committed outputs
are the real runs. Before myst-nb parses a notebook (Sphinx's ``source-read`` event) we

- drop widget outputs (tqdm's live progress bars): without the kernel they cannot render, and
  their text fallback is the bar's first frame, a stuck "0%";
- apply carriage returns as a terminal (and JupyterLab) does, and drop stream outputs left
  blank by that (tqdm clears its text bars with spaces and ``\\r``);
- insert, after the title, a note naming the device, torch version and seed (from the line
  ``mnist_lab.notebook.start`` prints), the date the outputs were committed (from git), and a
  download link to the notebook.

Only the text Sphinx reads is changed; the notebook file is left as it is.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util import logging

logger = logging.getLogger(__name__)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# The first line `mnist_lab.notebook.start` prints, e.g. "torch 2.11.0+cu130 on cuda (NVIDIA H100 80GB HBM3); seed 0".
START_LINE = re.compile(r"^torch (?P<torch>\S+) on (?P<device>.+); seed (?P<seed>-?\d+)$", re.M)


def _text(source: str | list[str]) -> str:
    """Notebook JSON stores text either as one string or as a list of lines."""
    return source if isinstance(source, str) else "".join(source)


def apply_carriage_returns(text: str) -> str:
    """What a terminal shows for `text`: on each line, ``\\r`` returns to its start and overwrites."""
    shown = []
    for line in text.split("\n"):
        screen = ""
        for part in line.split("\r"):
            screen = part + screen[len(part) :]
        shown.append(screen)
    return "\n".join(shown)


def clean_outputs(outputs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The outputs worth showing in a static page, and how many widget outputs were dropped.

    Consecutive stream outputs of the same name are merged before carriage returns are applied,
    since a progress bar writes its frames in many small outputs.
    """
    kept: list[dict[str, Any]] = []
    widgets = 0
    for output in outputs:
        if WIDGET_MIME in output.get("data", {}):
            widgets += 1
            continue
        if output["output_type"] == "stream":
            previous = kept[-1] if kept else None
            if previous and previous["output_type"] == "stream" and previous["name"] == output["name"]:
                previous["text"] = previous["text"] + _text(output["text"])
                continue
            output = {**output, "text": _text(output["text"])}
        kept.append(output)
    for output in kept:
        if output["output_type"] == "stream":
            output["text"] = apply_carriage_returns(output["text"])
    return [o for o in kept if o["output_type"] != "stream" or o["text"].strip()], widgets


@dataclass
class Provenance:
    """Where a notebook's committed outputs come from."""

    torch: str | None
    device: str | None
    seed: str | None
    date: str | None  # YYYY-MM-DD of the commit that last changed the outputs
    commit: str | None  # its short hash; None with `date` None too when git cannot tell
    uncommitted: bool = False  # the outputs on disk differ from the last committed ones


def start_line(notebook: dict[str, Any]) -> re.Match[str] | None:
    """The ``torch ... on DEVICE; seed S`` line of the first code cell that printed one."""
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                match = START_LINE.search(_text(output["text"]))
                if match:
                    return match
    return None


def outputs_of(notebook: dict[str, Any]) -> list[Any]:
    """Every code cell's outputs, in order: what changes when the notebook is run again."""
    return [cell.get("outputs", []) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _git(path: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout


def outputs_commit(path: Path) -> tuple[str | None, str | None, bool]:
    """(date, short hash) of the newest commit that changed the outputs of `path`, and whether
    the file on disk has outputs not committed yet. (None, None, ...) without git history."""
    path = path.resolve()
    log = _git(path, "log", "--format=%H %h %cs", "--", path.name)
    if not log:
        return None, None, log == ""  # "": a git checkout that never committed this notebook
    commits = [line.split() for line in log.splitlines()]
    versions = []
    for full, _short, _date in commits:
        shown = _git(path, "show", f"{full}:./{path.name}")
        versions.append(outputs_of(json.loads(shown)) if shown else None)
    on_disk = outputs_of(json.loads(path.read_text(encoding="utf-8")))
    uncommitted = on_disk != versions[0]
    # The outputs last changed in the oldest commit of the newest run of equal outputs.
    newest = 0
    while newest + 1 < len(versions) and versions[newest + 1] == versions[0]:
        newest += 1
    if newest == len(versions) - 1 and _git(path, "rev-parse", "--is-shallow-repository") == "true\n":
        return None, None, uncommitted  # a shallow clone: the change may lie in the missing history
    _full, short, date = commits[newest]
    return date, short, uncommitted


def provenance(path: Path, notebook: dict[str, Any]) -> Provenance:
    """Device, torch and seed from the notebook's own outputs; the date from git."""
    match = start_line(notebook)
    date, commit, uncommitted = outputs_commit(path)
    if match is None:
        return Provenance(None, None, None, date, commit, uncommitted)
    return Provenance(match["torch"], match["device"], match["seed"], date, commit, uncommitted)


def provenance_markdown(name: str, origin: Provenance, widgets: int) -> str:
    """The note shown under a notebook page's title."""
    if origin.device:
        where = f"run with torch {origin.torch} on **{origin.device}**, seed {origin.seed}"
    else:
        where = "from a run whose device the notebook does not print"
    if origin.uncommitted:
        when = "not committed yet (this build read the notebook as it is on disk)"
    elif origin.date:
        when = f"committed on **{origin.date}** (commit `{origin.commit}`)"
    else:
        when = "of unknown date (this copy's git history does not reach the commit that made them)"
    paragraphs = [
        f"This page shows the outputs saved in `notebooks/{name}`, not re-executed: {where}; outputs {when}.",
        f"{{download}}`Download the notebook <{name}>` to run it yourself (see *Two commands* on the "
        "{doc}`home page </index>`).",
    ]
    if widgets:
        paragraphs.append(
            f"Its {widgets} live progress bar{'s' if widgets > 1 else ''} (Jupyter widgets) "
            "cannot be shown on a static page and are left out."
        )
    head = ["```{admonition} Where these outputs come from", ":class: note notebook-provenance", ""]
    return "\n".join(head) + "\n\n".join(paragraphs) + "\n```\n"


def insert_after_title(cells: list[dict[str, Any]], note: dict[str, Any]) -> None:
    """Put `note` right under the notebook's ``# Title`` line (splitting that cell), else first."""
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        title, _, rest = _text(cell["source"]).partition("\n")
        if not title.startswith("# "):
            break
        cells[i] = {**cell, "source": title + "\n"}
        rest_cell = {**cell, "source": rest}
        if "id" in cell:  # nbformat 4.5 cell ids must stay unique
            rest_cell["id"] = cell["id"] + "-body"
        cells[i + 1 : i + 1] = [note] + ([rest_cell] if rest.strip() else [])
        return
    cells.insert(0, note)


def prepare_notebook(source: str, path: Path) -> str:
    """The notebook text myst-nb should render (see the module docstring)."""
    notebook = json.loads(source)
    origin = provenance(path, notebook)  # before cleaning: read from the outputs as committed
    if origin.device is None:
        logger.warning("%s prints no 'torch ... on DEVICE; seed S' line (mnist_lab.notebook.start)", path.name)
    widgets = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], dropped = clean_outputs(cell.get("outputs", []))
            widgets += dropped
    note = {"cell_type": "markdown", "metadata": {}, "source": provenance_markdown(path.name, origin, widgets)}
    if any("id" in cell for cell in notebook["cells"]):  # nbformat >= 4.5: every cell has an id
        note["id"] = "provenance-note"
    insert_after_title(notebook["cells"], note)
    return json.dumps(notebook)


def _on_source_read(app, docname: str, source: list[str]) -> None:
    path = Path(app.env.doc2path(docname))
    if path.suffix == ".ipynb":
        source[0] = prepare_notebook(source[0], path)


def _link_notebook_names(app, doctree, docname: str) -> None:
    """Make every ``01_name`` (or ``01_name.ipynb``) written as code a link to that notebook's page,
    e.g. in the README's table of notebooks included on the home page."""
    pages = {Path(doc).name: doc for doc in app.env.found_docs if Path(app.env.doc2path(doc)).suffix == ".ipynb"}
    for literal in list(doctree.findall(nodes.literal)):
        target = pages.get(literal.astext().removesuffix(".ipynb"))
        if target and target != docname and not isinstance(literal.parent, nodes.reference):
            uri = app.builder.get_relative_uri(docname, target)
            literal.replace_self(nodes.reference("", "", literal.deepcopy(), refuri=uri, internal=True))


def setup(app) -> dict[str, Any]:
    app.connect("source-read", _on_source_read)
    app.connect("doctree-resolved", _link_notebook_names)
    # A change to this file changes every page: make Sphinx read them all again.
    version = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8], 16)
    return {"env_version": version, "parallel_read_safe": True, "parallel_write_safe": True}
