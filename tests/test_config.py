import pytest

from endolib.config import (
    CLASSIFIERS,
    MODELS,
    PROFILES,
    SEGMENTERS,
    dataset_name,
    get_profile,
    paths,
    require,
    study_paths,
)


def test_profiles_exist_and_scale():
    assert set(PROFILES) == {"smoke", "quick", "paper"}
    s, q, p = (PROFILES[k] for k in ("smoke", "quick", "paper"))
    assert s.seg_size <= q.seg_size <= p.seg_size and s.seg_epochs <= q.seg_epochs <= p.seg_epochs
    # the paper profile is the paper's protocol
    assert (p.cls_size, p.seg_size, p.segformer_size, p.width_mult) == (224, 256, 512, 1.0)
    assert (p.folds, p.search_trials, p.cls_epochs, p.expand) == (3, 10, 50, 3)
    assert (p.colour_jitter, p.per_task, p.per_model) == (0.0, {}, {})  # augmentation as the paper lists it, one protocol


def test_per_task_settings_apply_before_overrides():
    from endolib.config import Profile
    from endolib.training.settings import training_settings

    q = PROFILES["quick"]
    assert q.for_task("cls").lr == q.per_task["cls"]["lr"] and q.for_task("seg").lr == q.per_task["seg"]["lr"]
    assert training_settings("resnet18", "quick").profile.lr == q.per_task["cls"]["lr"]
    assert training_settings("resnet18", "quick", lr=5e-4).profile.lr == 5e-4  # the notebook's value wins
    assert training_settings("unet", "quick").profile.batch_size == q.batch_size
    with pytest.raises(ValueError, match="per_task keys must be 'cls' or 'seg'"):
        Profile(name="x", per_task={"classifier": {"lr": 1e-3}})
    with pytest.raises(ValueError, match=r"unknown per_task\['cls'\] setting\(s\) \['lrate'\]"):
        Profile(name="x", per_task={"cls": {"lrate": 1e-3}})
    with pytest.raises(ValueError, match="task must be"):
        q.for_task("det")


def test_per_model_settings_apply_after_per_task():
    from endolib.config import Profile
    from endolib.training.settings import training_settings

    q = PROFILES["quick"]
    assert q.per_model, "the quick profile sets MobileNetV3-L's width apart"
    for arch, settings in q.per_model.items():
        s = training_settings(arch, "quick")
        assert all(getattr(s.profile, k) == v for k, v in settings.items())
    assert training_settings("mobilenetv3_large", "quick").model_kwargs["width_mult"] == 1.0
    assert training_settings("resnet18", "quick").model_kwargs["width_mult"] == q.width_mult  # only that model
    assert training_settings("mobilenetv3_large", "quick").profile.lr == q.per_task["cls"]["lr"]  # task's too
    assert training_settings("mobilenetv3_large", "quick", width_mult=0.5).model_kwargs["width_mult"] == 0.5
    with pytest.raises(ValueError, match="per_model keys must be registry names"):
        Profile(name="x", per_model={"mobilenet": {"width_mult": 1.0}})
    with pytest.raises(ValueError, match=r"unknown per_model\['unet'\] setting\(s\) \['widht'\]"):
        Profile(name="x", per_model={"unet": {"widht": 1.0}})
    with pytest.raises(ValueError, match="unknown architecture"):
        q.for_model("vgg16")


def test_overrides_ignore_none_and_reject_unknown():
    p = get_profile("quick", seg_epochs=None, lr=0.01)
    assert p.seg_epochs == PROFILES["quick"].seg_epochs and p.lr == 0.01
    assert PROFILES["quick"].lr != 0.01  # the registry is not mutated
    with pytest.raises(ValueError, match="unknown profile setting"):
        get_profile("quick", epochz=3)


def test_unknown_profile_lists_valid():
    with pytest.raises(ValueError, match="smoke, quick, paper"):
        get_profile("fast")


def test_paths_layout(tmp_path):
    p = paths("quick", root=tmp_path)
    assert p.phantom == tmp_path / "data" / "quick" / "phantom"
    assert p.run("unet") == tmp_path / "runs" / "quick" / "unet"
    assert p.results == tmp_path / "results" / "quick"
    assert p.figures == tmp_path / "figures"
    assert paths("smoke", root=tmp_path).figures == tmp_path / "runs" / "smoke" / "figures"


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_dataset_layout_is_apart_from_the_phantom_study(tmp_path, profile):
    p = paths(profile, root=tmp_path, dataset="mine")
    assert p.run("unet", 42) == tmp_path / "runs" / profile / "mine" / "unet" / "seed42"
    assert p.results == tmp_path / "results" / profile / "mine"
    assert p.figures == tmp_path / "results" / profile / "mine" / "figures"
    assert p.phantom == paths(profile, root=tmp_path).phantom  # the default data stays the phantom's


def test_dataset_name_keys_by_given_name_or_folder(tmp_path):
    phantom = paths("quick", root=tmp_path).phantom
    assert dataset_name(None, "quick", root=tmp_path) is None
    assert dataset_name(phantom, "quick", root=tmp_path) is None
    assert dataset_name(tmp_path / "data" / "mine", "quick", root=tmp_path) == "mine"
    assert dataset_name(tmp_path / "data" / "mine", "quick", "cohort2", root=tmp_path) == "cohort2"
    assert study_paths("quick", phantom, root=tmp_path) == paths("quick", root=tmp_path)
    assert study_paths("quick", tmp_path / "x", root=tmp_path).results == tmp_path / "results" / "quick" / "x"


@pytest.mark.parametrize("name", ["unet", "unet_w0.5", "figures", "a/b", "", ".hidden"])
def test_dataset_name_refuses_names_of_the_phantom_study(tmp_path, name):
    with pytest.raises(ValueError, match="dataset name"):
        paths("quick", root=tmp_path, dataset=name)


def test_registry_names():
    assert len(MODELS) == 11 and set(CLASSIFIERS).isdisjoint(SEGMENTERS)


def test_require_names_file_and_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.*--only 01"):
        require(tmp_path / "nope", "the prepared dataset", "python -m endolib run --profile smoke --only 01")
    assert require(tmp_path, "x", "y") == tmp_path


def test_bf16_amx_is_bf16_only_where_amx_multiplies_it(tmp_path, monkeypatch):
    import torch

    from endolib import device
    from endolib.device import autocast_dtype, cpu_has_amx_bf16

    amx, zen4 = tmp_path / "amx", tmp_path / "zen4"
    amx.write_text("model name\t: Xeon\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n")
    zen4.write_text("model name\t: EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_has_amx_bf16(str(amx), environ={}) and not cpu_has_amx_bf16(str(zen4), environ={})
    assert not cpu_has_amx_bf16(str(tmp_path / "missing"), environ={})
    # a run with oneDNN capped below AMX (the other-numerics rerun) trains in full precision
    assert not cpu_has_amx_bf16(str(amx), environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    assert not cpu_has_amx_bf16(str(amx), environ={"DNNL_MAX_CPU_ISA": "AVX2"})
    assert cpu_has_amx_bf16(str(amx), environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"})
    cpu = torch.device("cpu")
    for has, want in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(device, "cpu_has_amx_bf16", lambda has=has: has)
        assert autocast_dtype("bf16-amx", cpu) is want
        assert autocast_dtype("auto", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="amp must be one of"):
        autocast_dtype("bf17", cpu)
    with pytest.raises(ValueError, match="amp must be one of"):
        get_profile("quick", amp="bf17")


def test_quick_trains_in_full_precision():
    # bf16 on AMX changed a verdict of the quick study for 49 s of 33 minutes (config.py): every quick model trains
    # in full precision, on every CPU, and so do the tests
    assert {PROFILES["quick"].for_model(m).amp for m in MODELS} == {"off"}
    assert PROFILES["smoke"].amp == "off"
