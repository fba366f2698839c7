"""The package's shape (docs/architecture.md): one package per stage, arrows one way, no import loop, and the tools
that hash or discover code see every module of every subpackage."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import endolib
from endolib.repro import module_imports, package_modules

GROUND = ("endolib.config", "endolib.paper", "endolib.repro", "endolib.device", "endolib.plotting")
#: subpackage -> subpackages it must never import
FORBIDDEN = {"data": {"models", "training", "evaluation", "deploy", "study"},
             "models": {"data", "training", "evaluation", "deploy", "study"},
             "evaluation": {"training", "deploy", "study"},
             "training": {"deploy", "study"},
             "deploy": {"study"}}


def import_graph(modules: dict) -> dict[str, set[str]]:
    return {name: module_imports(name, modules) for name in modules}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of ``graph`` (a list of modules, first == last), or None."""
    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def _package(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or name in ("endolib.data", "endolib.models", "endolib.training",
                                                    "endolib.evaluation", "endolib.deploy", "endolib.study") else ""


def layering_errors(graph: dict[str, set[str]]) -> list[str]:
    errors = []
    for a, deps in graph.items():
        for b in deps:
            if a in GROUND and b not in GROUND:
                errors.append(f"ground floor {a} imports {b}")
            if b in FORBIDDEN.get(_package(a), set()) or _package(b) in FORBIDDEN.get(_package(a), set()):
                errors.append(f"{a} imports {b}")
    return sorted(errors)


def test_no_import_loop_anywhere():
    cycle = find_cycle(import_graph(package_modules()))
    assert cycle is None, "import loop: " + " -> ".join(cycle)


def test_arrows_run_one_way():
    assert layering_errors(import_graph(package_modules())) == []


def test_every_subpackage_says_what_it_owns_and_may_import():
    for pkg in ("data", "models", "training", "evaluation", "deploy", "study"):
        doc = (Path(endolib.__file__).parent / pkg / "__init__.py").read_text()
        assert "import" in doc and len(doc) > 200, f"endolib/{pkg}/__init__.py: no docstring of what it owns"


@pytest.fixture
def package_copy(tmp_path):
    """A temporary copy of the endolib package, importable on its own."""
    dst = tmp_path / "endolib"
    shutil.copytree(Path(endolib.__file__).parent, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _modules_of(root: Path) -> dict:
    code = "import json, endolib.repro as r; print(json.dumps({k: str(v) for k, v in r.package_modules().items()}))"
    import json

    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    return {k: Path(v) for k, v in json.loads(out.stdout).items()}


def test_a_planted_loop_and_a_ground_floor_import_are_found(package_copy):
    modules = _modules_of(package_copy)
    assert modules["endolib.training.unit"].is_relative_to(package_copy)
    losses = modules["endolib.training.losses"]
    losses.write_text(losses.read_text() + "\n\ndef _planted():\n    from endolib.training.unit import train_unit\n")
    graph = import_graph(modules)
    cycle = find_cycle(graph)
    assert cycle is not None and "endolib.training.losses" in cycle and "endolib.training.unit" in cycle
    config = modules["endolib.config"]
    config.write_text(config.read_text() + "\n\ndef _planted():\n    from endolib.data.dataset import load_index\n")
    assert "ground floor endolib.config imports endolib.data.dataset" in layering_errors(import_graph(modules))


def _in_copy(root: Path, code: str) -> str:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_unit_fingerprint_follows_the_training_subpackage(package_copy):
    """Editing a function in training/losses.py changes the code fingerprint that finished units are keyed by."""
    code = "from endolib.training.fingerprint import code_fingerprint; print(code_fingerprint())"
    before = _in_copy(package_copy, code)
    losses = package_copy / "endolib" / "training" / "losses.py"
    text = losses.read_text()
    assert "def dice_loss" in text
    losses.write_text(text.replace("def dice_loss(", "def dice_loss(  # edited\n        ", 1))
    after = _in_copy(package_copy, code)
    assert len(before) == len(after) == 64 and before != after
    # a module the training code does not import leaves it unchanged
    site = package_copy / "endolib" / "study" / "site.py"
    site.write_text(site.read_text() + "\n# edited\n")
    assert _in_copy(package_copy, code) == after


def test_library_hash_follows_every_subpackage(package_copy):
    code = "from endolib.study.incremental import library_hash; print(library_hash())"
    before = _in_copy(package_copy, code)
    losses = package_copy / "endolib" / "training" / "losses.py"
    losses.write_text(losses.read_text() + "\n# edited\n")
    assert _in_copy(package_copy, code) != before


def test_doctest_collector_runs_an_example_in_a_subpackage(package_copy):
    losses = package_copy / "endolib" / "training" / "losses.py"
    losses.write_text(losses.read_text() + textwrap.dedent('''

        def _planted_example():
            """Example:
                >>> 1 + 1
                3
            """
    '''))
    shutil.copy(Path(__file__).parent / "test_docstrings.py", package_copy / "test_docstrings.py")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_docstrings.py",
                          "-k", "endolib.training.losses or collected"], cwd=package_copy, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(package_copy)})
    assert out.returncode == 1 and "1 failed, 1 passed" in out.stdout, out.stdout[-2000:]
    assert "_planted_example" in out.stdout


def test_unit_fingerprint_hashes_the_profiles_as_values(package_copy):
    """config.py's source is not hashed (its profiles are, as resolved values): a comment there retrains nothing."""
    code = "from endolib.training.fingerprint import code_fingerprint; print(code_fingerprint())"
    before = _in_copy(package_copy, code)
    config = package_copy / "endolib" / "config.py"
    config.write_text(config.read_text() + "\n# edited\n")
    assert _in_copy(package_copy, code) == before
