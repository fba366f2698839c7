"""The committed model and data cards match the committed result tables (endolib.study.cards)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from endolib.config import MODELS
from endolib.study.cards import (
    CARD_PATH,
    DATA_CARD_PATH,
    data_card_table,
    fmt_ci,
    model_card,
    with_table1,
)

ROOT = Path(__file__).resolve().parent.parent


def test_model_card_is_generated_from_the_committed_tables():
    committed = (ROOT / CARD_PATH).read_text()
    assert committed == model_card("quick", ROOT), \
        f"{CARD_PATH} is out of date with results/quick/: run `python -m endolib.study.cards`"
    assert "Research only. Not a medical device." in committed
    for model in MODELS:
        assert f"(`{model}`)" in committed


def test_model_card_numbers_come_from_the_tables(tmp_path):
    (tmp_path / "results").mkdir()
    shutil.copytree(ROOT / "results" / "quick", tmp_path / "results" / "quick")
    t4 = pd.read_csv(tmp_path / "results/quick/table4_segmenters.csv")
    row = t4.index[t4["model"] == "unet"][0]
    before = model_card("quick", tmp_path)
    assert fmt_ci(t4.loc[row, "dsc"], t4.loc[row, "dsc_lo"], t4.loc[row, "dsc_hi"]) in before
    t4.loc[row, ["dsc", "dsc_lo", "dsc_hi"]] = [0.123456, 0.1, 0.2]
    t4.to_csv(tmp_path / "results/quick/table4_segmenters.csv", index=False)
    after = model_card("quick", tmp_path)
    assert "| DSC | 0.123 (0.100-0.200) |" in after and after != before


def test_data_card_table1_matches_the_committed_table():
    card = (ROOT / DATA_CARD_PATH).read_text()
    table = data_card_table("quick", ROOT)
    assert with_table1(card, table) == card, \
        f"{DATA_CARD_PATH}: Table 1 block is out of date with results/quick/table1.csv: run `python -m endolib.study.cards`"
    assert "| patients | 22 | 6 |" in table


def test_citation_cff_names_the_paper_and_the_software():
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["authors"]
    paper = cff["preferred-citation"]
    assert paper["type"] == "article"
    assert paper["title"] in (ROOT / "README.md").read_text()  # the README's title cites the same paper
    assert [a["family-names"] for a in paper["authors"]] == ["Rhee", "Lee", "Chang", "Chang", "Kim"]
    assert cff["version"] == __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_train_throughput_table_names_each_models_training_precision(tmp_path):
    from endolib.study.pages import train_throughput

    row = dict(input_size=64, batch_size=16, threads=1, images=203, loop_img_s=100.0, step_img_s=110.0,
               loop_share=0.09, val_s=0.5, epoch_s=2.5)
    rows = [{"arch": "unet", "amp": "bfloat16", **row}, {"arch": "segformer_b0", "amp": "off", **row}]
    pd.DataFrame(rows).to_csv(tmp_path / "train_throughput.csv", index=False)
    text = train_throughput(tmp_path, "quick")
    assert "| unet | 64 | 16 | bfloat16 | 203 |" in text and "| segformer_b0 | 64 | 16 | fp32 | 203 |" in text
    pd.DataFrame([{"arch": "unet", **row}]).to_csv(tmp_path / "train_throughput.csv", index=False)  # no amp column
    assert "| unet | 64 | 16 | fp32 | 203 |" in train_throughput(tmp_path, "quick")
