import inspect
import re
import sys

import pytest
import yaml
from conftest import REPO

from mnist_lab import (
    backprop,
    batch,
    bench,
    cli,
    config,
    conv,
    data,
    fast,
    graphs,
    handwriting,
    io,
    models,
    notebook,
    plots,
    scratch,
    train,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _name(requirement: str) -> str:
    return re.split(r"[<>=!;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def test_environment_yml_installs_what_pyproject_names():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {
        _name(r) for r in project["dependencies"] + extras["notebooks"] + extras["test"] if "python_version" not in r
    }
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {CONDA_NAMES.get(_name(d), _name(d)) for d in env["dependencies"] if isinstance(d, str)}
    conda -= {"python", "pip"}
    assert conda == wanted
    pip_part = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_part


MODULES = [backprop, batch, bench, cli, config, conv, data, fast, graphs, handwriting, io, models, notebook]
MODULES += [plots, scratch, train]


@pytest.mark.parametrize("module", MODULES)
def test_public_functions_have_docstrings_and_type_hints(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            assert obj.__doc__, f"{module.__name__}.{name} has no docstring"
            signature = inspect.signature(obj)
            assert signature.return_annotation is not inspect.Signature.empty, f"{name} lacks a return type"
        elif inspect.isclass(obj):
            assert obj.__doc__, f"{module.__name__}.{name} has no docstring"
