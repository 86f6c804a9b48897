"""Sphinx extension: the API page of a package, written at build time from what the package holds.

``api.rst`` names only the package; when Sphinx reads it (``source-read``) we append

- a table of the package's public top-level names (``__all__``), each with the first line of its
  docstring and a link to where it is documented in full;
- one section per public module found by ``pkgutil.walk_packages`` (sub-packages included),
  documented by ``automodule`` from its docstrings.

No module name is written down anywhere, so the page follows the package when modules move.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from sphinx.util import logging

logger = logging.getLogger(__name__)


def public_modules(package: ModuleType) -> list[ModuleType]:
    """Every importable module of `package` whose dotted name has no part starting with ``_``."""
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue  # private, and __main__ would run the command line
        try:
            found.append(importlib.import_module(info.name))
        except Exception as error:  # noqa: BLE001 - one broken module must not hide the others
            logger.warning("API page: cannot import %s: %s", info.name, error)
    return sorted(found, key=lambda module: module.__name__)


def first_line(obj: Any) -> str:
    """The summary line of `obj`'s own docstring, or '' without one."""
    doc = inspect.getdoc(obj) if (inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj)) else None
    return doc.strip().splitlines()[0] if doc else ""


def reference(package: ModuleType, name: str, obj: Any) -> str:
    """An rST link to where `obj` (``package.name``) is documented in full, or a literal for data."""
    if inspect.ismodule(obj):
        return f":py:mod:`{name} <{obj.__name__}>`"
    home = getattr(obj, "__module__", None)
    if home and home.startswith(package.__name__) and (inspect.isclass(obj) or inspect.isroutine(obj)):
        role = "class" if inspect.isclass(obj) else "func"
        return f":py:{role}:`{name} <{home}.{obj.__qualname__}>`"
    return f"``{name}``"


def describe_data(obj: Any) -> str:
    """A one-line description of a value that has no docstring of its own."""
    if isinstance(obj, str):
        return f"``{obj!r}``"
    if isinstance(obj, dict):
        return f"a dict of {len(obj)}: " + ", ".join(f"``{key}``" for key in obj)
    return f"a ``{type(obj).__name__}``"


def top_level_table(package: ModuleType) -> list[str]:
    """An rST list-table of ``package.__all__``."""
    names = getattr(package, "__all__", None)
    if names is None:
        names = [name for name in vars(package) if not name.startswith("_")]
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 1 3", "", "   * - name", "     - what it is"]
    for name in names:
        obj = getattr(package, name)
        summary = first_line(obj) if not isinstance(obj, (str, dict, list, tuple)) else describe_data(obj)
        lines += [f"   * - {reference(package, name, obj)}", f"     - {summary or describe_data(obj)}"]
    return lines


def api_rst(package_name: str) -> str:
    """The generated part of the API page for `package_name`."""
    package = importlib.import_module(package_name)
    lines = ["", f"``import {package_name}``", "-" * (len(package_name) + 11), ""]
    lines += [f"What ``from {package_name} import ...`` offers (``{package_name}.__all__``):", ""]
    lines += top_level_table(package) + [""]
    for module in public_modules(package):
        title = f"``{module.__name__}``"
        lines += [title, "-" * len(title), "", f".. automodule:: {module.__name__}", "   :members:", ""]
    return "\n".join(lines) + "\n"


def literal_indented_blocks(lines: list[str]) -> list[str]:
    """The package's docstrings are plain text, not reStructuredText: a block indented under a
    paragraph (a usage line, shapes, a formula) is meant as written, so make it a literal block
    instead of letting reST reflow it into a quotation."""
    result: list[str] = []
    previous = ""  # the last non-blank line
    for i, line in enumerate(lines):
        indented = line[:1].isspace() and line.strip()
        after_blank = i > 0 and not lines[i - 1].strip()
        if indented and after_blank and previous and not previous[:1].isspace() and not previous.endswith("::"):
            result += ["::", ""]
        result.append(line)
        if line.strip():
            previous = line.rstrip()
    return result


def lone_enumerators_escaped(lines: list[str]) -> list[str]:
    """A paragraph that starts with "(a) and (b) ..." refers to items; reST would read it as a list
    numbered a. unless another line starts with the next enumerator "(b)"."""
    starts = {match.group(1) for line in lines if (match := re.match(r"\s*\((\w+)\) ", line))}
    result = []
    for i, line in enumerate(lines):
        match = re.match(r"\((\w)\) ", line)
        if match and (i == 0 or not lines[i - 1].strip()) and chr(ord(match.group(1)) + 1) not in starts:
            line = "\\" + line
        result.append(line)
    return result


def _on_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = lone_enumerators_escaped(literal_indented_blocks(lines))


def _on_signature(app, what, name, obj, options, signature, return_annotation):
    # A dataclass field with a default_factory shows as "= <factory>", which is no Python
    # expression: Sphinx then prints the whole signature raw ("~typing.Any"). Show "= ..." instead.
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


def _on_source_read(app, docname: str, source: list[str]) -> None:
    if docname == app.config.package_api_page:
        source[0] += api_rst(app.config.package_api_package)


def _always_reread(app, env, added, changed, removed) -> list[str]:
    # Modules may be added or moved without api.rst changing: read the page on every build.
    return [app.config.package_api_page]


def setup(app) -> dict[str, Any]:
    app.add_config_value("package_api_package", "", "env")
    app.add_config_value("package_api_page", "api", "env")
    app.connect("source-read", _on_source_read)
    app.connect("env-get-outdated", _always_reread)
    app.connect("autodoc-process-docstring", _on_docstring)
    app.connect("autodoc-process-signature", _on_signature)
    # A change to this file changes every page: make Sphinx read them all again.
    version = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8], 16)
    return {"env_version": version, "parallel_read_safe": True, "parallel_write_safe": True}
