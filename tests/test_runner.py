import json

import nbformat
import pytest

from endolib.study.plan import NOTEBOOKS, plan
from endolib.study.runner import format_summary, run
from endolib.study.strip import strip_notebook


def test_plan_order_and_arch_expansion():
    jobs = plan("quick")
    names = [j.output_name for j in jobs]
    assert names[0] == "01_data_preparation.ipynb" and names[-1] == "07_video_demo.ipynb"
    assert sum(n.startswith("02_") for n in names) == 3 and sum(n.startswith("03_") for n in names) == 8
    assert all(j.parameters["profile"] == "quick" for j in jobs)
    # notebook 04 reads the latencies notebook 05 measures
    assert names.index("05_computational_load.ipynb") < names.index("04_evaluation.ipynb")


def test_plan_only_and_arch():
    jobs = plan("smoke", only=["03"], archs=["unet"])
    assert [(j.notebook, j.parameters["arch"]) for j in jobs] == [("03_segmentation_training", "unet")]


@pytest.mark.parametrize("kw,msg", [({"only": ["09"]}, "unknown notebook"), ({"archs": ["vgg"]}, "unknown architecture")])
def test_plan_bad_names(kw, msg):
    with pytest.raises(ValueError, match=msg):
        plan("smoke", **kw)
    with pytest.raises(ValueError, match="unknown profile"):
        plan("tiny")


def _write_nb(path, code):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


def test_failing_notebook_reported_others_still_run(tmp_path):
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    for name in NOTEBOOKS:
        _write_nb(nb_dir / f"{name}.ipynb", "raise RuntimeError('boom')" if name.startswith("05") else "x = 1")
    seen = []

    def fake_execute(src, dst, params, cwd):  # executes the code cell in-process: no kernel needed
        seen.append(dst.name)
        nb = nbformat.read(src, as_version=4)
        exec(nb.cells[1].source, {})
        dst.write_text("{}")

    results = run("smoke", only=["01", "04", "05"], notebooks_dir=nb_dir, output_dir=tmp_path / "out",
                  execute=fake_execute)
    assert seen == ["01_data_preparation.ipynb", "05_computational_load.ipynb", "04_evaluation.ipynb"]
    assert [r.ok for r in results] == [True, False, True]
    assert "RuntimeError: boom" in results[1].error
    text = format_summary(results)
    assert "2 passed, 1 failed" in text and "FAILED" in text
    assert (tmp_path / "out" / "summary.csv").read_text().count("failed") == 1
    # a later partial run updates its own row and keeps the others
    run("smoke", only=["05"], notebooks_dir=nb_dir, output_dir=tmp_path / "out", execute=lambda s, d, p, c: None)
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert summary.count("failed") == 0 and summary.count("passed") == 3


def test_missing_notebook_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_data_preparation"):
        run("smoke", only=["01"], notebooks_dir=tmp_path, output_dir=tmp_path / "o", execute=lambda *a: None)


def test_papermill_end_to_end(tmp_path):
    """A real kernel: parameters are injected, the executed copy lands under the output folder."""
    nb_dir = tmp_path / "nb"
    nb_dir.mkdir()
    _write_nb(nb_dir / "05_computational_load.ipynb", "assert profile == 'smoke'; print('ran', profile)")
    results = run("smoke", only=["05"], notebooks_dir=nb_dir, output_dir=tmp_path / "out", progress=False)
    assert results[0].ok, results[0].error
    out = nbformat.read(tmp_path / "out" / "05_computational_load.ipynb", as_version=4)
    assert any("ran smoke" in o.get("text", "") for c in out.cells for o in c.get("outputs", []))


def test_strip_removes_noise_keeps_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell("x = 1", execution_count=3)
    cell = nbformat.v4.new_code_cell("1+1", execution_count=7, metadata={"tags": ["x"], "execution": {"iopub.status.busy": "2026"}})
    cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=7),
                    nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": {}})]
    injected = nbformat.v4.new_code_cell('profile = "quick"', metadata={"tags": ["injected-parameters"]})
    nb.cells = [first, nbformat.v4.new_markdown_cell("text"), injected, cell]
    nb.metadata = {"papermill": {"duration": 3}, "kernelspec": {"name": "python3", "display_name": "x"}}
    f = tmp_path / "a.ipynb"
    nbformat.write(nb, f)
    assert strip_notebook(f) is True
    data = json.loads(f.read_text())
    c = data["cells"][2]
    assert data["cells"][0]["execution_count"] == 1 and c["execution_count"] == 2  # renumbered, never None (nbval)
    assert c["metadata"] == {"tags": ["x"]} and c["outputs"][0]["execution_count"] == 2
    assert [o["output_type"] for o in c["outputs"]] == ["execute_result"] and "".join(c["outputs"][0]["data"]["text/plain"]) == "2"
    assert "papermill" not in data["metadata"]
    assert len(data["cells"]) == 3  # papermill's injected-parameters cell is gone (it would override the defaults)
    assert strip_notebook(f) is False  # idempotent


def test_papermill_reads_every_parameter():
    """papermill skips (with only a log warning) a parameters line holding more than one '=', e.g. in its comment;
    such a parameter would vanish from `papermill --help-notebook` and from the runner's checks."""
    import re

    import papermill

    from endolib.config import paths

    for nb in sorted(paths().notebooks.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        src = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        names = re.findall(r"^(\w+)\s*=", src, flags=re.M)
        assert set(papermill.inspect_notebook(str(nb))) == set(names), nb.name


def test_notebooks_save_figures_into_the_profile_folder():
    """Every save_figure call in a notebook names ``figures_dir``: without it the smoke runs of `make test` would
    overwrite the committed quick figures in figures/."""
    import ast

    from endolib.config import paths

    for nb in sorted(paths().notebooks.glob("[0-9][0-9]_*.ipynb")):
        src = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        calls = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", getattr(n.func, "attr", None)) == "save_figure"]
        for call in calls:
            assert any(k.arg == "figures_dir" for k in call.keywords), f"{nb.name}: {ast.unparse(call)}"


def test_bad_scheduler_fails_before_anything_runs(tmp_path, capsys):
    from endolib.__main__ import main
    from endolib.study.distributed import run_study

    ran = []
    with pytest.raises(ValueError, match="unknown scheduler 'mpi'"):
        run_study("smoke", "mpi", only=["01"], notebooks_dir=tmp_path, output_dir=tmp_path / "o",
                  execute=lambda *a: ran.append(a))
    assert ran == []
    assert main(["run", "--profile", "smoke", "--only", "01", "--scheduler", "mpi"]) == 2
    assert "unknown scheduler 'mpi'" in capsys.readouterr().err


def test_cli_names_the_pip_command_when_dask_is_missing(monkeypatch, capsys):
    import sys

    from endolib.__main__ import main

    monkeypatch.setitem(sys.modules, "distributed", None)
    # --only 02 needs no notebook 01 run first: the Dask connection is the first step
    assert main(["run", "--profile", "smoke", "--only", "02", "--arch", "resnet18", "--scheduler", "local:1"]) == 2
    assert 'pip install "endolib[dask]"' in capsys.readouterr().err


def test_publish_keeps_the_run_parameters_and_drops_stale_notebooks(tmp_path, monkeypatch):
    import nbformat

    from endolib.study.plan import plan
    from endolib.study.strip import publish_notebooks

    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    runs = tmp_path / "runs" / "quick"
    runs.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"duration": 3.0}
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('profile = "quick"\n', metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")])]
    study = sorted(job.output_name for job in plan("quick"))
    for name in study:
        nbformat.write(nb, runs / name)
    dest = tmp_path / "study"
    dest.mkdir()
    (dest / "03_segmentation_training__gone.ipynb").write_text("{}")
    # a partial run (one executed notebook missing) publishes nothing and deletes nothing
    (runs / "06_figures.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match="no executed copy of 06_figures.ipynb"):
        publish_notebooks("quick", dest)
    assert sorted(f.name for f in dest.iterdir()) == ["03_segmentation_training__gone.ipynb"]
    nbformat.write(nb, runs / "06_figures.ipynb")
    published = publish_notebooks("quick", dest)
    assert [f.name for f in published] == study
    assert sorted(f.name for f in dest.iterdir()) == study  # the model that left the study is gone
    out = nbformat.read(dest / "04_evaluation.ipynb", as_version=4)
    assert "papermill" not in out.metadata
    assert [c.source for c in out.cells][1] == 'profile = "quick"\n'  # the reader sees what the run used
    assert out.cells[2].outputs[0]["text"] == "1\n"
    with pytest.raises(FileNotFoundError, match="no executed notebooks"):
        publish_notebooks("smoke", dest)
