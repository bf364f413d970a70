"""The detector registry: detectors come from the entry-point group `hepnb.detectors`; one that cannot load is
listed with its error, and every command that names it fails with that error (it never silently vanishes)."""
import pytest

from conftest import run_cli
from hepnb.core import HepnbError
from hepnb.registry import BrokenDetector, Detector, detectors, get_detector


@pytest.fixture
def plugin_site(tmp_path):
    "A folder for PYTHONPATH holding an installed distribution that registers three detectors, two of them broken."
    dist = tmp_path / "site" / "hepnb_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hepnb-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[hepnb.detectors]\n"
        "ghost = no_such_detector_package.detector:DETECTOR\n"     # not importable
        "imposter = hepnb.registry:Task\n"                         # not a Detector
        "twin = hepnb.detectors.atar.detector:DETECTOR\n")         # calls itself atar
    return {"PYTHONPATH": str(tmp_path / "site")}


def test_builtin_detector_is_registered():
    atar = get_detector("atar")
    assert isinstance(atar, Detector) and "atar" in detectors()
    assert atar.task("pion_stop").stage == "atar.pion_stop"
    with pytest.raises(HepnbError, match="unknown task 'pion'"):
        atar.task("pion")


def test_broken_detectors_are_listed_with_their_error(plugin_site):
    p = run_cli("detectors", env=plugin_site, check=0)
    lines = p.stdout.splitlines()
    ghost = next(line for line in lines if line.startswith("ghost"))
    assert "BROKEN" in ghost and "ModuleNotFoundError" in ghost and "no_such_detector_package" in ghost
    assert "expected a hepnb.registry.Detector" in next(line for line in lines if line.startswith("imposter"))
    assert "calls itself 'atar'" in next(line for line in lines if line.startswith("twin"))
    assert any(line.startswith("atar  PIONEER") for line in lines)       # the good one is still there


@pytest.mark.parametrize("cmd", [["simulate", "ghost", "--events", "3", "--out", "x"],
                                 ["train", "ghost", "pion_stop", "--dataset", "d", "--run-dir", "r"],
                                 ["predict", "imposter", "s", "--classical", "--dataset", "d", "--out", "o"]])
def test_a_command_naming_a_broken_detector_fails_with_its_error(tmp_path, plugin_site, cmd):
    p = run_cli(*cmd, cwd=tmp_path, env=plugin_site)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"detector {cmd[1]} is broken" in p.stderr and "Traceback" not in p.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["site"]          # nothing written


def test_in_process_registry_reports_broken(monkeypatch, plugin_site):
    monkeypatch.syspath_prepend(plugin_site["PYTHONPATH"])
    import importlib
    importlib.invalidate_caches()
    try:
        found = detectors(refresh=True)
        assert isinstance(found["ghost"], BrokenDetector) and isinstance(found["atar"], Detector)
        with pytest.raises(HepnbError, match="detector ghost is broken: cannot import"):
            get_detector("ghost")
    finally:
        monkeypatch.undo()
        detectors(refresh=True)


def test_no_generic_module_names_a_detector():
    "A detector's knowledge lives in its own package: the generic modules name none (hepnb/*.py, not hepnb/detectors)."
    import re
    from conftest import ROOT
    word = re.compile(r"\b(atar|pioneer|xec|meg)\b", re.IGNORECASE)
    found = {p.name: [i + 1 for i, line in enumerate(p.read_text().splitlines()) if word.search(line)]
             for p in (ROOT / "hepnb").glob("*.py") if p.name != "_modidx.py"}
    assert {k: v for k, v in found.items() if v} == {}
