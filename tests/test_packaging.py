import inspect
import re
import sys

import pytest
import yaml
from conftest import REPO

import mnist_lab
from mnist_lab import (
    batch,
    checkpoints,
    cli,
    config,
    data,
    devices,
    errors,
    files,
    handwriting,
    history,
    models,
    notebook,
    plots,
    speed,
    train,
)
from mnist_lab.scratch import backprop, conv, softmax
from mnist_lab.speed import bench, cuda_graph, fast_recipe

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


MODULES = [backprop, batch, bench, checkpoints, cli, config, conv, cuda_graph, data, devices, errors, fast_recipe]
MODULES += [files, handwriting, history, models, notebook, plots, softmax, speed, train]


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


def test_the_core_imports_no_speed_code_and_no_module_imports_a_private_name():
    import ast

    package = REPO / "mnist_lab"
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                assert not private, f"{path.relative_to(REPO)} imports private names {private} from {node.module}"
                if path.name in ("train.py", "data.py", "models.py", "config.py", "checkpoints.py", "history.py"):
                    assert "speed" not in (node.module or ""), f"{path.name} imports {node.module}"


def test_top_level_api_names_exist():
    for name in mnist_lab.__all__:
        assert hasattr(mnist_lab, name), name
