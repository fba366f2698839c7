# endolib: `make paper` runs the study on the phantom (profile quick); `make test` runs the tests.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= quick
# local:2: two one-thread Dask workers train every unit first (endolib.study.distributed), then the notebooks load the
# runs; serial: the notebooks train one unit after another. Measured from a fresh clone on the 2-core machine (AMD
# EPYC, profile quick, README): local:2 19 min 11 s, serial 22 min 40 s, so local:2 is the default.
SCHEDULER ?= local:2
NBVAL  := --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-cell-timeout=600

.PHONY: setup paper test unit figures site site-test chromium lab clean distclean slurm cluster-test

setup: $(STAMP)

# Re-installs only when pyproject.toml changes (pip takes torch from this machine's wheel cache). pip byte-compiles
# what it installs in one process; compileall does the same on every core (measured on the 2-core machine: install
# 108 s with pip's compilation, 66 + 24 s this way). A few files of the installed packages are not Python 3 (pip skips
# them silently too), so compileall's exit status is not a failure of the installation.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -e ".[dev]"
	$(PY) -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(STAMP)

# Reruns only the notebooks whose inputs changed (endolib.study.incremental; FORCE=1 reruns all). After a quick run the
# model card and the data card's Table 1 are regenerated from the new tables (endolib.study.cards) and the executed
# notebooks are published to study/ (stripped, endolib.study.strip).
paper: setup
	$(PY) -m endolib run --profile $(PROFILE) --scheduler $(SCHEDULER) $(if $(FORCE),--force,)
	@if [ "$(PROFILE)" = quick ]; then $(PY) -m endolib cards && $(PY) -m endolib publish --profile quick; fi

# Unit tests, then every notebook under nbval; then the notebook tests and the trained-number checks again with the
# floating-point numerics perturbed (endolib.repro.PERTURBED_NUMERICS), so a test that would fail on another CPU
# fails here (issue 12). Notebook 04 evaluates all eleven models, so the smoke runs of the nine architectures that
# nbval does not train itself (02 trains resnet18, 03 unet) come first; the notebooks run before tests/ so that
# tests/test_regression.py sees all eleven.
# The notebooks that train or use trained models (01 prepares data, 05 counts and times untrained models: no trained
# number can reach their outputs, so the perturbed pass skips them to keep make test within 10 minutes).
TRAINED_NOTEBOOKS := notebooks/02_classifier_training.ipynb notebooks/03_segmentation_training.ipynb \
	notebooks/04_evaluation.ipynb notebooks/06_figures.ipynb notebooks/07_video_demo.ipynb
OTHER_ARCHS := resnet34 mobilenetv3_large resunet r2unet aunet aresunet ar2unet segformer_b0 segformer_b1
test: setup
	@start=$$(date +%s); \
	$(PY) -m endolib run --profile smoke --only 01 02 03 --arch $(OTHER_ARCHS) --no-progress && \
	$(PY) -m pytest notebooks tests $(NBVAL) && \
	ENDOLIB_PERTURB_NUMERICS=1 $(PY) -m pytest $(TRAINED_NOTEBOOKS) tests/test_regression.py $(NBVAL); status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s after installation"; exit $$status

unit: setup
	$(PY) -m pytest tests

figures: setup
	$(PY) -m endolib figures --profile $(PROFILE)

# The study's website from the executed notebooks of the last `make paper` (nothing is re-executed):
# runs/$(PROFILE)/site/index.html (docs/site.md); DATASET=NAME: the study on another prepared dataset,
# runs/$(PROFILE)/NAME/site/index.html.
site: setup
	$(PY) -m endolib site --profile $(PROFILE) $(if $(DATASET),--dataset $(DATASET),)

# Debian's Chromium and its driver for the browser test (needs root; never installed at import time).
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "chromium: $$(chromium --version 2>/dev/null)"; \
	else apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver; fi

# The website in a real browser (CI: `make site-test PROFILE=smoke` after `make test`): runs the study (only what
# changed), builds the site, opens every page in headless Chromium. Skipped with a message without Chromium.
site-test: setup
	@$(MAKE) --no-print-directory chromium || echo "site-test: cannot install chromium; the browser test will be skipped"
	@start=$$(date +%s); \
	$(PY) -m endolib run --profile $(PROFILE) --no-progress && \
	$(PY) -m endolib site --profile $(PROFILE) && \
	ENDOLIB_SITE_PROFILE=$(PROFILE) $(PY) -m pytest tests_site -v -rs; status=$$?; \
	echo "make site-test: $$(( $$(date +%s) - start )) s after installation"; exit $$status

# A one-node SLURM cluster of this host until Ctrl-C (root; installs slurm-wlm and munge from Debian if missing;
# config, state and logs in a temporary folder): tests_cluster/onenode_slurm.py prints the SLURM_CONF to export.
slurm:
	$(PY) tests_cluster/onenode_slurm.py

# The study on a real SLURM cluster and on hand-started Dask workers (CI: after `make test`): the one-node SLURM
# cluster, `--scheduler slurm:2` and `tcp://127.0.0.1:PORT` against serial byte for byte, and the faults (a job
# cancelled or a worker killed mid-unit, an unknown partition or account, a unit that raises). Needs root (it
# starts munged, slurmctld, slurmd); skipped with the reason elsewhere, unless ENDOLIB_CLUSTER_REQUIRED=1 (CI).
# Measured on the 2-core machine: 3 min 09 s with the packages installed (docs/paper_protocol.md).
cluster-test: setup
	@$(PY) -c "import dask_jobqueue" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,slurm]"
	@start=$$(date +%s); \
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) -m pytest tests_cluster -v -rs -p no:cacheprovider; status=$$?; \
	echo "make cluster-test: $$(( $$(date +%s) - start )) s after installation"; exit $$status

# JupyterLab on the notebooks with the project's environment (profile smoke by default; README "Reading and
# rerunning interactively"). As root (containers) it adds --allow-root; more options: LAB_ARGS="--no-browser".
lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

clean:
	rm -rf runs data results/smoke

distclean: clean
	rm -rf $(VENV) *.egg-info
