"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium) against a JupyterLab that
the test starts on 127.0.0.1 with a token. Used by tests/test_browser.py.

No silent skip: where chromium or chromedriver is missing, :func:`require_chromium` fails with the one-line
install command (``make test`` installs them first when it runs as root, see the Makefile).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000",
                 # no network but loopback: a dead proxy for everything else, so a CDN request fails as offline
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost"]
# A busy 2-core machine is many times slower than an idle one: waits are generous, and each step polls.
def _slowdown() -> float:
    """Waits stretch with the measured load (1-minute load average per core, 1x to 4x); COURSE_TEST_SLOWDOWN
    overrides."""
    if os.environ.get("COURSE_TEST_SLOWDOWN"):
        return float(os.environ["COURSE_TEST_SLOWDOWN"])
    try:
        return min(4.0, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))
    except OSError:
        return 1.0


SLOW = _slowdown()


def require_chromium() -> tuple[str, str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    if not binary or not driver:
        pytest.fail(f"the browser tests need Chromium and its driver: {INSTALL}  (as root; `make test` does it)",
                    pytrace=False)
    return binary, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, log: Path):
        self.url, self.token, self.proc, self.log = url, token, proc, log

    def page(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path}{sep}token={self.token}"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@contextlib.contextmanager
def jupyterlab(root: Path, timeout: float = 180):
    """``jupyter lab`` on ``root`` (also its working directory, so formgrader reads ``root/nbgrader_config.py``)."""
    port, token = free_port(), secrets.token_hex(16)
    log = Path(root) / ".lab.log"
    jupyter = str(Path(sys.executable).parent / "jupyter")
    args = [jupyter, "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(Path(root) / ".jupyter-config"))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    fh = open(log, "w")
    proc = subprocess.Popen(args, cwd=root, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, proc, log)
    try:
        deadline = time.time() + timeout * SLOW
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({proc.returncode}):\n{lab.log_tail()}")
            try:
                with urllib.request.urlopen(lab.page("/api/status"), timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"jupyter lab did not answer within {timeout * SLOW:.0f} s:\n{lab.log_tail()}")
            time.sleep(0.5)
        yield lab
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        fh.close()


@contextlib.contextmanager
def chrome(binary: str, driver_path: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    profile = tempfile.mkdtemp(prefix="course-chromium-")
    for a in CHROMIUM_ARGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(a)
    d = webdriver.Chrome(options=opts, service=Service(driver_path))
    d.set_page_load_timeout(120 * SLOW)
    try:
        yield d
    finally:
        with contextlib.suppress(Exception):
            d.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(d, script: str, timeout: float = 60, what: str = "", poll: float = 0.3):
    """Poll a JavaScript expression (``return ...``) until it is truthy; return its value."""
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        try:
            last = d.execute_script(script)
        except Exception as e:  # a page mid-navigation
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout * SLOW:.0f} s waiting for {what or script} (last: {last!r})")
