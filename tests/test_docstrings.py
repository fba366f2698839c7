"""The ``Example:`` of every endolib docstring runs and prints what it says (a rotted example misleads)."""
import doctest
import importlib
import pkgutil

import pytest

import endolib

MODULES = sorted(m.name for m in pkgutil.iter_modules(endolib.__path__) if m.name != "__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here, not into the checkout
    module = importlib.import_module(f"endolib.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of endolib.{name} failed"
