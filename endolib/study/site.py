"""The study as a static website: ``make site`` (``python -m endolib site --profile quick``).

Built with Sphinx + MyST-NB + sphinx-book-theme (why not Jupyter Book 2: ``docs/site.md``) from what the last
``python -m endolib run`` left, **without executing anything**:

- the README as landing page, plus the project's docs (layout, model card, data card, this page's design),
- one page per executed notebook ``runs/<profile>/*.ipynb`` with its real outputs and a provenance box; every
  image output is captioned with the notebook that made it and the commit,
- one page per results table (Tables 1-5, the paper-claims and real-time tables when present, then the others),
- a figure gallery (every PNG in the profile's figures folder, captioned with its notebook and commit),
- the provenance of every table and figure (``results/<profile>/provenance.json``, see :mod:`endolib.study.provenance`).

The source pages are generated into ``runs/<profile>/site_src/`` and the HTML into ``runs/<profile>/site/``
(ignored by git, like everything under ``runs/``).

Example:
    >>> table_title("table3_classifiers.csv")
    'Table 3: classifiers (test set, bootstrap 95% CIs)'
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from endolib.config import PROFILES, paths, repo_root
from endolib.study.provenance import git_state, load_provenance, sha256_file

__all__ = ["build_site", "write_sources", "table_title", "display_table", "TABLES", "LEAD_COLUMNS", "site_main"]


#: Tables with a page of their own, in this order, and their titles; every other CSV of the profile follows.
TABLES = {
    "table1.csv": "Table 1: cohort (train/test split)",
    "table2_architectures.csv": "Table 2: U-Net variants, layer by layer",
    "table3_classifiers.csv": "Table 3: classifiers (test set, bootstrap 95% CIs)",
    "table4_segmenters.csv": "Table 4: segmenters (test set, bootstrap 95% CIs)",
    "table5_compute.csv": "Table 5: computational load on this machine",
    "paper_claims.csv": "The paper's claims, checked on the phantom",
    "realtime.csv": "Real-time pipeline",
}
#: Docs copied into the site (repository path -> page name).
DOCS = {"docs/model_card.md": "model_card", "docs/data_card.md": "data_card", "docs/layout.md": "layout",
        "docs/architecture.md": "architecture", "docs/statistics.md": "statistics", "docs/realtime.md": "realtime",
        "docs/paper_protocol.md": "paper_protocol", "docs/reproducibility.md": "reproducibility",
        "docs/data_import.md": "data_import", "docs/training.md": "training", "docs/site.md": "site"}
_WIDGET_MIMES = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")


def table_title(name: str) -> str:
    """The page title of a results CSV (its file stem, readable, when it has no fixed title)."""
    return TABLES.get(name, Path(name).stem.replace("_", " ").capitalize())


def _short(commit: str | None) -> str:
    return commit[:10] if commit else "unknown commit"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _job_line(rec: dict | None) -> str:
    """One sentence: which notebook, commit and profile made something."""
    if not rec:
        return "no provenance recorded (made outside `python -m endolib run`)"
    dirty = " with uncommitted changes" if rec.get("git_dirty") else ""
    return (f"made by notebook `{rec['job']}` at commit `{_short(rec.get('git_commit'))}`{dirty} "
            f"(profile {rec.get('profile')}, {rec.get('finished_utc', '?')})")


def provenance_box(rec: dict | None) -> str:
    """A MyST admonition with a job's provenance (commit, settings, data, runs, machine, wall time)."""
    if not rec:
        return ("```{admonition} Provenance\n:class: warning\nNo provenance recorded: made outside "
                "`python -m endolib run`, or before it recorded provenance.\n```\n")
    runs = rec.get("runs") or []
    run_text = "; ".join(f"{r['model']} seed {r.get('seed')} ({r['checkpoint_sha256'][:12]})" for r in runs)
    pk = rec.get("packages") or {}
    pkg_text = ", ".join(f"{k} {v}" for k, v in sorted(pk.items()) if v)
    rows = [
        ("git commit", f"`{rec.get('git_commit')}`" + (" (uncommitted changes: "
                                                         + ", ".join(rec.get("git_dirty_files") or []) + ")"
                                                         if rec.get("git_dirty") else " (clean)")),
        ("profile", f"`{rec.get('profile')}`"),
        ("overrides", f"`{json.dumps(rec.get('overrides') or {}, sort_keys=True)}`"),
        ("dataset", f"`{rec.get('dataset')}` fingerprint `{(rec.get('dataset_fingerprint') or '-')[:16]}`"),
        ("trained runs read", run_text or "none"),
        ("machine", f"{rec.get('cpu')} ({rec.get('cpu_count')} cores, torch threads {rec.get('torch_threads')}), "
                    f"GPU: {rec.get('gpu') or 'none'}"),
        ("wall time", f"{rec.get('wall_time_s')} s, finished {rec.get('finished_utc')}"),
        ("packages", f"Python {rec.get('python')}; {pkg_text}"),
    ]
    table = "\n".join(f"| {k} | {_md_escape(v)} |" for k, v in rows)
    return f"```{{admonition}} Provenance\n:class: note\n\n| | |\n|---|---|\n{table}\n```\n"


def _notebook_title(output_name: str, first_heading: str | None) -> tuple[str, str]:
    """(short title for the navigation, subtitle): ``"03 Segmentation training (unet)"``, the rest of the heading."""
    arch = output_name[:-6].split("__", 1)[1] if "__" in output_name else None
    base = first_heading or output_name[:-6]
    short, _, rest = base.partition(":")
    return (f"{short.strip()} ({arch})" if arch else short.strip()), rest.strip()


def _prepare_notebook(src: Path, dst: Path, rec: dict | None, commit: str | None) -> str:
    """Copy an executed notebook for the site: widget outputs dropped, provenance box after the first cell,
    image outputs captioned. Returns the page title."""
    nb = json.loads(src.read_text())
    nb.get("metadata", {}).pop("widgets", None)
    caption = _job_line(rec) if rec else f"made by notebook `{src.name}` (commit `{_short(commit)}`, no provenance)"
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data is not None:
                for mime in _WIDGET_MIMES:
                    data.pop(mime, None)
                if not data:
                    continue
            outputs.append(out)
        cell["outputs"] = outputs
        n_images = sum(1 for o in outputs if any(k.startswith("image/") for k in o.get("data", {})))
        if n_images:
            cell.setdefault("metadata", {})["mystnb"] = {"figure": {"caption": f"Figure {caption}."}}
    heading = None
    cells = nb.get("cells", [])
    if cells and cells[0].get("cell_type") == "markdown":
        text = "".join(cells[0].get("source", ""))
        m = re.match(r"\s*#\s+(.+)", text)
        if m:
            heading = m.group(1).strip()
            title, subtitle = _notebook_title(src.name, heading)
            new_heading = f"# {title}" + (f"\n\n*{subtitle}*" if subtitle else "")
            cells[0]["source"] = text.replace(m.group(0), new_heading, 1)
    title, _ = _notebook_title(src.name, heading)
    if not heading:
        cells.insert(0, {"cell_type": "markdown", "id": "endolib-title", "metadata": {}, "source": f"# {title}\n"})
    cells.insert(1, {"cell_type": "markdown", "id": "endolib-provenance", "metadata": {},
                     "source": provenance_box(rec)})
    dst.write_text(json.dumps(nb, indent=1))
    return title


#: Columns a table's page shows first, in this order (what its reader asks first); the others follow as they are.
LEAD_COLUMNS = {"paper_claims.csv": ("claim", "verdict", "our estimate [95% CI]", "paper_evidence")}


def _with_ci(df: pd.DataFrame, value: str, lo: str, hi: str, name: str) -> pd.DataFrame:
    """One ``value [lo, hi]`` column in place of three (empty where the value is missing)."""
    def cell(r):
        if pd.isna(r[value]):
            return ""
        ci = "" if pd.isna(r[lo]) or pd.isna(r[hi]) else f" [{r[lo]:.3g}, {r[hi]:.3g}]"
        return f"{r[value]:.3g}{ci}"
    out = df.drop(columns=[value, lo, hi])
    out.insert(0, name, df.apply(cell, axis=1))
    return out


def display_table(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """A results table as its site page shows it: floats to 4 significant digits, the columns of
    :data:`LEAD_COLUMNS` first (the paper-claims page: claim, verdict, our estimate with its CI, the paper's
    evidence; the rule and the counts after).

    Args:
        name: the CSV's file name (``paper_claims.csv``).
        df: the table.

    Example:
        >>> t = pd.DataFrame({"rule": ["r"], "claim": ["c"], "verdict": ["reproduced"], "our_estimate": [0.51234],
        ...                   "our_ci_lo": [0.4], "our_ci_hi": [0.6], "paper_evidence": ["p < 0.05"]})
        >>> display_table("paper_claims.csv", t).iloc[0].tolist()
        ['c', 'reproduced', '0.512 [0.4, 0.6]', 'p < 0.05', 'r']
    """
    df = df.copy()
    if name == "paper_claims.csv" and {"our_estimate", "our_ci_lo", "our_ci_hi"} <= set(df.columns):
        df = _with_ci(df, "our_estimate", "our_ci_lo", "our_ci_hi", "our estimate [95% CI]")
    for col in df.columns:
        if pd.api.types.is_float_dtype(df[col]):
            df[col] = df[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    lead = [c for c in LEAD_COLUMNS.get(name, ()) if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


def _display_csv(src: Path, dst: Path) -> int:
    df = display_table(src.name, pd.read_csv(src))
    df.to_csv(dst, index=False)
    return len(df)


def _site_links(text: str, base: str = "") -> str:
    """Rewrite a repository page's relative links for the site: docs become site pages, README the landing page,
    CITATION.cff the citation page; links to other repository files (the site does not carry them) become text.

    Args:
        text: Markdown.
        base: the page's folder in the repository (``""`` for the README, ``"docs"`` for docs/*.md).
    """
    def link(m):
        label, target = m.group(1), m.group(2)
        if re.match(r"[a-z]+://|#|mailto:", target):
            return m.group(0)
        path = (Path(base) / target).as_posix() if base else target
        path = re.sub(r"^(?:[^/]+/\.\./)+", "", path)
        if path in DOCS:
            return f"[{label}]({DOCS[path]}.md)"
        if path == "README.md":
            return f"[{label}](index.md)"
        if path == "CITATION.cff":
            return f"[{label}](cite.md)"
        return label
    return re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", link, text)


def _readme_page(root: Path) -> str:
    return _site_links((root / "README.md").read_text())


def write_sources(profile: str, src_dir: str | Path | None = None, dataset: str | None = None) -> dict:
    """Generate the site's source pages (MyST markdown, notebooks, tables, figures, conf.py) into ``src_dir``.

    Args:
        profile: whose runs, results and figures.
        src_dir: target folder (default ``runs/<profile>/site_src``); it is emptied first.
        dataset: another prepared dataset's study (its runs/results folders, :func:`endolib.config.paths`).

    Returns:
        ``{"notebooks": [...], "tables": [...], "figures": [...]}``: the page names written.
    """
    p = paths(profile, dataset=dataset)
    root = p.root
    src = Path(src_dir) if src_dir else p.runs / "site_src"
    executed = sorted(p.runs.glob("*.ipynb"))
    if not executed:
        raise FileNotFoundError(f"{p.runs}: no executed notebooks; make them with "
                                f"`python -m endolib run --profile {profile}` (or `make paper PROFILE={profile}`)")
    if src.exists():
        shutil.rmtree(src)
    for sub in ("notebooks", "tables", "_tables", "_figures"):
        (src / sub).mkdir(parents=True)
    prov = load_provenance(p.results / "provenance.json")
    git = git_state(root)
    commit = git["git_commit"]

    nb_pages = []
    for f in executed:
        title = _prepare_notebook(f, src / "notebooks" / f.name, prov["jobs"].get(f.name), commit)
        nb_pages.append((f"notebooks/{f.stem}", title))

    def output_rec(path: Path) -> tuple[dict | None, bool]:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
        entry = prov["outputs"].get(rel)
        if not entry:
            return None, False
        return prov["jobs"].get(entry["job"]), sha256_file(path) == entry["sha256"]

    csvs = sorted(p.results.glob("*.csv"), key=lambda f: (list(TABLES).index(f.name) if f.name in TABLES
                                                         else len(TABLES), f.name))
    table_pages = []
    for f in csvs:
        n_rows = _display_csv(f, src / "_tables" / f.name)
        rec, current = output_rec(f)
        note = _job_line(rec) + ("" if current or not rec else
                                 " — **the file changed after that run** (e.g. a notebook was run by hand)")
        title = table_title(f.name)
        page = (f"# {title}\n\n`results/{profile}/{f.name}`, {n_rows} rows; {note}.\n\n"
                f"```{{csv-table}}\n:file: ../_tables/{f.name}\n:header-rows: 1\n:class: endolib-table\n```\n\n"
                f"{provenance_box(rec)}")
        (src / "tables" / f"{f.stem}.md").write_text(page)
        table_pages.append((f"tables/{f.stem}", title))

    fig_dir = p.figures
    figures = sorted(fig_dir.glob("*.png")) if fig_dir.exists() else []
    parts = [f"# Figures\n\nEvery figure of profile `{profile}` (`{fig_dir.relative_to(root).as_posix()}/`), "
             f"PNG; a PDF with the same name sits beside each.\n"]
    for f in figures:
        shutil.copy2(f, src / "_figures" / f.name)
        rec, current = output_rec(f)
        stale = "" if current or not rec else " The file changed after that run."
        parts.append(f"## {f.stem}\n\n```{{figure}} _figures/{f.name}\n:name: fig-{f.stem}\n:width: 75%\n\n"
                     f"`{f.stem}`: {_job_line(rec)}.{stale}\n```\n")
    (src / "figures.md").write_text("\n".join(parts))

    (src / "provenance.md").write_text(_provenance_page(profile, prov, git))
    for doc, page in DOCS.items():
        if (root / doc).exists():
            (src / f"{page}.md").write_text(_site_links((root / doc).read_text(), base="docs"))
    if (root / "CITATION.cff").exists():
        (src / "cite.md").write_text("# How to cite\n\nThe paper and this software, as `CITATION.cff`:\n\n"
                                     f"```yaml\n{(root / 'CITATION.cff').read_text()}```\n")

    docs = [page for doc, page in DOCS.items() if (src / f"{page}.md").exists()]
    if (src / "cite.md").exists():
        docs.append("cite")
    built = (f"\n\n## About this site\n\nBuilt from profile `{profile}` at commit `{commit}`"
             f"{' (with uncommitted changes)' if git['git_dirty'] else ''}, from the executed notebooks in "
             f"`runs/{profile}/` (nothing was re-executed). Every figure and table names the notebook and commit "
             f"that made it; [provenance](provenance.md) lists them all.\n\n")

    def toc(caption, entries):
        body = "\n".join(name for name, _ in entries) if entries and isinstance(entries[0], tuple) \
            else "\n".join(entries)
        return f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n{body}\n```\n\n"

    index = (_readme_page(root) + built + toc("Notebooks", nb_pages) + toc("Tables", table_pages)
             + toc("Figures and provenance", ["figures", "provenance"]) + toc("Documentation", docs))
    (src / "index.md").write_text(index)
    (src / "conf.py").write_text(_CONF.format(profile=profile, commit=_short(commit)))
    (src / "_static").mkdir(exist_ok=True)
    (src / "_static" / "endolib.css").write_text(_CSS)
    (src / "_static" / "favicon.svg").write_text(_FAVICON)
    return {"notebooks": [n for n, _ in nb_pages], "tables": [n for n, _ in table_pages],
            "figures": [f.name for f in figures]}


def _provenance_page(profile: str, prov: dict, git: dict) -> str:
    lines = [f"# Provenance\n\nFrom `results/{profile}/provenance.json`, written by `python -m endolib run` "
             f"(`endolib.study.provenance`): for every table and figure, the notebook run that wrote it.\n",
             "## Runs\n", "| notebook | commit | profile | overrides | dataset | runs read | wall time (s) | CPU |",
             "|---|---|---|---|---|---|---|---|"]
    for name, rec in sorted(prov["jobs"].items()):
        overrides = {k: v for k, v in (rec.get("overrides") or {}).items()}
        lines.append(f"| `{name}` | `{_short(rec.get('git_commit'))}`{' dirty' if rec.get('git_dirty') else ''} | "
                     f"{rec.get('profile')} | `{_md_escape(json.dumps(overrides))}` | "
                     f"`{(rec.get('dataset_fingerprint') or '-')[:12]}` | {len(rec.get('runs') or [])} | "
                     f"{rec.get('wall_time_s')} | {_md_escape(rec.get('cpu'))} |")
    lines += ["\n## Tables and figures\n", "| file | written by | sha256 |", "|---|---|---|"]
    for f, entry in prov["outputs"].items():
        lines.append(f"| `{f}` | `{entry['job']}` | `{entry['sha256'][:16]}` |")
    if not prov["jobs"]:
        lines.append("\nNo provenance recorded yet: run `python -m endolib run --profile "
                     f"{profile}` (it records as it goes).")
    return "\n".join(lines) + "\n"


_CONF = '''# Generated by endolib.study.site; do not edit (rebuilt by `make site`).
project = "endolib: the study on the phantom (profile {profile})"
html_title = "endolib study ({profile}, {commit})"
extensions = ["myst_nb"]
nb_execution_mode = "off"  # the notebooks were executed by `python -m endolib run`; never re-executed here
nb_ipywidgets_js = {{}}  # no widget JavaScript from a CDN: the site works offline
myst_enable_extensions = ["colon_fence"]
html_theme = "sphinx_book_theme"
html_theme_options = {{"home_page_in_toc": True, "show_navbar_depth": 1, "use_download_button": False,
                      "use_fullscreen_button": False}}
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
html_static_path = ["_static"]
html_css_files = ["endolib.css"]
html_favicon = "_static/favicon.svg"  # else browsers ask for /favicon.ico and get a 404
html_context = {{"default_mode": "light"}}  # the theme logs an error for an unset mode on a fresh browser
suppress_warnings = ["mystnb.unknown_mime_type", "myst.xref_missing", "misc.highlighting_failure"]
'''


_CSS = """/* endolib.study.site: wide result tables get the whole page width */
.bd-page-width { max-width: 100%; }
.bd-main .bd-content .bd-article-container { max-width: 100%; }
table.endolib-table td, table.endolib-table th { white-space: nowrap; padding: 0.2rem 0.5rem; }
"""


_FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" '
            'fill="#b03a2e"/><path d="M4 9c2-4 6-4 8 0" stroke="#f4e3b5" stroke-width="2" fill="none"/></svg>\n')


def build_site(profile: str = "quick", out_dir: str | Path | None = None, quiet: bool = True,
               dataset: str | None = None) -> Path:
    """Generate the sources and run Sphinx; returns the built ``index.html``.

    Args:
        profile: whose executed notebooks, results and figures.
        out_dir: HTML folder (default ``runs/<profile>/site``, a dataset's study ``runs/<profile>/<dataset>/site``).
        quiet: only warnings and errors from Sphinx.
        dataset: another prepared dataset's study (``make site DATASET=...``); None: the phantom study.

    Raises:
        FileNotFoundError: no executed notebooks for ``profile``.
        RuntimeError: Sphinx failed (its output is in the message).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    p = paths(profile, dataset=dataset)
    src = p.runs / "site_src"
    out = Path(out_dir) if out_dir else p.runs / "site"
    pages = write_sources(profile, src, dataset=dataset)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-j", "1", "-E", *(["-q"] if quiet else []),
           str(src), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=src)
    if proc.returncode != 0:
        raise RuntimeError(f"sphinx failed ({' '.join(cmd)}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if proc.stderr.strip():
        print(proc.stderr.strip())
    print(f"site: {len(pages['notebooks'])} notebook pages, {len(pages['tables'])} table pages, "
          f"{len(pages['figures'])} figures -> {out / 'index.html'}")
    return out / "index.html"


def site_main(argv: list[str] | None = None) -> int:
    """``python -m endolib site --profile quick``: build the website (see the module docstring)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m endolib site", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=list(PROFILES))
    ap.add_argument("--out", help="HTML folder (default runs/<profile>/site)")
    ap.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    ap.add_argument("--dataset", help="another prepared dataset's study (runs/PROFILE/DATASET/, results/PROFILE/DATASET/)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    index = build_site(args.profile, args.out, quiet=not args.verbose, dataset=args.dataset)
    try:
        shown = index.relative_to(repo_root())
    except ValueError:
        shown = index
    print(f"built in {time.perf_counter() - t0:.1f} s; open {shown}")
    return 0
