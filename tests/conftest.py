import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEPNB = str(Path(sys.executable).with_name("hepnb"))


def run_cli(*args, cwd=None, env=None, check=None):
    "Run the `hepnb` command in a subprocess; return the CompletedProcess."
    e = {**os.environ, **(env or {})}
    p = subprocess.run([HEPNB, *map(str, args)], cwd=cwd or ROOT, env=e, capture_output=True, text=True, timeout=600)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@pytest.fixture(scope="session")
def small_atar(tmp_path_factory):
    "A small simulated ATAR dataset (with pile-up), shared by the tests of a session."
    from hepnb.detectors.atar.sim import simulate_dataset
    out = tmp_path_factory.mktemp("atar") / "ds"
    return simulate_dataset(out, 3000, seed=123, rows_per_file=1000, row_group_size=500)


@pytest.fixture(scope="module")
def one_torch_thread():
    "Two shared cores: train with one thread, and restore the setting for the other modules."
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def skip_without_chromium():
    if chromium_path() is None:
        pytest.skip("chromium is not installed (CI installs it: apt-get install chromium)")


@contextlib.contextmanager
def offline_page(path):
    """Headless Chromium on the file `path`, offline: every request that leaves the file system is recorded and
    refused. Yields (page, external requests, JavaScript errors); skips when chromium is missing."""
    skip_without_chromium()
    from playwright.sync_api import sync_playwright
    external, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", lambda r: (external.append(r.request.url), r.abort())
                       if not r.request.url.startswith(("file:", "data:", "blob:")) else r.continue_())
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(Path(path).as_uri())
            yield page, external, errors
        finally:
            browser.close()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node SLURM cluster on localhost (tests/slurm_cluster.py), shared by the tests of a session.
    SLURM_CONF points at it while it runs. Skipped when SLURM is not installed, except on CI (CI=true)."""
    from slurm_cluster import LocalSlurm, available
    ok, why = available()
    if not ok:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{why} (CI=true: .ci/run installs it)")
        pytest.skip(why)
    cluster = LocalSlurm().start(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()
