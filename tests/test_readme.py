"""Every command in the README's code blocks runs as written: the shell blocks in order in one folder (as a
newcomer would type them, after `source .venv/bin/activate`), then the Python blocks. `make` lines are checked
with `make -n` (the target exists and expands): `make test` is this suite and `make demo` is timed on a fresh
clone (benchmarks/README.md). Then the example in the header of every stage notebook runs the same way, in the
same folder (they use the data the README's commands made)."""
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


def _shell(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    "One command in a shell that has done what a reader does first (source .venv/bin/activate)."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    if cmd.startswith("make "):                 # checked, not run: see the module docstring
        return subprocess.run(["make", "-n", cmd.split()[1]], cwd=ROOT, capture_output=True, text=True, env=env)
    return subprocess.run(["bash", "-c", f"set -eo pipefail; source .venv/bin/activate; {cmd}"], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def readme_run(workdir):
    "Every command of the README's shell blocks, in order, then its Python blocks: [(command, process)]."
    text = README.read_text()
    done = [(c, _shell(c, workdir)) for b in blocks(text, "bash") for c in shell_lines(b)]
    for block in blocks(text, "python"):
        done.append((block, subprocess.run([sys.executable, "-c", block], cwd=workdir, capture_output=True,
                                           text=True, timeout=600)))
    return done


def test_every_readme_command_runs(readme_run, workdir):
    cmds = [c for c, _ in readme_run]
    assert any(c.startswith("hepnb train") for c in cmds) and any(c.startswith("hepnb campaign") for c in cmds)
    for cmd, p in readme_run:
        assert p.returncode == 0, f"README command failed ({p.returncode}): {cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    assert (workdir / "reports" / "tiny" / "index.html").exists()
    assert (workdir / "preds" / "summary.csv").read_text().count("\n") > 3


STAGES = ROOT / "nbs" / "stages"
ORDER = ["simulate", "explore", "model", "train", "resolution", "display"]


def header_commands(nb_path: Path) -> list[str]:
    "The shell commands in the code blocks of a notebook's first (markdown) cell."
    import json
    src = "".join(json.loads(nb_path.read_text())["cells"][0]["source"])
    return [c for b in re.findall(r"^```\w*\n(.*?)^```", src, flags=re.S | re.M) for c in shell_lines(b)]


def test_stage_notebook_header_examples_run(readme_run, workdir):
    "Every stage notebook shows how to run it, and that example runs (after the README's, which made its data)."
    assert all(p.returncode == 0 for _, p in readme_run), "the README's commands must run first"
    books = sorted(STAGES.glob("*.ipynb"), key=lambda p: (p.stem.rsplit("_", 1)[-1],
                                                           ORDER.index(p.stem.rsplit("_", 1)[0])))
    for nb in books:
        cmds = header_commands(nb)
        assert cmds and all(c.startswith(f"hepnb report nbs/stages/{nb.name} ") for c in cmds), \
            f"{nb.name}: expected its header to show `hepnb report nbs/stages/{nb.name} ...`, found {cmds}"
        for cmd in cmds:
            p = _shell(cmd, workdir)
            assert p.returncode == 0, f"{nb.name} header example failed: {cmd}\n{p.stderr[-3000:]}"
