"""Tests of endolib.study.render: a group with missing inputs is reported with its command, the others still render."""
from __future__ import annotations

import pytest

from endolib.config import get_profile
from endolib.study import render
from endolib.study.render import _compute, render_all


def test_missing_inputs_are_reported_and_other_groups_render(monkeypatch, tmp_path):
    calls = []

    def ok(p, data_dir):
        calls.append("ok")
        return ["fig_a", "fig_b"]

    def missing(p, data_dir):
        calls.append("missing")
        raise FileNotFoundError("runs/x/history.csv is missing; make it with `python -m endolib run --only 02`")

    monkeypatch.setattr(render, "GROUPS", (("first", missing), ("second", ok)))
    report = render_all("smoke", data_dir=tmp_path, progress=False)
    assert calls == ["missing", "ok"]
    assert list(report.status) == ["failed", "rendered"] and list(report.figures) == [0, 2]
    assert "python -m endolib run --only 02" in report.error[0]


def test_compute_group_names_the_missing_table(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"table5_compute.csv is missing; make it with .*--only 05"):
        _compute(get_profile("smoke"), tmp_path)

