"""Every command in the README's code blocks runs as written: the shell blocks in order in one folder (as a
newcomer would type them, after `source .venv/bin/activate`), then the Python blocks. `make` lines are checked
with `make -n` (the target exists and expands): `make test` is this suite and `make demo` is timed on a fresh
clone (benchmarks/README.md)."""
import os, re, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def blocks(text: str, lang: str) -> list[str]:
    "The bodies of the fenced code blocks of one language, in order."
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def shell_lines(block: str) -> list[str]:
    "Commands of a shell block (continuation lines joined), comments and blank lines dropped."
    out, cur = [], ""
    for line in block.splitlines():
        cur += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if line.rstrip().endswith("\\"): continue
        if cur.strip() and not cur.strip().startswith("#"): out.append(cur.strip())
        cur = ""
    return out


def test_readme_is_a_newcomers_page():
    text = README.read_text()
    assert len(text) <= 12_000, f"README has {len(text)} characters, expected at most 12 000"
    assert "RESULTS_TABLE" not in text
    for path in re.findall(r"`((?:nbs|campaigns|tests|benchmarks|hepnb)/[\w./-]+)`", text):
        if "<" not in path and "..." not in path:
            assert (ROOT / path).exists(), f"the README names {path}, which does not exist"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    "A fresh folder with the repository's notebooks, campaigns, settings and environment at hand."
    w = tmp_path_factory.mktemp("readme")
    for name in ("nbs", "campaigns", ".venv"):
        (w / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "settings.ini", w / "settings.ini")
    return w


def test_every_readme_command_runs(workdir):
    text = README.read_text()
    commands = [c for b in blocks(text, "bash") for c in shell_lines(b)]
    assert any(c.startswith("hepnb train") for c in commands) and any(c.startswith("hepnb campaign") for c in commands)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    for cmd in commands:
        if cmd.startswith("make "):
            target = cmd.split()[1]
            p = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, env=env)
        else:
            # each line in a shell that has done what a reader does first
            p = subprocess.run(["bash", "-c", f"set -eo pipefail; source .venv/bin/activate; {cmd}"], cwd=workdir,
                               capture_output=True, text=True, env=env, timeout=900)
        assert p.returncode == 0, f"README command failed ({p.returncode}): {cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert (workdir / "reports" / "tiny" / "index.html").exists()
    assert (workdir / "preds" / "summary.csv").read_text().count("\n") > 3
    for block in blocks(text, "python"):
        p = subprocess.run([sys.executable, "-c", block], cwd=workdir, capture_output=True, text=True, env=env,
                           timeout=600)
        assert p.returncode == 0, f"README Python block failed:\n{block}\n{p.stderr[-3000:]}"
