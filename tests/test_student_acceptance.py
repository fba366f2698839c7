"""Distilled students are checked before they are used (endolib.training.students, runs.train_students): a candidate
is accepted only within ``student_max_val_drop`` of its teacher's validation DSC, else the next candidate is trained,
at most ``student_candidates``; the decision is an atomic record that a rerun reuses, and the real-time benchmark
deploys only accepted students: a seed whose candidates all miss the bound is measured with the one best on
validation, which can show its width losing the accuracy, never keeping it (realtime.csv / realtime_by_seed.csv say
how many candidates each seed needed and which was measured).

Teachers are hand-made run folders (random weights, a chosen trial with a stated validation DSC); students are
trained at smoke size on the tiny dataset (one epoch each)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from endolib.config import get_profile, study_paths
from endolib.training.runs import train_students
from endolib.training.settings import student_settings
from endolib.training.students import (
    ACCEPTANCE_FILE,
    StudentCheck,
    accepted_student,
    read_acceptance,
    write_acceptance,
)
from endolib.training.unit import _name_key, _unit_seed

SIZE = 32


def _save_run(folder, arch, size, width, seed, val_dsc=0.0):
    """A hand-made finished run: seeded random weights, a config.json whose chosen trial has ``val_dsc``."""
    import torch
    from safetensors.torch import save_file

    from endolib.models.factory import create_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_file(create_model(arch, width_mult=width).state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "arch": arch, "model_kwargs": {"width_mult": width}, "input_size": size, "training_seed": seed,
        "trials": [{"trial": 0, "mean_val_metric": val_dsc, "chosen": True}]}))
    return folder


@pytest.fixture
def setup(tmp_path, tiny_dataset, monkeypatch, one_thread):
    """(the tiny dataset's study paths, profile's first training seed, teacher run of that seed) under a temporary
    ENDOLIB_ROOT."""
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    s0 = get_profile("smoke").training_seeds[0]
    study = study_paths("smoke", tiny_dataset, root=tmp_path)
    teacher = _save_run(study.run("unet", s0), "unet", SIZE, 0.125, seed=s0)
    return study, s0, teacher


def _train(p, tiny_dataset, teacher, seed):
    return train_students(p, widths=(0.5,), training_seed=seed, data_dir=tiny_dataset, teacher_run=teacher,
                          progress=False)[0]


def test_profile_checks_the_bound_and_the_limit():
    p = get_profile("paper")
    assert (p.student_max_val_drop, p.student_candidates) == (0.05, 3)
    with pytest.raises(ValueError, match="student_candidates must be an integer >= 1"):
        get_profile("smoke", student_candidates=0)
    with pytest.raises(ValueError, match=r"student_max_val_drop must be in \[-1, 1\]"):
        get_profile("smoke", student_max_val_drop=2.0)


def test_candidates_have_own_folders_and_seeds_and_candidate_0_is_seeded_as_before():
    first, later = student_settings(0.25, "quick"), student_settings(0.25, "quick", candidate=1)
    assert first.seed_key == () and first.run_dir.parent.name == "unet_w0.25"
    assert later.run_dir.parent.name == "unet_w0.25_c1" and later.run_dir.name == first.run_dir.name
    # candidate 0: the seed of every other run of the training seed, as before candidates existed
    assert _unit_seed(42, "unet", 0, 0) == int(np.random.default_rng([42, _name_key("unet"), 0, 1]).integers(2**31 - 1))
    keys = [student_settings(w, "quick", candidate=c).seed_key for w in (0.5, 0.25) for c in (1, 2)]
    seeds = {_unit_seed(42, "unet", 0, 0, k) for k in keys} | {_unit_seed(42, "unet", 0, 0)}
    assert len(seeds) == 5  # a function of (training seed, width, candidate): all different, and repeatable
    assert _unit_seed(42, "unet", 0, 0, keys[0]) == _unit_seed(42, "unet", 0, 0, (500000, 1))


def test_an_accepted_first_candidate_trains_once(setup, tiny_dataset):
    study, s0, teacher = setup
    p = get_profile("smoke")  # teacher's validation DSC 0.0: any student is within 0.05
    check = _train(p, tiny_dataset, teacher, s0)
    run = study.runs / "unet_w0.5" / f"seed{s0}"
    assert check.accepted == 0 and check.tried == 1 and check.model == "unet_w0.5"
    assert not (study.runs / "unet_w0.5_c1").exists()
    rec = json.loads((run / ACCEPTANCE_FILE).read_text())
    assert rec["teacher_val_dsc"] == 0.0 and rec["max_val_drop"] == 0.05 and rec["limit"] == 3
    assert rec["candidates"][0]["val_dsc"] == json.loads((run / "config.json").read_text())["trials"][0][
        "mean_val_metric"] and rec["candidates"][0]["passed"]
    assert accepted_student(0.5, p, seed=s0, dataset=study.dataset) == run
    from endolib.deploy.realtime_bench import student_run

    assert student_run(0.5, "unet", p, seed=s0, dataset=study.dataset) == run
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "fingerprint": "another"}))  # changed since checked
    assert student_run(0.5, "unet", p, seed=s0, dataset=study.dataset) is None


def test_a_student_that_misses_the_bound_trains_every_candidate_and_is_not_used(setup, tiny_dataset, monkeypatch):
    study, s0, teacher = setup
    p = get_profile("smoke", student_max_val_drop=-1.0, student_candidates=3)  # nothing passes
    check = _train(p, tiny_dataset, teacher, s0)
    assert check.accepted is None and check.tried == 3
    models = ["unet_w0.5", "unet_w0.5_c1", "unet_w0.5_c2"]
    assert [c["model"] for c in check.candidates] == models and not any(c["passed"] for c in check.candidates)
    unit_seeds = {json.loads((study.runs / m / f"seed{s0}" / "units" / "t0_f0" / "unit.json")
                             .read_text())["unit_seed"] for m in models}
    assert len(unit_seeds) == 3  # other seeds: other candidates
    assert read_acceptance(0.5, p, seed=s0, dataset=study.dataset).to_dict() == check.to_dict()
    from endolib.deploy.realtime_bench import student_run

    assert student_run(0.5, "unet", p, seed=s0, dataset=study.dataset) is None
    # a rerun trains nothing: every candidate's run and the record are reused
    record = study.runs / "unet_w0.5" / f"seed{s0}" / ACCEPTANCE_FILE
    stamps = [record.stat().st_mtime_ns] + [(study.runs / m / f"seed{s0}" / "model.safetensors")
                                            .stat().st_mtime_ns for m in models]
    from endolib.training import unit

    def no_training(*a, **k):
        raise AssertionError("a finished candidate was trained again")

    monkeypatch.setattr(unit._UnitTrainer, "fit", no_training)
    again = _train(p, tiny_dataset, teacher, s0)
    assert again.to_dict() == check.to_dict()
    assert stamps == [record.stat().st_mtime_ns] + [(study.runs / m / f"seed{s0}" / "model.safetensors")
                                                    .stat().st_mtime_ns for m in models]
    # the bound is not part of any run's fingerprint: a looser one re-decides from the same runs, training nothing
    loose = _train(get_profile("smoke"), tiny_dataset, teacher, s0)
    assert loose.accepted == 0 and loose.tried == 1
    first = study.runs / "unet_w0.5" / f"seed{s0}"
    assert student_run(0.5, "unet", get_profile("smoke"), seed=s0, dataset=study.dataset) == first


def test_the_acceptance_record_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "unet_w0.5" / "seed42" / ACCEPTANCE_FILE
    good = StudentCheck(0.5, 42, "t", 0.7, 0.05, 3, [{"candidate": 0, "model": "unet_w0.5", "val_dsc": 0.69}], 0)
    write_acceptance(good, path)
    import endolib.training.unit as unit

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(unit.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_acceptance(StudentCheck(0.5, 42, "t", 0.7, 0.05, 3, [], None), path)
    assert json.loads(path.read_text()) == good.to_dict()  # the good record is intact, never half-written


def test_bench_realtime_measures_unaccepted_students_but_never_deploys_them(tmp_path, tiny_dataset, monkeypatch,
                                                                           one_thread):
    """Seed 1's teacher validates at DSC 1.0: no student comes within 0.05. That seed is measured with its candidate
    best on validation, said with the candidates' validation DSC; the width counts 1 of 2 seeds accepted, so it can
    be shown to lose the accuracy but never to keep it, and the tables count the candidates per seed."""
    from endolib.deploy.realtime_bench import REALTIME_SEED_COLUMNS, REALTIME_SEED_FILE, bench_realtime
    from endolib.evaluation.claims import deployable_accuracy
    from endolib.study.pages import realtime_seeds, realtime_table

    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    p = get_profile("smoke", n_boot=20, bench_warmup=0, student_candidates=2)
    s0, s1 = p.training_seeds
    study = study_paths("smoke", tiny_dataset, root=tmp_path)  # the tiny dataset's own study
    runs = study.runs
    for k, val in ((s0, 0.0), (s1, 1.0)):
        _save_run(runs / "resnet18" / f"seed{k}", "resnet18", SIZE, 0.125, seed=k)
        _save_run(runs / "unet" / f"seed{k}", "unet", SIZE, 0.125, seed=k, val_dsc=val)
    lines = []
    table = bench_realtime(p, widths=(1.0, 0.5), precisions=("fp32",), sizes=(SIZE, SIZE), n_frames=2,
                           routes=(("fp32", "torch"),), classifier_width=0.125, data_dir=tiny_dataset,
                           progress=False, say=lines.append)
    student = table[table.width == 0.5].iloc[0]
    assert np.isfinite(student.dsc) and student.student_candidates == "1/2x"
    assert (student.n_seeds, student.n_accepted) == (2, 1)
    paper = table[table.width == 1.0].iloc[0]
    assert (paper.n_seeds, paper.n_accepted) == (2, 2)
    assert table[table.width == 1.0].student_candidates.fillna("").eq("").all()
    assert any(f"no accepted student: width 0.5, training seed {s1}: no student accepted after 2 candidate(s)" in s
               and "vs the teacher's 1.000" in s and "best on validation" in s for s in lines)
    assert any("width(s) [0.5]: not every training seed has an accepted student" in s for s in lines)
    check = read_acceptance(0.5, p, seed=s1, dataset=study.dataset)
    best = int(np.argmax([c["val_dsc"] for c in check.candidates]))
    long = pd.read_csv(study.results / REALTIME_SEED_FILE)
    assert tuple(long.columns) == REALTIME_SEED_COLUMNS and len(long) == len(table) * 2
    st = long[long.width == 0.5].set_index("seed")
    assert st.loc[s0, "student_candidates"] == 1 and st.loc[s0, "student_accepted"] == 0
    assert st.loc[s0, "student_used"] == 0
    assert st.loc[s1, "student_candidates"] == 2 and np.isnan(st.loc[s1, "student_accepted"])
    assert st.loc[s1, "student_used"] == best and np.isfinite(st.loc[s1, "dsc"])
    assert long[long.width == 1.0][["student_candidates", "student_accepted", "student_used"]].isna().all().all()
    # however small its drop, a variant with an unaccepted student is never shown to keep the accuracy
    fake = table.assign(dsc_drop_lo=-1.0, dsc_drop_hi=-1.0)
    keeps, loses = deployable_accuracy(fake)
    assert keeps.tolist() == (table.width == 1.0).tolist() and not loses.any()
    keeps, loses = deployable_accuracy(table.assign(dsc_drop_lo=0.5, dsc_drop_hi=0.6))
    assert loses.all() and not keeps.any()
    assert "(not accepted)" in realtime_seeds(study.results, "smoke")
    assert "students accepted on 1 of 2 seeds (candidates 1/2x)" in realtime_table(study.results, "smoke")
