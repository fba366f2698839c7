"""Incremental rebuild and provenance (endolib.study.incremental, endolib.study.provenance) with a fake executor.

Every kind of input is changed once and the jobs that must rerun are checked exactly: nothing stale is reused,
nothing up to date is rerun.
"""
from __future__ import annotations

import json

import nbformat
import pytest

from endolib.config import paths
from endolib.study import incremental
from endolib.study.incremental import NOT_IMPORTED, STATE_FILE, notebook_hash
from endolib.study.runner import format_summary, run

ARCHS = ["resnet18", "unet"]
ALL = ["01_data_preparation.ipynb", "02_classifier_training__resnet18.ipynb", "03_segmentation_training__unet.ipynb",
       "05_computational_load.ipynb", "04_evaluation.ipynb", "06_figures.ipynb", "07_video_demo.ipynb"]


def _write_nb(path, code):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


class FakeStudy:
    """Writes what each notebook writes (dataset, runs, tables, figures) from what it reads; records the calls."""

    def __init__(self, root):
        self.p = paths("smoke", root)
        self.seen, self.counter, self.latency = [], 0, "1.0"

    def __call__(self, src, dst, params, cwd):
        self.seen.append(dst.name)
        p, nb = self.p, src.stem
        p.results.mkdir(parents=True, exist_ok=True)
        p.figures.mkdir(parents=True, exist_ok=True)
        if nb.startswith("01"):
            (p.phantom / "images").mkdir(parents=True, exist_ok=True)
            if not (p.phantom / "images" / "a.png").exists():
                (p.phantom / "images" / "a.png").write_bytes(b"frame")
            (p.phantom / "index.csv").write_text("frame_id\na\n")
            p.phantom_raw.mkdir(parents=True, exist_ok=True)  # the generated phantom (LabelMe, manifest, videos)
            (p.phantom_raw / "manifest.csv").write_text("patient_id\nP1\n")
            (p.results / "table1.csv").write_text("patients\n6\n")
        elif nb.startswith(("02", "03")):
            self.counter += 1  # training is not bit-reproducible here: every run gives other weights
            run_dir = p.run(params["arch"], 42)
            run_dir.mkdir(parents=True, exist_ok=True)
            data = (p.phantom / "images" / "a.png").read_bytes()
            (run_dir / "model.safetensors").write_bytes(data + str(self.counter).encode())
            # the resized frames a run keeps in the dataset (endolib.training.frames.load_frames): not a change of it
            (p.phantom / "cache").mkdir(exist_ok=True)
            (p.phantom / "cache" / "frames_32px_masks_1_x.npz").write_bytes(b"resized" + str(self.counter).encode())
            (p.figures / f"learning_curve_{params['arch']}.png").write_bytes(b"png" + data)
        elif nb.startswith("05"):
            (p.results / "table5_compute.csv").write_text(f"model,latency_ms\nunet,{self.latency}\n")
        elif nb.startswith("04"):
            (p.results / "table3_classifiers.csv").write_text("model,auroc\nresnet18,0.9\n")
        elif nb.startswith("06"):
            (p.figures / "fig1_pipeline.png").write_bytes(b"png1")
        elif nb.startswith("07"):
            (p.phantom_raw / "clips").mkdir(parents=True, exist_ok=True)  # the 30 FPS clip, rendered on first use
            (p.phantom_raw / "clips" / "OP1_30fps.mp4").write_bytes(b"clip" + str(len(self.seen)).encode())
            (p.run("unet", 42) / "model.onnx").write_bytes(b"onnx" + str(len(self.seen)).encode())  # export cache
            (p.results / "video_smoothing.csv").write_text("setting,dsc\nraw,0.5\n")
        dst.write_text(json.dumps({"cells": [], "ran": nb}))


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    from endolib.study.plan import NOTEBOOKS

    for name in NOTEBOOKS:
        _write_nb(nb_dir / f"{name}.ipynb", "x = 1")
    fake = FakeStudy(tmp_path)

    def go(**kw):
        fake.seen.clear()
        results = run("smoke", archs=ARCHS, notebooks_dir=nb_dir, execute=fake, **kw)
        assert all(r.ok for r in results)
        return list(fake.seen), results

    return fake, go, nb_dir, tmp_path


def test_second_run_skips_everything_and_says_why(study, capsys):
    fake, go, _, _ = study
    assert go()[0] == ALL
    seen, results = go()
    assert seen == []
    assert all(r.skipped.startswith("inputs unchanged") for r in results)
    out = capsys.readouterr().out
    assert "04_evaluation.ipynb: skipped, inputs unchanged" in out
    assert "7 skipped" in format_summary(results)
    assert go(force=True)[0] == ALL  # --force reruns everything


def test_each_kind_of_input_reruns_exactly_what_reads_it(study, monkeypatch):
    fake, go, nb_dir, root = study
    p = paths("smoke", root)
    go()
    # notebook: only 06 changes; nothing reads its outputs
    _write_nb(nb_dir / "06_figures.ipynb", "x = 2")
    assert go()[0] == ["06_figures.ipynb"]
    # a notebook's stored outputs do not count, its code does
    nb = nbformat.read(nb_dir / "07_video_demo.ipynb", as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="old output")]
    nbformat.write(nb, nb_dir / "07_video_demo.ipynb")
    assert go()[0] == []
    # dataset edited by hand: 01 reruns (its output changed) and so does everything that reads data, but not 05
    (p.phantom / "images" / "a.png").write_bytes(b"another frame")
    assert go()[0] == [n for n in ALL if not n.startswith("05")]
    # upstream runs: a changed checkpoint reruns its training job, whose new weights rerun 04, 06 and 07
    (p.run("unet", 42) / "model.safetensors").write_bytes(b"tampered")
    assert go()[0] == ["03_segmentation_training__unet.ipynb", "04_evaluation.ipynb", "06_figures.ipynb",
                       "07_video_demo.ipynb"]
    # an upstream notebook's outputs: 05 measures other latencies -> 04 and 06 (its readers) rerun, 07 does not
    (p.results / "table5_compute.csv").unlink()
    fake.latency = "2.0"
    assert go()[0] == ["05_computational_load.ipynb", "04_evaluation.ipynb", "06_figures.ipynb"]
    # realtime.csv (bench realtime, outside the runner) appears, then changes: 04 (paper claims) reruns, alone
    (p.results / "realtime.csv").write_text("width,fps\n1.0,5\n")
    assert go()[0] == ["04_evaluation.ipynb"]
    (p.results / "realtime.csv").write_text("width,fps\n1.0,6\n")
    assert go()[0] == ["04_evaluation.ipynb"]
    assert go()[0] == []
    # a Dask task's log, rewritten with its timing when a finished run is submitted again, is not a result
    (p.run("unet", 42) / "finish.log").write_text("done in 0.1 s\n")
    assert go()[0] == []
    (p.run("unet", 42) / "finish.log").write_text("done in 0.0 s\n")
    assert go()[0] == []
    # a deleted output reruns its job only (same content again: its readers stay up to date)
    (p.figures / "fig1_pipeline.png").unlink()
    assert go()[0] == ["06_figures.ipynb"]
    (p.runs / "07_video_demo.ipynb").unlink()  # the executed notebook is an output too (the site shows it)
    assert go()[0] == ["07_video_demo.ipynb"]
    # parameters
    assert go(extra={"n_frames": 3})[0] == ALL
    # endolib source and package versions
    monkeypatch.setattr(incremental, "library_hash", lambda: "changed")
    assert go(extra={"n_frames": 3})[0] == ALL
    monkeypatch.setattr(incremental, "_package_versions", lambda: {"torch": "9.9"})
    assert go(extra={"n_frames": 3})[0] == ALL
    assert go(extra={"n_frames": 3})[0] == []


def test_failed_or_interrupted_job_is_not_recorded(study):
    fake, go, nb_dir, root = study
    go()

    def boom(src, dst, params, cwd):
        if src.stem.startswith("06"):
            raise RuntimeError("boom")
        fake(src, dst, params, cwd)

    _write_nb(nb_dir / "06_figures.ipynb", "x = 3")
    results = run("smoke", archs=ARCHS, notebooks_dir=nb_dir, execute=boom)
    assert [r.job.notebook for r in results if not r.ok] == ["06_figures"]
    state = json.loads((paths("smoke", root).runs / STATE_FILE).read_text())["jobs"]
    assert "06_figures.ipynb" not in state and "04_evaluation.ipynb" in state
    recorded = [f for rec in state.values() for f in rec["outputs"]["files"]]
    assert "results/smoke/table3_classifiers.csv" in recorded and not any(f.startswith("/") for f in recorded)
    assert go()[0] == ["06_figures.ipynb"]


def test_provenance_attributes_each_output_to_its_notebook(study):
    fake, go, _, root = study
    go()
    prov = json.loads((paths("smoke", root).results / "provenance.json").read_text())
    owner = {f: e["job"] for f, e in prov["outputs"].items()}
    assert owner["results/smoke/table5_compute.csv"] == "05_computational_load.ipynb"
    assert owner["results/smoke/table3_classifiers.csv"] == "04_evaluation.ipynb"
    assert owner["runs/smoke/figures/fig1_pipeline.png"] == "06_figures.ipynb"
    assert owner["runs/smoke/figures/learning_curve_unet.png"] == "03_segmentation_training__unet.ipynb"
    rec = prov["jobs"]["04_evaluation.ipynb"]
    assert rec["profile"] == "smoke" and rec["notebook"] == "notebooks/04_evaluation.ipynb"
    assert {r["model"] for r in rec["runs"]} == set(ARCHS) and all(r["seed"] == 42 for r in rec["runs"])
    assert all(len(r["checkpoint_sha256"]) == 64 for r in rec["runs"])
    assert len(rec["dataset_fingerprint"]) == 64 and rec["wall_time_s"] >= 0
    assert rec["packages"]["torch"] and rec["cpu"]
    assert prov["jobs"]["05_computational_load.ipynb"]["runs"] == []  # 05 reads no trained model
    from endolib.study.provenance import provenance_of

    one = provenance_of("results/smoke/table3_classifiers.csv", "smoke", root)
    assert one["job"] == "04_evaluation.ipynb" and one["current"] is True
    (root / "results/smoke/table3_classifiers.csv").write_text("edited by hand\n")
    assert provenance_of("results/smoke/table3_classifiers.csv", "smoke", root)["current"] is False


def test_a_rerun_job_is_credited_only_with_what_it_wrote_this_time(tmp_path, monkeypatch):
    from endolib.study.provenance import update_provenance

    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    a, b, c = tmp_path / "results/x/a.csv", tmp_path / "figures/b.png", tmp_path / "results/x/c.csv"
    for f in (a, b, c):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("1")
    prov = tmp_path / "results/x/provenance.json"
    update_provenance(prov, {"job": "05.ipynb"}, [a, b])
    update_provenance(prov, {"job": "04.ipynb"}, [c])
    data = update_provenance(prov, {"job": "05.ipynb"}, [a])  # the rerun no longer writes b
    assert data["outputs"].keys() == {"results/x/a.csv", "results/x/c.csv"}
    assert data["outputs"]["results/x/c.csv"]["job"] == "04.ipynb"


def test_outputs_do_not_make_the_source_dirty(tmp_path):
    import subprocess

    from endolib.study.provenance import git_state

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)

    files = ("results/quick/a.csv", "figures/b.png", "study/03.ipynb", "README.md", "docs/realtime.md", "endolib/x.py")
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    for name in files[:-1]:  # what a study run rewrites: tables, figures, published notebooks, rendered pages
        (tmp_path / name).write_text("2")
    assert git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "endolib/x.py").write_text("2")
    state = git_state(tmp_path)
    assert state["git_dirty"] is True and state["git_dirty_files"] == ["endolib/x.py"]


def test_notebook_hash_ignores_outputs_not_code(tmp_path):
    f = tmp_path / "n.ipynb"
    _write_nb(f, "x = 1")
    h = notebook_hash(f)
    nb = nbformat.read(f, as_version=4)
    nb.cells[1].execution_count = 7
    nbformat.write(nb, f)
    assert notebook_hash(f) == h
    nb.cells[0].metadata["tags"] = []  # losing the parameters tag changes what papermill does
    nbformat.write(nb, f)
    assert notebook_hash(f) != h
    f.write_text("{not json")
    with pytest.raises(ValueError, match="n.ipynb: not a notebook"):
        notebook_hash(f)


def test_modules_left_out_of_the_source_hash_are_imported_by_no_notebook():
    """A module may be left out of the hash only if no notebook can run its code: no module a notebook may import
    reaches it (the command line and the study's runner and commands are not run by notebooks)."""
    import re

    from endolib.config import repo_root
    from endolib.repro import module_imports, package_modules

    modules = package_modules()
    assert set(NOT_IMPORTED) <= set(modules), "NOT_IMPORTED names a module that does not exist"
    callers = {"endolib.__main__", "endolib.study.runner", "endolib.study.distributed", "endolib.study.commands",
               *NOT_IMPORTED}
    for name in modules:
        if name in callers:
            continue
        reached = module_imports(name, modules) & set(NOT_IMPORTED)
        assert not reached, f"{name} imports {reached}"
    for nb in sorted((repo_root() / "notebooks").glob("*.ipynb")):
        text = nb.read_text()
        for m in NOT_IMPORTED:
            pkg, _, leaf = m.rpartition(".")
            assert not re.search(rf"{re.escape(m)}\b|from {re.escape(pkg)} import .*\b{leaf}\b", text), nb.name
        assert "endolib.study.runner" not in text and "endolib.study.incremental" not in text, nb.name


def test_the_realtime_table_is_read_only_by_notebooks_that_declare_it():
    """`bench realtime` writes realtime.csv and fig_realtime_pareto outside the runner. A notebook that reads the
    table must declare it in READS (or a new bench leaves its outputs stale), and none may save the bench's figure
    (the runner would find that notebook's recorded output modified after every bench and rerun it for nothing:
    notebook 05 did both, and retimed Table 5 after each bench)."""
    from endolib.config import repo_root

    readers = []
    for nb in sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code")
        assert "fig_realtime_pareto" not in code, f"{nb.name} saves the bench's figure"
        if "REALTIME_FILE" in code or "realtime.csv" in code:
            readers.append(nb.stem)
            assert "realtime" in incremental.READS[nb.stem], f"{nb.name} reads realtime.csv without declaring it"
    assert readers == ["04_evaluation"]
