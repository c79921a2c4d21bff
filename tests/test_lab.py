"""`make lab` starts JupyterLab headless on the repository root (lessons/, workspace/, autograder/ reachable) with
nbgrader's extensions enabled and the gradebook registered (formgrader lists every day)."""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from course.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_config(html: str) -> dict:
    m = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "JupyterLab page has no jupyter-config-data"
    return json.loads(m.group(1))


@pytest.mark.slow
def test_make_lab_serves_lab_with_nbgrader_extensions():
    port = free_port()
    args = "--no-browser --ServerApp.token= --ServerApp.password= --ServerApp.ip=127.0.0.1 --ServerApp.open_browser=False"
    proc = subprocess.Popen(["make", "lab", f"PORT={port}", f"LAB_ARGS={args}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    try:
        deadline, status, html = time.time() + 600, None, ""
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5) as r:
                    status, html = r.status, r.read().decode()
                break
            except OSError:
                time.sleep(1)
        assert status == 200, f"GET /lab gave {status}; make lab output:\n{proc.stdout.read() if proc.poll() is not None else ''}"
        cfg = page_config(html)
        names = {e["name"] for e in cfg.get("federated_extensions", [])}
        assert "@jupyter/nbgrader" in names, names
        disabled = cfg.get("disabledExtensions", [])
        assert not any(d.startswith("@jupyter/nbgrader") for d in disabled), disabled
        assert os.path.samefile(cfg["serverRoot"], ROOT) if "serverRoot" in cfg else True
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=5) as r:
            listing = {c["name"] for c in json.load(r)["content"]}
        assert {"lessons", "autograder", "solutions"} <= listing, listing
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/lessons", timeout=5) as r:
            assert any(c["name"].startswith("day1_") for c in json.load(r)["content"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/formgrader", timeout=30) as r:
            page = r.read().decode()
        assert "formgrader encountered an error" not in page
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
