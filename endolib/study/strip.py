"""``python -m endolib strip``: stored notebooks without execution noise (timings, widget state, kernel details,
absolute checkout paths), so that they diff cleanly and nbval compares only what matters.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from endolib.config import paths, repo_root

__all__ = ["strip_notebook"]


# --------------------------------------------------------------------------------------------- stripping
_KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


#: An absolute path into a checkout: everything up to one of the repository's top-level folders.
_CHECKOUT_PREFIX = re.compile(r"(?<![\w.~])/(?:[^\s/'\"]+/)+?(?=(?:data|runs|results|figures|endolib|notebooks|docs)/)")


def _relative_paths(text: str) -> str:
    """Printed paths relative to the repository, whichever checkout the notebook ran in.

    Example:
        >>> _relative_paths("/home/me/endolib-clone/results/smoke/table1.csv not made yet")
        'results/smoke/table1.csv not made yet'
    """
    return _CHECKOUT_PREFIX.sub("", text)


def strip_notebook(path: str | Path, keep_parameters: bool = False) -> bool:
    """Remove execution noise from a stored notebook in place; keep the outputs nbval compares.

    Renumbers execution counts 1, 2, ... in cell order; drops timing/papermill/widget metadata, kernel details,
    widget-view outputs (progress bars) and the ``injected-parameters`` cell papermill adds when a notebook is
    executed in place (its values would override the ``parameters`` cell's defaults; ``keep_parameters`` keeps it,
    for a published run whose reader must see them); makes absolute paths into the checkout where it ran relative in
    printed text (:func:`_relative_paths`). Returns True when the file changed.
    """
    path = Path(path)
    try:
        nb = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a notebook (invalid JSON: {e})") from None
    before = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False)
    nb["metadata"] = {"kernelspec": dict(_KERNELSPEC), "language_info": {"name": "python"}}
    if not keep_parameters:
        nb["cells"] = [c for c in nb.get("cells", [])
                       if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    count = 0
    for cell in nb["cells"]:
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k == "tags"}
        if cell.get("cell_type") != "code":
            continue
        # nbval treats a cell with outputs but no execution count as unrun: number the cells 1, 2, ... instead
        count += 1
        cell["execution_count"] = count
        outputs = [o for o in cell.get("outputs", []) if _WIDGET_MIME not in o.get("data", {})]
        for out in outputs:
            if isinstance(out.get("text"), (str, list)):  # stream output: paths relative to the repository
                text = "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
                out["text"] = _relative_paths(text).splitlines(keepends=True)
            if out.get("output_type") == "execute_result":
                out["execution_count"] = count
            if "metadata" in out:
                out["metadata"] = {}
        cell["outputs"] = outputs
    after = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False)
    if after != before:
        path.write_text(after + "\n")
    return after != before


#: Where the executed notebooks of the committed study are published (the repository's ``study/``).
PUBLISHED_DIR = "study"


def publish_notebooks(profile: str = "quick", dest: str | Path | None = None) -> list[Path]:
    """Copy the executed notebooks of a study run (``runs/<profile>/*.ipynb``, written by ``make paper``) to
    ``dest`` (default the repository's :data:`PUBLISHED_DIR`), stripped of execution noise but keeping the
    parameters papermill injected, so that a reader browsing the repository sees the study with its real outputs.
    Notebooks in ``dest`` that the study no longer makes are removed (a model left the study); a notebook the study
    makes (:func:`endolib.study.plan.plan`) without an executed copy is an error, and nothing is published: a partial
    run (``--only``) would otherwise delete the published notebooks it did not execute.

    Args:
        profile: whose executed notebooks.
        dest: the folder to publish into.

    Returns:
        The published files.

    Raises:
        FileNotFoundError: no executed notebooks, or some of the study's are missing (the message names them).

    Example:
        >>> publish_notebooks("quick")  # doctest: +SKIP
    """
    from endolib.study.plan import plan

    src = paths(profile).runs
    executed = sorted(src.glob("[0-9][0-9]_*.ipynb"))
    if not executed:
        raise FileNotFoundError(f"{src}: no executed notebooks; run the study first (`make paper`, "
                                f"`python -m endolib run --profile {profile}`)")
    names = {f.name for f in executed}
    missing = [job.output_name for job in plan(profile) if job.output_name not in names]
    if missing:
        raise FileNotFoundError(f"{src}: no executed copy of {', '.join(missing)}; publishing now would leave the "
                                f"published study without them. Run the whole study first (`make paper`, "
                                f"`python -m endolib run --profile {profile}`)")
    out = Path(dest) if dest is not None else repo_root() / PUBLISHED_DIR
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.ipynb"):
        if stale.name not in names:
            stale.unlink()
    published = []
    for f in executed:
        target = out / f.name
        shutil.copyfile(f, target)
        strip_notebook(target, keep_parameters=True)
        published.append(target)
    return published


def publish_main(argv: list[str]) -> int:
    """``python -m endolib publish [--profile quick]``: :func:`publish_notebooks`."""
    ap = argparse.ArgumentParser(prog="python -m endolib publish", description=publish_notebooks.__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", help="whose executed notebooks (default quick)")
    args = ap.parse_args(argv)
    for f in publish_notebooks(args.profile):
        print(f"published {f.relative_to(repo_root()) if f.is_relative_to(repo_root()) else f}")
    return 0
