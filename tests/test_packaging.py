"""Project shape: conda environment and pyproject agree; nbdev keeps papermill's tags."""
import tomllib

import yaml

from conftest import ROOT


def _name(req):
    import re
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())
    want = set(proj["project"]["dependencies"]) | set(proj["project"]["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    got = {r for r in pip if not r.startswith("-")}
    torch_pin = (ROOT / "constraints.txt").read_text().split("torch==")[1].split()[0]
    assert f"torch=={torch_pin}" in got
    assert {r for r in got if _name(r) != "torch"} == {r for r in want if _name(r) != "torch"}


def test_nbdev_keeps_parameters_tag():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "tags" in proj["tool"]["nbdev"]["allowed_cell_metadata_keys"]
    import json
    nb = json.loads((ROOT / "nbs/stages/explore_atar.ipynb").read_text())
    assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"])


def test_top_level_shape():
    for p in ("nbs", "hepnb", "settings.ini", "tests", "reports", "environment.yml", "README.md", "pyproject.toml",
              "Makefile", "benchmarks", ".ci/run"):
        assert (ROOT / p).exists(), p
