"""Data import: every format quirk and bad input on small fixtures written here; the prepared-dataset contract."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from endolib.config import get_profile
from endolib.data.dataset import (
    INDEX_COLUMNS,
    check_dataset,
    cohort_table,
    load_image,
    load_index,
    load_mask,
    plot_montage,
)
from endolib.data.groups import assign_groups, assign_split, read_manifest
from endolib.data.importers import (
    Frame,
    extract_frames,
    import_folders,
    import_labelme,
    import_video,
)
from endolib.data.prepare import open_prepared, prepare_dataset
from endolib.data.readers import ImportReport, labelme_mask, read_image, read_mask
from endolib.evaluation.baseline import (
    colour_baseline,
    fit_lut_rule,
    fit_threshold_rule,
)

H, W = 20, 30


# ------------------------------------------------------------------------------------------------ fixture kit
def rgb(h=H, w=W, seed=0) -> np.ndarray:
    """Dark reddish noise with a bright block at rows 4-9, columns 6-13 (the 'tissue')."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = rng.integers(90, 140, (h, w))
    img[..., 1:] = rng.integers(10, 40, (h, w, 2))
    img[4:10, 6:14] = (240, 230, 200)
    return img


def save_jpeg_with_orientation(path: Path, arr: np.ndarray, orientation: int) -> None:
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, quality=95, exif=exif)


def labelme(shapes, path: str, h=H, w=W, **extra) -> dict:
    rec = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": path, "imageData": None,
           "imageHeight": h, "imageWidth": w}
    rec.update(extra)
    return rec


def poly(points, label="neural_tissue", kind="polygon") -> dict:
    return {"label": label, "points": points, "group_id": None, "description": "", "shape_type": kind, "flags": {},
            "mask": None}  # as LabelMe 5.3+ writes polygons


BLOCK = [[6, 4], [13, 4], [13, 9], [6, 9]]  # the bright block of rgb(), as LabelMe (x, y) points


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, np.ndarray):
        Image.fromarray(obj).save(path)
    elif isinstance(obj, (dict, list)):
        path.write_text(json.dumps(obj))
    else:
        path.write_bytes(obj)
    return path


def by_name(frames):
    return {Path(f.rel).name: f for f in frames}


def reasons(report: ImportReport, status: str) -> dict[str, str]:
    return {Path(r["file"]).name: r["reason"] for r in report.rows if r["status"] == status}


# ------------------------------------------------------------------------------------------------ LabelMe
@pytest.fixture
def labelme_dir(tmp_path) -> Path:
    """One folder with every LabelMe case the importer must handle."""
    d = tmp_path / "lm"
    for i, name in enumerate(["poly", "rect", "circle", "union", "nojson", "noshapes", "outside", "line",
                              "oldstyle"]):
        write(d / f"{name}.png", rgb(seed=i))
    write(d / "poly.json", labelme([poly(BLOCK)], "poly.png"))
    write(d / "rect.json", labelme([poly([[6, 4], [13, 9]], kind="rectangle")], "rect.png"))
    write(d / "circle.json", labelme([poly([[20, 10], [24, 10]], kind="circle")], "circle.png"))
    write(d / "union.json", labelme([poly(BLOCK), poly([[20, 12], [25, 12], [25, 16], [20, 16]])], "union.png"))
    write(d / "noshapes.json", labelme([], "noshapes.png"))
    write(d / "outside.json", labelme([poly([[-5, -3], [13, 4], [13, 40]])], "outside.png"))
    write(d / "line.json", labelme([poly([[1, 1], [9, 9]], kind="line"), poly(BLOCK)], "line.png"))
    old = {"shapes": [{"label": "nerve", "points": BLOCK, "line_color": None, "fill_color": None}],
           "imagePath": "oldstyle.png", "imageData": None, "lineColor": [0, 255, 0, 128]}  # LabelMe 3.x
    write(d / "oldstyle.json", old)
    # bad inputs
    write(d / "garbage.png", b"this is not a png")
    write(d / "notlabelme.png", rgb(seed=20))
    write(d / "notlabelme.json", {"annotations": [{"bbox": [1, 2, 3, 4]}]})
    write(d / "badjson.png", rgb(seed=21))
    write(d / "badjson.json", b"{not json")
    write(d / "twopoints.png", rgb(seed=22))
    write(d / "twopoints.json", labelme([poly([[1, 1], [5, 5]])], "twopoints.png"))
    write(d / "wrongsize.png", rgb(h=24, seed=23))
    write(d / "wrongsize.json", labelme([poly(BLOCK)], "wrongsize.png"))
    write(d / "orphan.json", labelme([poly(BLOCK)], "missing.png"))
    buf = io.BytesIO()
    Image.fromarray(rgb(seed=24)).save(buf, format="PNG")
    write(d / "twin.png", rgb(seed=25))
    Image.fromarray(rgb(seed=26)).save(d / "twin.jpg")
    write(d / "embedded.json", labelme([poly(BLOCK)], "embedded.png", imageData=base64.b64encode(buf.getvalue()).decode()))
    return d


def test_labelme_shapes_are_rasterised_like_labelme(labelme_dir):
    rep = ImportReport()
    f = by_name(import_labelme(labelme_dir, report=rep))
    block = np.zeros((H, W), bool)
    block[4:10, 6:14] = True  # PIL fills the polygon including its outline: columns 6..13, rows 4..9
    assert np.array_equal(f["poly"].mask, block)
    assert np.array_equal(f["rect"].mask, block)
    yy, xx = np.mgrid[:H, :W]
    assert f["circle"].mask.sum() > 0.8 * np.pi * 16 and not f["circle"].mask[(yy - 10) ** 2 + (xx - 20) ** 2 > 25].any()
    assert f["union"].mask.sum() == block.sum() + 6 * 5  # two shapes, united
    assert not f["nojson"].mask.any() and not f["noshapes"].mask.any()  # negatives
    assert np.array_equal(f["oldstyle"].mask, block)  # no shape_type: a polygon (LabelMe 3.x)
    assert np.array_equal(f["line"].mask, block)  # the line encloses no area
    assert f["poly"].image.shape == (H, W, 3) and np.array_equal(f["poly"].image, rgb(seed=0))


def test_labelme_bad_inputs_are_reported_by_file(labelme_dir):
    rep = ImportReport()
    frames = by_name(import_labelme(labelme_dir, report=rep))
    skipped, warned = reasons(rep, "skipped"), reasons(rep, "warning")
    assert "cannot read image" in skipped["garbage.png"] and "garbage.png" in skipped["garbage.png"]
    assert "not a LabelMe file" in skipped["notlabelme.json"]
    assert "invalid JSON" in skipped["badjson.json"]
    assert "2 point(s)" in skipped["twopoints.json"] and "at least 3" in skipped["twopoints.json"]
    assert "30x20 image but" in skipped["wrongsize.json"]
    assert "annotation without image" in skipped["orphan.json"]
    assert "clipped" in warned["outside.json"] and frames["outside"].mask.any()
    assert "encloses no area" in warned["line.json"]
    assert "imageData" in warned["embedded.json"] and frames["embedded"].mask.sum() == 48
    assert "same name" in skipped["twin.png"] and "twin" in frames  # x.jpg beside x.png: one kept, one reported
    for name in ("garbage", "notlabelme", "badjson", "twopoints", "wrongsize", "orphan"):
        assert name not in frames
    assert rep.n_skipped == 7


def test_labelme_label_filter(labelme_dir):
    frames = by_name(import_labelme(labelme_dir, labels=["something else"], report=ImportReport()))
    assert not frames["poly"].mask.any()


def test_exif_rotation_is_applied_like_labelme(tmp_path):
    raw = rgb(seed=1)  # 20 x 30 stored pixels
    (tmp_path / "lm").mkdir()
    save_jpeg_with_orientation(tmp_path / "lm" / "rot.jpg", raw, 6)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "lm" / "rot.jpg")).convert("RGB"))
    assert shown.shape == (W, H, 3)  # displayed rotated, as LabelMe shows it
    ys, xs = np.nonzero(shown.mean(2) > 200)  # the bright block, where the annotator saw it
    pts = [[int(xs.min()), int(ys.min())], [int(xs.max()), int(ys.min())], [int(xs.max()), int(ys.max())],
           [int(xs.min()), int(ys.max())]]
    write(tmp_path / "lm" / "rot.json", labelme([poly(pts)], "rot.jpg", h=W, w=H))
    rep = ImportReport()
    f = by_name(import_labelme(tmp_path / "lm", report=rep))["rot"]
    assert f.image.shape == (W, H, 3) and not rep.rows
    assert f.image[f.mask].mean() > 200 and f.image[~f.mask].mean() < 120  # mask on the block


def test_annotation_made_without_exif_is_matched_to_the_unrotated_pixels(tmp_path):
    (tmp_path / "lm").mkdir()
    save_jpeg_with_orientation(tmp_path / "lm" / "rot.jpg", rgb(seed=1), 6)
    write(tmp_path / "lm" / "rot.json", labelme([poly(BLOCK)], "rot.jpg", h=H, w=W))  # raw orientation
    rep = ImportReport()
    f = by_name(import_labelme(tmp_path / "lm", report=rep))["rot"]
    assert f.image.shape == (H, W, 3) and f.image[f.mask].mean() > 200
    assert "unrotated pixels" in reasons(rep, "warning")["rot.json"]


# ------------------------------------------------------------------------------------------------ folders
@pytest.fixture
def folders(tmp_path):
    img_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    block = np.zeros((H, W), np.uint8)
    block[4:10, 6:14] = 1
    for i, name in enumerate(["png01", "png0255", "jpegnoise", "rgbmask", "sixteen", "palette", "nomask",
                              "P01/nested", "wrongsize"]):
        write(img_dir / f"{name}.png", rgb(seed=i))
    write(mask_dir / "png01_mask.png", block)
    write(mask_dir / "png0255_mask.png", block * 255)
    Image.fromarray(block * 255).save(mask_dir / "jpegnoise_mask.jpg", quality=60)
    write(mask_dir / "rgbmask_mask.png", np.stack([block * 255] * 3, axis=2))
    Image.fromarray(block.astype(np.uint16) * 65535).save(mask_dir / "sixteen_mask.png")
    pal = Image.fromarray(block, mode="P")
    pal.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    pal.save(mask_dir / "palette_mask.png")
    write(mask_dir / "P01" / "nested_mask.png", block * 255)
    write(mask_dir / "wrongsize_mask.png", np.zeros((H + 2, W), np.uint8))
    write(mask_dir / "lonely_mask.png", block * 255)
    return img_dir, mask_dir, block.astype(bool)


def test_folder_masks_in_every_format(folders):
    img_dir, mask_dir, block = folders
    rep = ImportReport()
    f = by_name(import_folders(img_dir, mask_dir, mask_suffix="_mask", report=rep))
    for name in ("png01", "png0255", "jpegnoise", "rgbmask", "sixteen", "palette", "nested"):
        assert np.array_equal(f[name].mask, block), name
    assert f["nested"].rel == "P01/nested"
    assert not f["nomask"].mask.any() and "no mask found" in reasons(rep, "warning")["nomask.png"]
    skipped = reasons(rep, "skipped")
    assert "mask without image" in skipped["lonely_mask.png"]
    assert "wrongsize_mask.png: mask is 30x22 but its image" in skipped["wrongsize.png"]
    assert "wrongsize" not in f


def test_folder_masks_beside_images_need_a_suffix(tmp_path):
    write(tmp_path / "a.png", rgb())
    write(tmp_path / "a_mask.png", np.zeros((H, W), np.uint8))
    frames = import_folders(tmp_path, mask_suffix="_mask", report=ImportReport())
    assert [f.rel for f in frames] == ["a"]
    with pytest.raises(ValueError, match="mask_suffix"):
        import_folders(tmp_path, tmp_path)


def test_folder_mask_drawn_on_unrotated_pixels_is_rotated_with_its_image(tmp_path):
    raw = rgb(seed=2)
    (tmp_path / "img").mkdir()
    save_jpeg_with_orientation(tmp_path / "img" / "a.jpg", raw, 8)
    write(tmp_path / "msk" / "a.png", ((raw.mean(2) > 200) * 255).astype(np.uint8))  # on the stored grid
    write(tmp_path / "img" / "b.png", rgb(seed=3))
    write(tmp_path / "msk" / "b.png", np.zeros((H, W), np.uint8))
    rep = ImportReport()
    f = by_name(import_folders(tmp_path / "img", tmp_path / "msk", report=rep))
    assert f["a"].image.shape == (W, H, 3)
    assert f["a"].image[f["a"].mask].mean() > 200 and f["a"].mask.sum() == 48
    assert "before its EXIF rotation" in reasons(rep, "warning")["a.png"]


def test_lossy_01_mask_is_flagged_not_silently_empty(tmp_path):
    m = np.zeros((H, W), np.uint8)
    m[4:10, 6:14] = 3  # e.g. a 0/1 mask after a lossy conversion
    write(tmp_path / "m.png", m)
    rep = ImportReport()
    assert not read_mask(tmp_path / "m.png", report=rep).any()
    assert "half range" in rep.rows[0]["reason"]


def test_unreadable_files_name_themselves(tmp_path):
    write(tmp_path / "x.png", b"\x89PNG broken")
    with pytest.raises(ValueError, match=r"x\.png: cannot read image"):
        read_image(tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")


# ------------------------------------------------------------------------------------------------ video
def write_video(path: Path, n: int = 30, fps: int = 5, size=(32, 48)) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        for k in range(n):
            frame = np.full((*size, 3), 8 * k, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_frames_are_extracted_at_the_interval(tmp_path):
    write_video(tmp_path / "op1.mp4")  # 6 s at 5 fps, frame k has grey level 8k
    out = extract_frames(tmp_path / "op1.mp4", tmp_path / "frames", interval_s=2.0)
    assert [t for _, t in out] == [0.0, 2.0, 4.0]
    assert [p.name for p, _ in out] == ["op1_t00000000ms.png", "op1_t00002000ms.png", "op1_t00004000ms.png"]
    levels = [np.asarray(Image.open(p)).mean() for p, _ in out]
    assert np.allclose(levels, [0, 80, 160], atol=6)
    again = extract_frames(tmp_path / "op1.mp4", tmp_path / "frames", interval_s=2.0)  # resumable
    assert [p for p, _ in again] == [p for p, _ in out]


def test_video_import_asks_for_annotations_then_imports_them(tmp_path):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "op1.mp4")
    write(tmp_path / "videos" / "broken.mp4", b"not a video")
    rep = ImportReport()
    with pytest.raises(ValueError, match="none is annotated yet.*LabelMe"):
        import_video(tmp_path / "videos", tmp_path / "frames", 2.0, report=rep)
    assert "broken.mp4" in reasons(rep, "skipped")
    write(tmp_path / "frames" / "op1" / "op1_t00002000ms.json",
          labelme([poly([[2, 2], [20, 2], [20, 20]])], "op1_t00002000ms.png", h=32, w=48))
    frames = import_video(tmp_path / "videos", tmp_path / "frames", 2.0, report=ImportReport())
    assert [(Path(f.rel).name, f.time_s, bool(f.mask.any())) for f in frames] == [
        ("op1_t00000000ms", 0.0, False), ("op1_t00002000ms", 2.0, True), ("op1_t00004000ms", 4.0, False)]


# ------------------------------------------------------------------------------------------------ groups
def manifest_file(tmp_path, rows) -> Path:
    p = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="needs an 'operation_id' column"):
        read_manifest(manifest_file(tmp_path, [{"patient": "P1"}]))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        read_manifest(manifest_file(tmp_path, [{"patient_id": "P1", "operation_id": "O1", "split": "val"}]))
    with pytest.raises(ValueError, match="patient P1 is in both splits"):
        read_manifest(manifest_file(tmp_path, [{"patient_id": "P1", "operation_id": "O1", "split": "train"},
                                                 {"patient_id": "P1", "operation_id": "O2", "split": "test"}]))
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")


def frames_named(*rels):
    return [Frame(r, f"/src/{r}.png", np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), bool)) for r in rels]


def test_frames_find_their_operation_by_folder_or_prefix(tmp_path):
    man = read_manifest(manifest_file(tmp_path, [
        {"patient_id": "P1", "operation_id": "OP1", "age": 60, "sex": "F", "split": "train"},
        {"patient_id": "P1", "operation_id": "OP12", "age": 60, "sex": "F", "split": "train"},
        {"patient_id": "P2", "operation_id": "OP2", "age": 70, "sex": "M", "split": "test"}]))
    rep = ImportReport()
    g = assign_groups(frames_named("OP1/a", "OP12_f3", "x/OP2-5", "zz_1"), man, report=rep).set_index("rel")
    assert g.loc["OP1/a", "operation_id"] == "OP1" and g.loc["OP12_f3", "operation_id"] == "OP12"
    assert g.loc["x/OP2-5", ["patient_id", "split", "sex"]].tolist() == ["P2", "test", "M"]
    assert "zz_1" not in g.index and "no manifest row" in rep.rows[0]["reason"]


def test_group_pattern_named_unnamed_and_unmatched():
    frames = frames_named("P01/op2/f1", "P02/op1/f1", "misc/f9")
    rep = ImportReport()
    g = assign_groups(frames, group_pattern=r"(?P<patient>P\d+)/(?P<operation>op\d)", report=rep)
    assert g[["patient_id", "operation_id"]].values.tolist() == [["P01", "op2"], ["P02", "op1"]]
    assert "does not match group_pattern" in rep.rows[0]["reason"]
    g = assign_groups(frames[:2], group_pattern=r"^(P\d+)/")
    assert g["patient_id"].tolist() == ["P01", "P02"] and g["operation_id"].tolist() == ["P01", "P02"]
    with pytest.raises(ValueError, match="needs a group"):
        assign_groups(frames, group_pattern=r"P\d+")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        assign_groups(frames, group_pattern=r"(P")


def test_split_is_by_patient_and_seeded():
    g = pd.DataFrame({"patient_id": [f"P{i // 3}" for i in range(42)], "split": [""] * 42})
    s = assign_split(g, seed=1)
    assert g.assign(s=s).groupby("patient_id")["s"].nunique().max() == 1
    assert (g.patient_id[s == "test"].nunique(), g.patient_id[s == "train"].nunique()) == (3, 11)
    assert s.equals(assign_split(g, seed=1)) and not s.equals(assign_split(g, seed=2))


# ------------------------------------------------------------------------------------------------ prepare
@pytest.fixture
def study(tmp_path):
    """A small LabelMe study: 6 patients (one operated twice), one folder per operation, a manifest."""
    lm = tmp_path / "study"
    rows = []
    for p in range(6):
        ops = [f"S{p}A", f"S{p}B"] if p == 0 else [f"S{p}A"]
        for op in ops:
            rows.append({"patient_id": f"P{p}", "operation_id": op, "procedure": "lumbar interlaminar",
                         "level": "L4-5", "age": 50 + p, "sex": "MF"[p % 2], "split": "test" if p < 2 else "train"})
            for k in range(3):
                stem = f"{op}_t{k * 10000:08d}ms"
                write(lm / op / f"{stem}.png", rgb(seed=p * 10 + k))
                if k != 1:
                    write(lm / op / f"{stem}.json", labelme([poly(BLOCK)], f"{stem}.png"))
    write(lm / rows[0]["operation_id"] / "broken.png", b"junk")
    return lm, manifest_file(tmp_path, rows)


def test_prepared_dataset_follows_the_layout(study, tmp_path):
    lm, man = study
    out = tmp_path / "prepared"
    prep = prepare_dataset("labelme", out, labelme_dir=lm, manifest=man, progress=False)
    ix = pd.read_csv(out / "index.csv", dtype=str, keep_default_na=False)
    assert list(ix.columns) == INDEX_COLUMNS and ix["frame_id"].tolist() == sorted(ix["frame_id"])
    assert len(ix) == 21 and prep.index["has_tissue"].sum() == 14
    row = prep.index.set_index("frame_id").loc["S0B__S0B_t00010000ms"]
    assert (row.patient_id, row.operation_id, row.split, row.time_s, row.height, row.width) == (
        "P0", "S0B", "test", 10.0, H, W)
    m = Image.open(out / row["mask"])
    assert m.mode == "L" and set(np.unique(np.asarray(m))) <= {0, 255}
    assert Image.open(out / row["image"]).mode == "RGB"
    rep = pd.read_csv(out / "report.csv")
    assert rep[["status"]].values.ravel().tolist() == ["skipped"] and "broken.png" in rep["file"][0]
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["params"]["source"] == "labelme" and meta["complete"] and "packages" in meta["environment"]
    assert prep.grouped and "no patient in both splits" in prep.split_note()
    counts = check_dataset(out).set_index("split")
    assert counts.loc["test", "patients"] == 2 and counts.loc["test", "operations"] == 3


def test_prepared_dataset_is_reused_or_protected(study, tmp_path):
    lm, man = study
    out = tmp_path / "prepared"
    prepare_dataset("labelme", out, labelme_dir=lm, manifest=man, progress=False)
    again = prepare_dataset("labelme", out, labelme_dir=lm, manifest=man, progress=False)
    assert again.reused
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_dataset("labelme", out, labelme_dir=lm, manifest=man, seed=3, progress=False)
    assert not prepare_dataset("labelme", out, labelme_dir=lm, manifest=man, seed=3, overwrite=True,
                                 progress=False).reused
    write(lm / "S1A" / "S1A_t00010000ms.json", labelme([poly(BLOCK)], "S1A_t00010000ms.png"))  # new annotation
    redone = prepare_dataset("labelme", out, labelme_dir=lm, manifest=man, seed=3, progress=False)
    assert not redone.reused and redone.index["has_tissue"].sum() == 15
    write(tmp_path / "other" / "thesis.docx", b"precious")
    with pytest.raises(FileExistsError, match="not a prepared dataset"):
        prepare_dataset("labelme", tmp_path / "other", labelme_dir=lm, manifest=man, progress=False)
    with pytest.raises(ValueError, match="output_dir is required"):
        prepare_dataset("labelme", labelme_dir=lm, progress=False)
    with pytest.raises(ValueError, match="unknown source"):
        prepare_dataset("dicom", out, progress=False)


def test_without_groups_the_split_is_by_file_and_says_so(study, tmp_path):
    lm, _ = study
    with pytest.warns(UserWarning, match="split is by file"):
        prep = prepare_dataset("labelme", tmp_path / "p", labelme_dir=lm, progress=False)
    assert not prep.grouped and "IMPOSSIBLE" in prep.split_note() and "IMPOSSIBLE" in prep.messages[0]
    assert set(prep.index["split"]) == {"train", "test"}
    assert prep.index["patient_id"].is_unique  # each file is its own group downstream (CV folds, bootstrap)
    assert not prepare_dataset("labelme", tmp_path / "p", labelme_dir=lm, progress=False).grouped  # reused


def test_patient_in_both_splits_is_refused(tiny_dataset):
    ix = pd.read_csv(tiny_dataset / "index.csv")
    ix.loc[ix.index[0], "split"] = "test" if ix.loc[ix.index[0], "split"] == "train" else "train"
    ix.to_csv(tiny_dataset / "index.csv", index=False)
    with pytest.raises(ValueError, match=r"patient P01 is in both splits \(train: .*; test: .*\)"):
        load_index(tiny_dataset)


def test_load_functions(tiny_dataset, tmp_path):
    ix = load_index(tiny_dataset)
    fid = ix.frame_id[0]
    assert load_image(tiny_dataset, fid).shape == (40, 48, 3)
    assert load_image(tiny_dataset, fid, size=16).shape == (16, 16, 3)
    m = load_mask(tiny_dataset, fid, size=(10, 12))
    assert m.shape == (10, 12) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    with pytest.raises(FileNotFoundError, match=r"python -m endolib run --profile quick --only 01"):
        load_index(tmp_path / "data" / "quick" / "phantom")
    dup = pd.read_csv(tiny_dataset / "index.csv")
    pd.concat([dup, dup.head(1)]).to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(ValueError, match="duplicate frame_id"):
        load_index(tmp_path)


def test_check_dataset_catches_an_inconsistent_mask(tiny_dataset):
    ix = load_index(tiny_dataset)
    neg = ix[ix.has_tissue == 0].frame_id.iloc[0]
    m = np.zeros((40, 48), np.uint8)
    m[3, 3] = 255
    Image.fromarray(m).save(tiny_dataset / "masks" / f"{neg}.png")
    with pytest.raises(ValueError, match=f"{neg}.png: has_tissue=0 but the mask is non-empty"):
        check_dataset(tiny_dataset)


def test_cohort_table_and_montage(tiny_dataset):
    t = cohort_table(load_index(tiny_dataset)).set_index("characteristic")
    assert t.loc["patients", ["train", "test"]].tolist() == ["4", "2"]
    assert t.loc["images with neural tissue", "train"] == "12 (50.0%)"
    assert t.loc["age, years (mean ± SD)", "test"] == "64.5 ± 0.7" and t.loc["patients", "paper_train"] == "22"
    fig = plot_montage(tiny_dataset, n=4)
    assert len([a for a in fig.axes if a.images]) == 4


def test_phantom_goes_through_the_labelme_path(tmp_path):
    prof = get_profile("smoke", phantom_size=32, frames_per_operation=2, video_fps=0.1)
    prep = prepare_dataset("phantom", tmp_path / "ph", profile=prof, progress=False)
    ix = prep.index
    assert len(ix) == 58 and ix.patient_id.nunique() == 28 and ix.operation_id.nunique() == 29
    assert ix.groupby("split").patient_id.nunique().to_dict() == {"test": 6, "train": 22}
    assert prep.report.empty and ix["source"].str.contains("ph_raw/labelme/OP").all()
    assert (tmp_path / "ph_raw" / "manifest.csv").exists() and (tmp_path / "ph_raw" / "videos" / "OP01.mp4").exists()


# ------------------------------------------------------------------------------------------------ baseline
def test_colour_baseline_finds_a_colour_coded_target(tiny_dataset):
    table, rules = colour_baseline(tiny_dataset, profile="smoke", size=24)
    assert set(table["rule"]) == {"threshold", "colour_lut"}
    assert (table["dsc"] > 0.9).all()  # conftest's tissue is a yellowish ellipse on red noise
    assert {"dsc", "train_dsc", "description"} <= set(table.columns)


def test_colour_rules_fail_where_colour_is_shared():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    mask = np.zeros((6, 16, 16), bool)
    mask[:, 4:12, 4:12] = True  # tissue has the same colours as everything else
    unseen = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    for rule in (fit_threshold_rule(img, mask), fit_lut_rule(img, mask)):
        pred = rule.predict(unseen)
        dsc = 2 * (pred & mask).sum() / (pred.sum() + mask.sum())
        assert dsc < 0.6
    with pytest.raises(ValueError, match="no tissue pixel"):
        fit_threshold_rule(img, np.zeros_like(mask))


def test_open_prepared_describes_an_existing_dataset(tiny_dataset):
    prep = open_prepared(tiny_dataset)
    assert prep.reused and prep.grouped and len(prep.index) == 36 and prep.report.empty
    assert "4 train / 2 test patients" in prep.split_note()


def test_labelme_ai_mask_shape_is_pasted_at_its_box():
    m = np.zeros((6, 8), np.uint8)
    m[1:5, 2:7] = 1
    buf = io.BytesIO()
    Image.fromarray(m * 255).save(buf, format="PNG")
    shape = poly([[10, 5], [17, 10]], kind="mask")
    shape["mask"] = base64.b64encode(buf.getvalue()).decode()
    got = labelme_mask(labelme([shape], "x.png"), H, W)
    want = np.zeros((H, W), bool)
    want[5:11, 10:18] = m.astype(bool)
    assert np.array_equal(got, want)
