"""The learner's progress: which lessons they started and how many checks pass (workspace/.progress.json)."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from . import paths


def progress_file(workspace: Path | None = None) -> Path:
    return (workspace or paths.WORKSPACE) / ".progress.json"


def load(workspace: Path | None = None) -> dict:
    f = progress_file(workspace)
    try:
        return json.loads(f.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def record_check(notebook: str, passed: int, total: int, workspace: Path | None = None) -> None:
    """Remember the latest ``course check`` result of one notebook (key: path relative to the workspace)."""
    data = load(workspace)
    data[notebook] = {"passed": passed, "total": total, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    f = progress_file(workspace)
    f.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".progress.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, f)


def day_summary(folder: str, workspace: Path | None = None) -> dict:
    """Started or not, and checks passed / total over the day's notebooks that were checked."""
    ws = workspace or paths.WORKSPACE
    started = (ws / folder).is_dir()
    data = load(workspace)
    mine = [v for k, v in data.items() if k.split("/")[0] == folder]
    return {"started": started, "passed": sum(v["passed"] for v in mine), "total": sum(v["total"] for v in mine),
            "checked": len(mine)}
