"""The table of bad inputs an import must handle (issue 25; listed for users in docs/data_import.md).

Every case builds small synthetic files, runs the import and asserts the message (the file named, the fix) and that
nothing else was lost or written: the input files are unchanged, a failed import leaves no prepared dataset (so the
corrected rerun needs no ``overwrite``), and the good frames beside a bad one are still imported.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from endolib.data.importers import import_folders, import_labelme, import_video
from endolib.data.prepare import prepare_dataset
from endolib.data.readers import ImportReport, read_mask

H, W = 20, 30
BLOCK = np.zeros((H, W), np.uint8)
BLOCK[4:10, 6:14] = 255


# ------------------------------------------------------------------------------------------------ fixture kit
def rgb(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(10, 140, (H, W, 3)).astype(np.uint8)
    img[4:10, 6:14] = (240, 230, 200)
    return img


def save(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, np.ndarray):
        Image.fromarray(obj).save(path)
    elif isinstance(obj, str):
        path.write_text(obj)
    else:
        path.write_bytes(obj)
    return path


def tree_hash(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its bytes: what 'nothing lost or changed' compares."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def cohort(root: Path, patients=("P1", "P2", "P3"), mask=lambda k: BLOCK, suffix="_mask") -> tuple[Path, Path]:
    """images/<P>_f<k>.png and masks/<P>_f<k><suffix>.png, two frames per patient."""
    for i, p in enumerate(patients):
        for k in range(2):
            save(root / "images" / f"{p}_f{k}.png", rgb(i * 2 + k))
            save(root / "masks" / f"{p}_f{k}{suffix}.png", mask(k))
    return root / "images", root / "masks"


def folders_kw(tmp, **kw) -> dict:
    img, msk = cohort(tmp / "in", **{k: kw.pop(k) for k in ("patients", "mask", "suffix") if k in kw})
    return {"source": "folders", "images_dir": img, "masks_dir": msk, "mask_suffix": "_mask",
            "group_pattern": r"^(?P<patient>P\d+)_", **kw}


def write_video(path: Path, n: int = 10, fps: int = 5) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width, s.pix_fmt = 32, 48, "yuv420p"
        for k in range(n):
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.full((32, 48, 3), 8 * k, np.uint8), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


# ------------------------------------------------------------------------- imports that must fail before writing
def _pattern_matches_nothing(tmp):
    kw = folders_kw(tmp, group_pattern=r"(?P<patient>patient\d+)")
    return kw, {"group_pattern": r"^(?P<patient>P\d+)_"}


def _wrong_mask_suffix(tmp):
    return folders_kw(tmp, suffix="_seg"), {"mask_suffix": "_seg"}


def _no_suffix_in_shared_folder(tmp):
    for p in ("P1", "P2"):
        save(tmp / "in" / f"{p}_a.png", rgb())
        save(tmp / "in" / f"{p}_a_seg.png", BLOCK)
    kw = {"source": "folders", "images_dir": tmp / "in", "mask_suffix": "_mask", "group_pattern": r"^(P\d)_"}
    return kw, {"mask_suffix": "_seg"}


def _no_tissue(tmp):
    return folders_kw(tmp, mask=lambda k: np.zeros((H, W), np.uint8)), None


def _one_patient(tmp):
    return folders_kw(tmp, patients=("P1",)), None


def _manifest_all_train(tmp):
    kw = folders_kw(tmp, group_pattern=None)
    man = tmp / "manifest.csv"
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "operation_id": ["P1", "P2", "P3"],
                  "split": ["train"] * 3}).to_csv(man, index=False)
    return {**kw, "manifest": man}, None


def _manifest_names_no_frame(tmp):
    kw = folders_kw(tmp, group_pattern=None)
    wrong, right = tmp / "wrong.csv", tmp / "right.csv"
    pd.DataFrame({"patient_id": ["A", "B"], "operation_id": ["OPA", "OPB"]}).to_csv(wrong, index=False)
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "operation_id": ["P1", "P2", "P3"]}).to_csv(right, index=False)
    return {**kw, "manifest": wrong}, {"manifest": right}


def _every_image_unreadable(tmp):
    kw = folders_kw(tmp)
    for i, f in enumerate(sorted(Path(kw["images_dir"]).glob("*.png"))):
        f.write_bytes(b"" if i % 2 else f.read_bytes()[:40])  # zero-byte and truncated
    return kw, None


def _every_mask_grey_noise(tmp):
    rng = np.random.default_rng(0)
    return folders_kw(tmp, mask=lambda k: rng.integers(0, 256, (H, W)).astype(np.uint8)), {"mask_threshold": 0.5}


def _every_video_unreadable(tmp):
    save(tmp / "in" / "op1.mp4", b"this is not a video")
    return {"source": "video", "video_dir": tmp / "in", "interval_s": 1.0}, None


FAILS = {  # case: (build, message pattern, a file or name the message must show)
    "group_pattern matches no file": (_pattern_matches_nothing, r"no frame left after grouping.*'P1_f0'", "patient"),
    "manifest names no frame's operation": (_manifest_names_no_frame, r"no frame left after grouping.*'P1_f0'.*OPA",
                                            "P1_f0"),
    "wrong mask_suffix (no mask pairs)": (_wrong_mask_suffix, r"none of the 6 image\(s\) pairs.*looked for .*"
                                          r"P1_f0_mask\.png.*named P1_f0_seg\.png.*fix: mask_suffix='_seg'",
                                          "P1_f0.png"),
    "mask_suffix matches nothing in a shared folder": (_no_suffix_in_shared_folder, r"no file ends with mask_suffix",
                                                       "P1_a_seg.png"),
    "no frame with tissue": (_no_tissue, r"none of the 6 frame\(s\) has neural tissue", "images"),
    "one patient: test split empty": (_one_patient, r"the test split has no patient.*P1.*at least 2 patients",
                                      "images"),
    "manifest puts every patient in train": (_manifest_all_train, r"test split has no patient.*in the manifest",
                                             "images"),
    "every image zero-byte or truncated": (_every_image_unreadable, r"no usable frame.*cannot read image", "P1_f0.png"),
    "every mask grey noise": (_every_mask_grey_noise, r"no usable frame.*not a binary mask.*mid-grey", "_mask.png"),
    "every video unreadable": (_every_video_unreadable, r"no frame could be extracted.*cannot read video", "op1.mp4"),
}


@pytest.mark.parametrize("case", list(FAILS), ids=list(FAILS))
def test_unusable_import_fails_before_writing(case, tmp_path):
    build, pattern, named = FAILS[case]
    kw, fix = build(tmp_path)
    before = tree_hash(tmp_path)
    out = tmp_path / "prepared"
    with pytest.raises(ValueError, match=pattern) as err:
        prepare_dataset(output_dir=out, progress=False, **kw)
    assert named in str(err.value), str(err.value)
    assert "fix" in str(err.value), str(err.value)
    assert not out.exists() and not (tmp_path / "prepared_frames").exists()  # nothing written
    assert tree_hash(tmp_path) == before  # nothing lost or changed
    if fix is not None:  # the corrected rerun needs no overwrite
        prep = prepare_dataset(output_dir=out, progress=False, **{**kw, **fix})
        assert len(prep.index) in (2, 6)  # every frame of the fixture (2 in the shared folder, else 6)
        assert prep.index["has_tissue"].all() and prep.grouped and not prep.reused


def test_group_pattern_given_never_warns_about_missing_groups(tmp_path, capsys):
    kw, _ = _pattern_matches_nothing(tmp_path)
    with pytest.raises(ValueError):
        prepare_dataset(output_dir=tmp_path / "p", **kw)
    assert "no manifest and no group_pattern" not in capsys.readouterr().out


def test_failed_import_keeps_the_existing_dataset(tmp_path):
    kw = folders_kw(tmp_path)
    out = tmp_path / "prepared"
    prepare_dataset(output_dir=out, progress=False, **kw)
    kept = tree_hash(out)
    with pytest.raises(FileExistsError, match="overwrite=True"):  # other parameters, no overwrite
        prepare_dataset(output_dir=out, progress=False, **{**kw, "seed": 7})
    with pytest.raises(ValueError, match="no frame left after grouping"):  # overwrite, but the import is unusable
        prepare_dataset(output_dir=out, progress=False, overwrite=True, **{**kw, "group_pattern": r"(?P<patient>Q)"})
    assert tree_hash(out) == kept


# ------------------------------------------------------------------------------- files reported, the rest imported
def _mask_case(tmp, mask_file: str, writer, **kw):
    img, msk = cohort(tmp, patients=("P1",))
    writer(msk / mask_file)
    save(img / "odd.png", rgb(9))
    rep = ImportReport()
    frames = {Path(f.rel).name: f for f in import_folders(img, msk, mask_suffix="_mask", report=rep, **kw)}
    assert {"P1_f0", "P1_f1"} <= set(frames)  # the good frames are kept
    return frames, rep


def _rows(rep: ImportReport, name: str) -> list[dict]:
    return [r for r in rep.rows if Path(r["file"]).name == name]


def test_grey_noise_mask_is_skipped_with_what_was_seen(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (H, W)).astype(np.uint8)
    frames, rep = _mask_case(tmp_path, "odd_mask.png", lambda p: save(p, noise))
    assert "odd" not in frames
    (row,) = _rows(rep, "odd.png")
    assert row["status"] == "skipped" and "odd_mask.png: not a binary mask" in row["reason"]
    assert "values 0..255" in row["reason"] and "mid-grey" in row["reason"] and "mask_threshold" in row["reason"]


def test_grey_mask_with_a_threshold_set_on_purpose(tmp_path):
    grey = (BLOCK // 255 * 128).astype(np.uint8)  # a soft map: 0 and half range on 8% of the pixels
    frames, rep = _mask_case(tmp_path, "odd_mask.png", lambda p: save(p, grey), mask_threshold=0.3)
    assert np.array_equal(frames["odd"].mask, BLOCK > 0)
    assert "binarised at mask_threshold=0.3" in _rows(rep, "odd_mask.png")[0]["reason"]


@pytest.mark.parametrize("top", [255, 65535], ids=["0-255 in 16 bit", "0-65535"])
def test_16_bit_mask_is_read_on_its_value_range(tmp_path, top):
    frames, rep = _mask_case(tmp_path, "odd_mask.png",
                             lambda p: Image.fromarray((BLOCK > 0).astype(np.uint16) * top).save(p))
    assert np.array_equal(frames["odd"].mask, BLOCK > 0)
    notes = _rows(rep, "odd_mask.png")
    assert (["8-bit values" in r["reason"] for r in notes] == [True]) if top == 255 else not notes


def test_jpeg_mask_ringing_is_not_grey(tmp_path):
    def jpeg(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(BLOCK).save(p, quality=30)
    frames, rep = _mask_case(tmp_path, "odd_mask.jpg", jpeg)
    assert np.array_equal(frames["odd"].mask, BLOCK > 0) and not _rows(rep, "odd.png")


def test_lossy_01_mask_warning_names_the_values(tmp_path):
    save(tmp_path / "m.png", (BLOCK // 255 * 3).astype(np.uint8))
    rep = ImportReport()
    assert not read_mask(tmp_path / "m.png", report=rep).any()
    assert "up to 3" in rep.rows[0]["reason"] and "values 0..3" in rep.rows[0]["reason"]


def _labelme_case(tmp, name: str, content, image: bool = True):
    save(tmp / "good.png", rgb())
    save(tmp / "good.json", '{"shapes": [{"label": "n", "points": [[6, 4], [13, 4], [13, 9]]}], "imageHeight": 20,'
                            ' "imageWidth": 30}')
    if image:
        save(tmp / f"{name}.png", rgb(1))
    save(tmp / f"{name}.json" if content is not None else tmp / f"{name}.png", content if content is not None
         else b"")
    before = tree_hash(tmp)
    rep = ImportReport()
    frames = {f.rel: f for f in import_labelme(tmp, report=rep)}
    assert frames["good"].mask.any() and tree_hash(tmp) == before
    return frames, rep


LABELME = {  # case: (json content or None for a zero-byte image, image beside it, reason, file named)
    "broken JSON": ('{"shapes": [', True, "invalid JSON", "bad.json"),
    "not LabelMe JSON": ('{"annotations": []}', True, "no 'shapes' list", "bad.json"),
    "JSON without image or imageData": ('{"shapes": [], "imagePath": "gone.png"}', False, "annotation without image",
                                        "bad.json"),
    "degenerate polygon": ('{"shapes": [{"label": "n", "points": [[1, 1], [5, 5]]}]}', True, "at least 3", "bad.json"),
    "JSON for another image size": ('{"shapes": [], "imageHeight": 99, "imageWidth": 30}', True,
                                    "annotation is for a 30x99 image", "bad.json"),
    "zero-byte image": (None, False, "cannot read image", "bad.png"),
}


@pytest.mark.parametrize("case", list(LABELME), ids=list(LABELME))
def test_labelme_bad_file_is_reported_and_the_rest_imported(case, tmp_path):
    content, image, reason, named = LABELME[case]
    frames, rep = _labelme_case(tmp_path, "bad", content, image)
    assert "bad" not in frames
    (row,) = [r for r in rep.rows if r["status"] == "skipped"]
    assert reason in row["reason"] and named in row["reason"], row


def test_mask_of_another_size_is_reported_and_the_rest_imported(tmp_path):
    frames, rep = _mask_case(tmp_path, "odd_mask.png", lambda p: save(p, np.zeros((H + 2, W), np.uint8)))
    assert "odd" not in frames and "odd_mask.png: mask is 30x22" in _rows(rep, "odd.png")[0]["reason"]


def test_an_unreadable_video_is_named_beside_a_good_one(tmp_path):
    write_video(tmp_path / "videos" / "op1.mp4")
    save(tmp_path / "videos" / "notes.mp4", b"not a video")
    with pytest.raises(ValueError, match=r"none is annotated yet") as err:
        import_video(tmp_path / "videos", tmp_path / "frames", 1.0, report=ImportReport())
    assert "notes.mp4: cannot read video" in str(err.value)
    assert not (tmp_path / "frames" / "notes").exists() and (tmp_path / "frames" / "op1").is_dir()


def test_manifest_errors_name_the_file(tmp_path):
    from endolib.data.groups import read_manifest

    man = tmp_path / "m.csv"
    for rows, pattern in [({"patient": ["P1"]}, "needs an 'operation_id' column"),
                          ({"patient_id": ["P1"], "operation_id": ["O1"], "split": ["val"]}, "split must be"),
                          ({"patient_id": ["P1", "P1"], "operation_id": ["O1", "O2"], "split": ["train", "test"]},
                           "patient P1 is in both splits")]:
        pd.DataFrame(rows).to_csv(man, index=False)
        with pytest.raises(ValueError, match=pattern) as err:
            read_manifest(man)
        assert str(man) in str(err.value)


# ------------------------------------------------------------------------------------------------ commands
def test_video_realtime_help_prints_the_realtime_options(capsys):
    from endolib.deploy.commands import video

    with pytest.raises(SystemExit) as ex:
        video(["--realtime", "--help"])
    out = capsys.readouterr().out
    assert ex.value.code == 0 and "--precision" in out and "--pace" in out and "--stall" in out


def test_unknown_data_folder_is_named(tmp_path):
    from endolib.data.dataset import load_index

    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_index(tmp_path / "nowhere")


def test_a_bad_mask_threshold_says_what_is_valid(tmp_path):
    save(tmp_path / "m.png", BLOCK)
    with pytest.raises(ValueError, match=r"mask_threshold must be .* between 0 and 1"):
        read_mask(tmp_path / "m.png", threshold=128)


def test_table_in_the_docs_lists_every_case():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "data_import.md").read_text()
    for case in list(FAILS) + list(LABELME):
        assert case in doc, case
