"""The exploration notebook executes into an HTML report whose plots render offline in a real browser."""
import pytest

from conftest import ROOT, offline_page, run_cli


@pytest.fixture(scope="module")
def report(tmp_path_factory, small_atar):
    out = tmp_path_factory.mktemp("report")
    run_cli("report", ROOT / "nbs/stages/explore_atar.ipynb", "--out", out, "-p", "dataset", small_atar.path,
            "-p", "n_event_views", "2", check=0)
    return out / "index.html"


def test_report_is_self_contained(report):
    import re
    html = report.read_text()
    assert not re.search(r'<(script|link)[^>]*(src|href)="https?://', html)   # nothing fetched from a CDN
    assert html.count("Plotly.newPlot") >= 10            # the distributions and event views
    assert 2_000_000 < len(html) < 30_000_000             # plotly.js and BokehJS embedded once, data pre-binned


def test_report_renders_offline_in_chromium(report, tmp_path):
    with offline_page(report) as (page, external, errors):
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 10", timeout=30_000)
        n_plotly = page.locator(".js-plotly-plot").count()
        # plots are not blank: every plotly figure drew data traces
        drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .map(d => d.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .heatmaplayer .hm, .scatterlayer .points path').length)""")
        bokeh_views = page.evaluate("() => window.Bokeh ? Object.keys(window.Bokeh.index).length : 0")
        canvases = page.evaluate("""() => [...document.querySelectorAll('.bk-Figure, [data-root-id]')].length""")
    assert external == []
    assert errors == []
    assert n_plotly >= 10 and min(drawn) > 0
    assert bokeh_views >= 2 and canvases >= 2
