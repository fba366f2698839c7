"""The synthetic BESS phantom: cohort shape, determinism, rendering, LabelMe output, videos, reuse rules."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from endolib.data.phantom import (
    _split_positives,
    frame_name,
    generate_phantom,
    labelme_record,
    make_cohort,
    mask_to_polygons,
    operation_scene,
)
from endolib.data.phantom_render import COHORT, frame_times, make_scene, render_frame
from endolib.data.readers import labelme_mask

TINY = dict(phantom_size=32, frames_per_operation=2, video_fps=0.2)  # 29 operations x 2 frames of 32 px


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "raw"
    return generate_phantom("smoke", out_dir=out, progress=False, **TINY)


# ------------------------------------------------------------------------------------------------ cohort
def test_cohort_is_shaped_like_table1():
    c = make_cohort(42)
    assert len(c) == 29 and c["operation_id"].is_unique
    pats = c.drop_duplicates("patient_id")
    assert len(pats) == 28
    assert pats.groupby("split").size().to_dict() == {"test": 6, "train": 22}
    assert c.groupby("split").size().to_dict() == {"test": 7, "train": 22}
    twice = c.groupby("patient_id").size()
    assert (twice == 2).sum() == 1 and c.loc[c.patient_id == twice.idxmax(), "split"].eq("test").all()
    assert c.groupby("procedure").size().to_dict() == {
        "cervical foraminotomy": 3, "lumbar foraminal decompression": 5, "lumbar interlaminar decompression": 21}
    for proc, (_, levels) in COHORT["procedures"].items():
        assert set(c.loc[c.procedure == proc, "level"]) <= set(levels)
    for split, (mean, sd) in COHORT["age_mean_sd"].items():
        ages = pats.loc[pats.split == split, "age"]
        assert abs(ages.mean() - mean) < 0.3 and abs(ages.std(ddof=1) - sd) < 0.3
    sex = pats.groupby(["split", "sex"]).size()
    assert (sex["train", "M"], sex["train", "F"], sex["test", "M"], sex["test", "F"]) == (9, 13, 3, 3)


def test_cohort_is_a_function_of_the_seed():
    pd.testing.assert_frame_equal(make_cohort(7), make_cohort(7))
    assert not make_cohort(7).equals(make_cohort(8))


def test_split_positives_match_the_paper_shares():
    c = make_cohort(42)
    pos = _split_positives(c, {"frames_per_operation": 24}, 42)
    n = c.assign(pos=c.operation_id.map(pos)).groupby("split")["pos"].sum()
    assert n["train"] == round(0.495 * 24 * 22) and n["test"] == round(0.363 * 24 * 7)
    assert all(0 <= v <= 24 for v in pos.values())


def test_test_operations_have_their_own_frame_count():
    """The quick test set has the paper's size (about 1749 frames, 635 with tissue) while the training side stays
    small; the training operations' positives do not depend on the test count."""
    c = make_cohort(42)
    params = {"frames_per_operation": 24, "test_frames_per_operation": 250}
    pos = _split_positives(c, params, 42)
    n = c.assign(pos=c.operation_id.map(pos)).groupby("split")["pos"].sum()
    assert n["test"] == 635 and n["train"] == round(0.495 * 24 * 22)
    train_ops = c.loc[c.split == "train", "operation_id"]
    assert {o: pos[o] for o in train_ops} == {o: v for o, v in _split_positives(
        c, {"frames_per_operation": 24}, 42).items() if o in set(train_ops)}
    test_op = c.loc[c.split == "test", "operation_id"].iloc[0]
    assert len(operation_scene({"seed": 42, "size": 32, "interval_s": 10.0, **params}, test_op).key_times) == 250


# ------------------------------------------------------------------------------------------------ render
@pytest.fixture(scope="module")
def scene():
    return make_scene({"procedure": "lumbar interlaminar decompression", "split": "train"}, 64, 6, 10.0, seed=3)


def test_render_is_deterministic_and_moves(scene):
    a, ma = render_frame(scene, 20.0)
    b, mb = render_frame(scene, 20.0)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    c, _ = render_frame(scene, 25.0)
    assert np.abs(a.astype(int) - c).mean() > 2  # the camera and instruments move between 20 s and 25 s
    again = make_scene({"procedure": "lumbar interlaminar decompression", "split": "train"}, 64, 6, 10.0, seed=3)
    assert np.array_equal(render_frame(again, 20.0)[0], a)


def test_frame_has_dark_corners_and_bright_field_of_view(scene):
    img, mask = render_frame(scene, 0.0)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert img[:3, :3].mean() < 15 and img[28:36, 28:36].mean() > 60
    assert mask.min() >= 0 and mask.max() <= 1 and mask[:3, :3].max() == 0  # nothing annotated outside the FOV


def test_key_poses_follow_the_positive_schedule(scene):
    for t, positive in zip(scene.key_times, scene.key_positive):
        _, mask = render_frame(scene, float(t))
        visible = (mask > 0.5).mean()
        assert (visible > 0.02) if positive else (visible == 0), (t, positive, visible)


def test_frame_names_carry_the_time():
    assert frame_name("OP03", 20.0) == "OP03_t00020000ms"
    assert frame_times(3, 10.0).tolist() == [0.0, 10.0, 20.0]


# ------------------------------------------------------------------------------------------------ labelme
def test_polygons_trace_the_mask_without_holes():
    yy, xx = np.mgrid[:40, :50]
    soft = ((yy - 20) ** 2 / 144 + (xx - 25) ** 2 / 300 <= 1).astype(float)
    soft[18:22, 23:27] = 0  # a hole: LabelMe polygons cannot hold it, the outline is kept
    soft[2:4, 2:4] = 1  # a speck below min_area: dropped
    polys = mask_to_polygons(soft, min_area=10)
    assert len(polys) == 1 and len(polys[0]) < 60  # simplified, as an annotator's outline
    rec = labelme_record(polys, "f.png", 40, 50)
    got = labelme_mask(rec, 40, 50)
    filled = ((yy - 20) ** 2 / 144 + (xx - 25) ** 2 / 300 <= 1)
    iou = (got & filled).sum() / (got | filled).sum()
    assert iou > 0.93


def test_labelme_record_is_exactly_what_labelme_writes():
    rec = labelme_record([np.array([[1.0, 1.0], [5.0, 1.0], [5.0, 4.0]])], "a.png", 8, 9)
    assert list(rec) == ["version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"]
    assert list(rec["shapes"][0]) == ["label", "points", "group_id", "description", "shape_type", "flags"]
    assert rec["imageData"] is None and rec["shapes"][0]["shape_type"] == "polygon"
    assert rec["shapes"][0]["points"] == [[1.0, 1.0], [5.0, 1.0], [5.0, 4.0]]
    assert json.loads(json.dumps(rec)) == rec


# ------------------------------------------------------------------------------------------------ writer
def test_generated_folder_is_a_labelme_dataset(tiny_raw):
    man = pd.read_csv(tiny_raw / "manifest.csv")
    assert list(man.columns) == ["patient_id", "operation_id", "procedure", "level", "age", "sex", "split"]
    pngs = sorted((tiny_raw / "labelme").rglob("*.png"))
    jsons = sorted((tiny_raw / "labelme").rglob("*.json"))
    assert len(pngs) == 29 * 2 and 0 < len(jsons) < len(pngs)
    meta = json.loads((tiny_raw / "phantom.json").read_text())
    assert meta["frames"] == 58 and meta["positives"] == len(jsons) and meta["frames_per_s"] > 0
    rec = json.loads(jsons[0].read_text())
    assert rec["imagePath"] == jsons[0].with_suffix(".png").name and (rec["imageHeight"], rec["imageWidth"]) == (32, 32)
    assert all(len(s["points"]) >= 3 for s in rec["shapes"])
    assert Image.open(pngs[0]).size == (32, 32) and Image.open(pngs[0]).mode == "RGB"


def test_scene_rebuilt_from_params_reproduces_the_files(tiny_raw):
    params = json.loads((tiny_raw / "phantom.json").read_text())["params"]
    scene = operation_scene(params, "OP05")
    img, _ = render_frame(scene, 10.0)
    assert np.array_equal(img, np.asarray(Image.open(tiny_raw / "labelme" / "OP05" / "OP05_t00010000ms.png")))
    with pytest.raises(ValueError, match="not in the phantom cohort"):
        operation_scene(params, "OP99")


def test_videos_hold_the_annotated_frames(tiny_raw):
    import av

    with av.open(str(tiny_raw / "videos" / "OP02.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == round(2 * 10.0 * 0.2)  # frames_per_operation x interval_s x video_fps
    png = np.asarray(Image.open(tiny_raw / "labelme" / "OP02" / "OP02_t00010000ms.png")).astype(int)
    assert np.abs(frames[2].astype(int) - png).mean() < 6  # frame 2 is at 10 s; only codec loss


def test_same_parameters_reuse_other_parameters_refuse(tiny_raw, tmp_path):
    stamp = (tiny_raw / "phantom.json").stat().st_mtime_ns
    assert generate_phantom("smoke", out_dir=tiny_raw, progress=False, **TINY) == tiny_raw
    assert (tiny_raw / "phantom.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_phantom("smoke", out_dir=tiny_raw, progress=False, **{**TINY, "phantom_size": 48})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a phantom")
    with pytest.raises(FileExistsError, match="not a phantom"):
        generate_phantom("smoke", out_dir=tmp_path / "mine", progress=False, **TINY)


def test_overwrite_regenerates_deterministically(tmp_path):
    kw = dict(progress=False, videos=False, phantom_size=24, frames_per_operation=1)
    a = generate_phantom("smoke", out_dir=tmp_path / "a", **kw)
    first = (a / "labelme" / "OP07" / "OP07_t00000000ms.png").read_bytes()
    generate_phantom("smoke", out_dir=a, overwrite=True, seed=5, **kw)
    generate_phantom("smoke", out_dir=a, overwrite=True, **kw)
    assert (a / "labelme" / "OP07" / "OP07_t00000000ms.png").read_bytes() == first
    assert not (a / "videos").exists()


def test_operations_rendered_in_parallel_are_the_same_files(tmp_path):
    kw = dict(progress=False, phantom_size=24, frames_per_operation=1)
    one = generate_phantom("smoke", out_dir=tmp_path / "one", workers=1, **kw)
    two = generate_phantom("smoke", out_dir=tmp_path / "two", workers=2, **kw)
    files = sorted(f.relative_to(one) for f in one.rglob("*") if f.is_file() and f.name != "phantom.json")
    assert files == sorted(f.relative_to(two) for f in two.rglob("*") if f.is_file() and f.name != "phantom.json")
    assert any(f.suffix == ".mp4" for f in files) and any(f.suffix == ".json" for f in files)
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    counts = [{k: v for k, v in json.loads((d / "phantom.json").read_text()).items()
               if k not in ("seconds", "frames_per_s")} for d in (one, two)]
    assert counts[0] == counts[1]
