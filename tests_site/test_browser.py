"""The built website in a real browser (``make site-test``): Debian's headless Chromium driven by selenium.

Every page of ``runs/<profile>/site/`` (``ENDOLIB_SITE_PROFILE``, default smoke) is served from 127.0.0.1 and opened;
it must load without console errors (JavaScript exceptions, failed requests) and every image must load
(``naturalWidth > 0``). Screenshots of the landing page and the evaluation page go to
``runs/<profile>/site_screenshots/``. Skipped only when Chromium or its driver is not installed (``make chromium``).

Not part of ``make test``: it needs a site built from a full smoke run (``make site-test`` does both).
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from endolib.config import paths

PROFILE = os.environ.get("ENDOLIB_SITE_PROFILE", "smoke")
SITE = paths(PROFILE).runs / "site"
SHOTS = paths(PROFILE).runs / "site_screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
#: Headless, sandbox-free (root in CI), no GPU, and no network traffic of the browser's own.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1400")

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Chromium or chromedriver is not installed: "
                                "`make chromium` (apt-get install chromium chromium-driver) installs them")

_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(i => { i.loading = "eager"; });
Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; })))
  .then(() => done(imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute("src"))));
"""


@contextlib.contextmanager
def _serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (a free port) while the block runs."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail(f"{SITE}: no built site; build it with `make site PROFILE={PROFILE}` (or run `make site-test`)")
    with _serve(SITE) as url:
        yield url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    os.environ["SE_OFFLINE"] = "true"  # selenium must not look for drivers on the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _pages() -> list[str]:
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                  if not p.relative_to(SITE).as_posix().startswith(("_static/", "_sources/")))


def test_site_has_the_expected_pages():
    if not (SITE / "index.html").exists():
        pytest.fail(f"{SITE}: no built site; build it with `make site PROFILE={PROFILE}`")
    pages = set(_pages())
    executed = sorted(f.stem for f in paths(PROFILE).runs.glob("*.ipynb"))
    missing = [f"notebooks/{n}.html" for n in executed if f"notebooks/{n}.html" not in pages]
    missing += [p for p in ("index.html", "figures.html", "provenance.html", "tables/table1.html") if p not in pages]
    assert not missing, f"pages missing from {SITE}: {missing}"


def _check_page(browser, url: str) -> tuple[list[str], int]:
    """Open ``url``; return its problems (console errors, images that did not load) and its image count."""
    browser.get_log("browser")  # drop messages of the previous page that arrived late
    browser.get(url)
    broken = browser.execute_async_script(_IMAGES_JS)
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    problems = [f"console error: {m}" for m in errors] + [f"image did not load: {src}" for src in broken]
    return problems, len(browser.find_elements("tag name", "img"))


def test_the_check_catches_a_broken_page(browser, tmp_path):
    """The page check can fail: a script error, a missing image and a missing stylesheet are all reported."""
    (tmp_path / "ok.png").write_bytes(Path(__file__).with_name("pixel.png").read_bytes())
    (tmp_path / "bad.html").write_text('<html><head><link rel="stylesheet" href="gone.css"></head><body>'
                                       '<img src="ok.png"><img src="missing.png">'
                                       '<script>throw new Error("deliberate")</script></body></html>')
    (tmp_path / "good.html").write_text('<html><body><img src="ok.png"></body></html>')
    with _serve(tmp_path) as url:
        bad, n_bad = _check_page(browser, f"{url}/bad.html")
        good, n_good = _check_page(browser, f"{url}/good.html")
    assert any("deliberate" in p for p in bad), bad
    assert any("missing.png" in p for p in bad), bad
    assert any("gone.css" in p for p in bad), bad
    assert good == [] and (n_bad, n_good) == (2, 1)


def test_every_page_loads_without_errors_and_every_image_loads(server, browser):
    problems, n_images = [], 0
    for page in _pages():
        found, n = _check_page(browser, f"{server}/{page}")
        problems += [f"{page}: {m}" for m in found]
        n_images += n
    print(f"{len(_pages())} pages, {n_images} images checked")
    assert not problems, "\n".join(problems)
    assert n_images > 0, "no images at all: the figures are missing from the site"


def test_screenshots_of_landing_and_evaluation_pages(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"landing.png": "index.html", "evaluation.png": "notebooks/04_evaluation.html",
             "figures.png": "figures.html", "table3.png": "tables/table3_classifiers.html"}
    for name, page in shots.items():
        if not (SITE / page).exists():
            pytest.fail(f"{SITE / page}: page missing")
        browser.get(f"{server}/{page}")
        assert browser.save_screenshot(str(SHOTS / name))
        assert (SHOTS / name).stat().st_size > 10_000, f"{name}: screenshot looks empty"
    # the evaluation page's first figure, scrolled into view
    browser.get(f"{server}/notebooks/04_evaluation.html")
    imgs = browser.find_elements("css selector", "figure img, .cell_output img")
    assert imgs, "the evaluation page shows no figure"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", imgs[0])
    assert browser.save_screenshot(str(SHOTS / "evaluation_figure.png"))
    print(f"screenshots in {SHOTS}")
