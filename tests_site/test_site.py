"""The website builder (endolib.study.site) on a tiny fake study: pages, captions, provenance, and a real Sphinx build.

The browser test of a site built from a real smoke run is tests_site/ (``make site-test``).
"""
from __future__ import annotations

import base64
import io
import json

import nbformat
import pytest
from PIL import Image

from endolib.config import paths
from endolib.study.site import build_site, write_sources

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    p = paths("smoke", tmp_path)
    p.runs.mkdir(parents=True)
    p.results.mkdir(parents=True)
    p.figures.mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# endolib test\n\nSee [layout](docs/layout.md) and "
                                        "[config](endolib/config.py).\n\n## Section\n\ntext\n")
    (tmp_path / "docs" / "layout.md").write_text("# Layout\n\nBack to [README](../README.md).\n")
    (tmp_path / "CITATION.cff").write_text("cff-version: 1.2.0\ntitle: test\n")
    nb = nbformat.v4.new_notebook()
    img = nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(_png()).decode(),
                                                       "text/plain": "<Figure>"})
    widget = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0}})
    nb.cells = [nbformat.v4.new_markdown_cell("# 04 Evaluation: Tables 3 and 4\n\nPurpose."),
                nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("plot()", outputs=[widget, img])]
    nbformat.write(nb, p.runs / "04_evaluation.ipynb")
    (p.results / "table3_classifiers.csv").write_text("model,auroc,auroc_lo,auroc_hi\nresnet18,0.91234,0.8,0.95\n")
    (p.figures / "fig5_roc.png").write_bytes(_png())
    from endolib.study.provenance import sha256_file

    record = {"job": "04_evaluation.ipynb", "notebook": "notebooks/04_evaluation.ipynb", "profile": "smoke",
              "overrides": {}, "git_commit": COMMIT, "git_dirty": False, "git_dirty_files": [],
              "dataset": "data/smoke/phantom", "dataset_fingerprint": "ab" * 32,
              "runs": [{"model": "resnet18", "seed": 42, "run": "runs/smoke/resnet18/seed42",
                        "checkpoint_sha256": "cd" * 32}],
              "packages": {"torch": "2.14.1"}, "cpu": "Test CPU", "cpu_count": 2, "torch_threads": 1,
              "gpu": None, "python": "3.11", "wall_time_s": 12.5, "finished_utc": "2026-11-30T05:00:00Z"}
    outputs = {f"results/smoke/{n}": {"job": "04_evaluation.ipynb", "sha256": sha256_file(p.results / n)}
               for n in ("table3_classifiers.csv",)}
    outputs["runs/smoke/figures/fig5_roc.png"] = {"job": "04_evaluation.ipynb",
                                                  "sha256": sha256_file(p.figures / "fig5_roc.png")}
    (p.results / "provenance.json").write_text(json.dumps({"jobs": {"04_evaluation.ipynb": record},
                                                           "outputs": outputs}))
    return tmp_path, p


def test_sources_carry_outputs_captions_and_provenance(study):
    root, p = study
    pages = write_sources("smoke")
    src = p.runs / "site_src"
    assert pages == {"notebooks": ["notebooks/04_evaluation"], "tables": ["tables/table3_classifiers"],
                     "figures": ["fig5_roc.png"]}
    nb = json.loads((src / "notebooks" / "04_evaluation.ipynb").read_text())
    assert nb["cells"][0]["source"].startswith("# 04 Evaluation\n\n*Tables 3 and 4*")
    assert "Provenance" in nb["cells"][1]["source"] and COMMIT in nb["cells"][1]["source"]
    assert "resnet18 seed 42" in nb["cells"][1]["source"]
    code = nb["cells"][3]
    assert [list(o["data"]) for o in code["outputs"]] == [["image/png", "text/plain"]]  # the widget is gone
    caption = code["metadata"]["mystnb"]["figure"]["caption"]
    assert "04_evaluation.ipynb" in caption and COMMIT[:10] in caption
    table = (src / "tables" / "table3_classifiers.md").read_text()
    assert "made by notebook `04_evaluation.ipynb` at commit `0123456789`" in table and "csv-table" in table
    assert "0.9123" in (src / "_tables" / "table3_classifiers.csv").read_text()
    figures = (src / "figures.md").read_text()
    assert "`fig5_roc`: made by notebook `04_evaluation.ipynb` at commit `0123456789`" in figures
    index = (src / "index.md").read_text()
    assert "[layout](layout.md)" in index and "](endolib/config.py)" not in index
    assert "notebooks/04_evaluation" in index and "tables/table3_classifiers" in index
    assert "[README](index.md)" in (src / "layout.md").read_text()


def test_a_file_changed_after_its_run_is_flagged(study):
    root, p = study
    (p.results / "table3_classifiers.csv").write_text("model,auroc\nresnet18,0.5\n")
    write_sources("smoke")
    assert "the file changed after that run" in (p.runs / "site_src/tables/table3_classifiers.md").read_text()


def test_sphinx_builds_the_site_offline(study):
    root, p = study
    index = build_site("smoke")
    html = (p.runs / "site" / "notebooks" / "04_evaluation.html").read_text()
    assert index.exists() and "Provenance" in html and "04_evaluation.ipynb" in html
    assert "<img" in html and "cdn." not in html.lower()
    table_html = (p.runs / "site" / "tables" / "table3_classifiers.html").read_text()
    assert "<table" in table_html and "resnet18" in table_html
    assert (p.runs / "site" / "figures.html").exists() and (p.runs / "site" / "layout.html").exists()


def test_no_executed_notebooks_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ENDOLIB_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m endolib run --profile smoke"):
        write_sources("smoke")


def test_paper_claims_page_leads_with_claim_verdict_estimate_and_evidence():
    """The page answers first what its reader asks first; the rule and the counts follow (no scrolling for them)."""
    import pandas as pd

    from endolib.config import repo_root
    from endolib.study.site import display_table

    claims = pd.read_csv(repo_root() / "results" / "quick" / "paper_claims.csv")
    shown = display_table("paper_claims.csv", claims)
    assert list(shown.columns[:4]) == ["claim", "verdict", "our estimate [95% CI]", "paper_evidence"]
    assert list(shown.columns).index("rule") > 3 and len(shown) == len(claims)
    row = claims.dropna(subset=["our_ci_lo"]).iloc[0]
    cell = shown.loc[row.name, "our estimate [95% CI]"]
    assert cell == f"{row.our_estimate:.3g} [{row.our_ci_lo:.3g}, {row.our_ci_hi:.3g}]"
