"""A plain `pip install` (no extras) gives a CLI whose every subcommand works; the dev extra holds only dev tools."""

import ast
import os
import pathlib
import re
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def distribution_name(requirement):
    """"numpy>=1.26" -> "numpy" (normalised as pip does)."""
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imported_top_level_modules():
    """{top-level module: the package files importing it}, every import of the package, inside functions too."""
    found = {}
    for path in sorted((ROOT / "tinygrad_sm").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def test_every_import_of_the_package_is_a_declared_dependency():
    declared = {distribution_name(requirement) for requirement in PROJECT["dependencies"]}
    providers = metadata.packages_distributions()  # import name -> the distributions installing it
    for module, files in imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module == "tinygrad_sm":
            continue
        distributions = {name.lower().replace("_", "-") for name in providers.get(module, [])}
        assert distributions & declared, f"{sorted(files)} import {module!r}, which no declared dependency provides"


def test_the_dev_extra_holds_only_development_tools():
    runtime = {distribution_name(requirement) for requirement in PROJECT["dependencies"]}
    dev = {distribution_name(requirement) for requirement in PROJECT["optional-dependencies"]["dev"]}
    assert not runtime & dev
    assert "scikit-learn" in dev and "scikit-learn" not in runtime  # a test reference only
    assert {"numpy", "graphviz", "tqdm"} == runtime


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory):
    """The wheel of this checkout installed with its declared dependencies only, into a fresh venv; its bin dir."""
    work = tmp_path_factory.mktemp("plain")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", work, ROOT],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = work.glob("tinygrad_sm-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "tinygrad_sm/digits.npz" in archive.namelist()
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel],
                             capture_output=True, text=True, timeout=300)
    if install.returncode != 0 and re.search(r"No matching distribution|Could not find a version", install.stderr):
        pytest.skip(f"no package index to install numpy, graphviz and tqdm from: {install.stderr.strip()[-200:]}")
    assert install.returncode == 0, install.stderr
    installed = subprocess.run([python, "-c", "import importlib.metadata as m; print(*sorted(d.name.lower() for d in "
                                "m.distributions()))"], capture_output=True, text=True, check=True).stdout.split()
    assert "scikit-learn" not in installed and "pytest" not in installed
    return venv / "bin"


@pytest.mark.parametrize(
    "arguments",
    [
        ["train", "--model", "softmax", "--epochs", "1"],
        ["train", "--model", "logistic", "--epochs", "1"],
        ["demo", "--graph", "demo.svg"],
        ["gradcheck", "--fast"],
        ["gradcheck", f"{ROOT}/examples/custom_op.py:cube"],
        ["graph", "mlp", "--out", "mlp.svg"],
        ["graph", "softmax", "--out", "softmax.dot"],
        ["debug", "logistic", "--commands", "continue"],
    ],
    ids=lambda arguments: " ".join(arguments[:2]).replace(f"{ROOT}/", ""),
)
def test_every_subcommand_works_from_a_plain_install(plain_install, tmp_path, arguments):
    run = subprocess.run([plain_install / "tinygrad-sm", *arguments], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300, env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "No module named" not in run.stderr


def test_setup_hides_the_editable_install_banner(tmp_path):
    """The Makefile's install line, with its warning filter, into a throwaway venv: no setuptools banner (without
    the filter the same pip prints it)."""
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line and "-e" in line)
    (filters,) = re.findall(r"PYTHONWARNINGS='([^']+)'", line)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)

    def editable_install(warnings):
        command = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-deps",
                   "-e", ROOT]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env={**os.environ, "PYTHONWARNINGS": warnings})

    quiet = editable_install(filters)
    assert quiet.returncode == 0, quiet.stderr
    assert "Editable installation" not in quiet.stderr and "careful with folders" not in quiet.stderr
    loud = editable_install("")
    assert "Editable installation" in loud.stderr  # the filter is what hides it
