"""The ``Example:`` of every endolib docstring runs and prints what it says (a rotted example misleads)."""
import doctest
import importlib
import pkgutil

import pytest

import endolib


def docstring_modules(package=endolib) -> list[str]:
    """Every module of the package, in every subpackage (``__main__`` aside: importing it is running it)."""
    return sorted(m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                  if not m.name.endswith(".__main__"))


MODULES = docstring_modules()


def test_every_subpackage_module_is_collected():
    from endolib.repro import package_modules

    expected = {m for m in package_modules() if m != "endolib" and not m.endswith("__main__")}
    assert set(MODULES) == expected


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here, not into the checkout
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
