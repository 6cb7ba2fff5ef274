"""What a person sees: `dropout-lab tensorboard` over a real sweep (per-layer p and weight decay,
4 tiny jobs), opened in headless Chromium through Playwright.

Needs `chromium` on the PATH (Debian: apt-get install chromium) and the playwright package (its
Python driver only: the browser is the system's). Outside CI it is skipped when either is
missing; in CI (CI=true, which .ci/run sets and scripts/setup.sh then installs both for) a
missing browser fails it.
"""

import os
import select
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, TINY, run_cli

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SWEPT = ["model.dropout.p=[0.2,0.5],[0.5,0.2]", "optim.weight_decay=0,1e-4"]
TIMEOUT_MS = 60_000


def browser_or_skip() -> str:
    """The chromium to drive, or skip (outside CI) / fail (in CI) saying what is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    chromium = shutil.which("chromium")
    if chromium is None:
        missing.append("chromium on the PATH (apt-get install chromium)")
    if missing:
        reason = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI installs them with scripts/setup.sh")
        pytest.skip(reason)
    return chromium


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """(URL of a `dropout-lab tensorboard` over a finished 4-job sweep, the job folder names)."""
    chromium = browser_or_skip()
    sweep_dir = tmp_path_factory.mktemp("dashboard") / "sweep"
    run_cli("sweep", "--jobs", "2", "--sweep-dir", sweep_dir, *SWEPT, *TINY, check=True)
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    server = subprocess.Popen([sys.executable, "-m", "dropout_lab", "tensorboard", str(sweep_dir)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "no URL printed within 60 s"
        yield server.stdout.readline().split()[-1], jobs, chromium
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def page(dashboard):
    from playwright.sync_api import sync_playwright

    url, _, chromium = dashboard
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def cell_texts(locator):
    return [text.strip() for text in locator.all_text_contents() if text.strip()]


@pytest.mark.slow
def test_hparams_table_has_a_row_per_job_and_shows_the_swept_keys(dashboard, page):
    from playwright.sync_api import expect

    url, jobs, _ = dashboard
    page.goto(url + "#hparams")
    cells = page.locator("tf-hparams-table-view vaadin-grid-cell-content")
    trial_ids = cells.filter(has_text="_p=[")  # the Trial ID cells: the job folder names
    expect(trial_ids).to_have_count(len(jobs), timeout=TIMEOUT_MS)
    assert cell_texts(trial_ids) == jobs == [  # in job order, named by what was swept
        f"{num:03d}_p={p},wd={wd},epochs=2,subset=1000,test_subset=500,device=cpu"
        for num, (p, wd) in enumerate([("[0.2,0.5]", "0"), ("[0.2,0.5]", "1e-4"),
                                       ("[0.5,0.2]", "0"), ("[0.5,0.2]", "1e-4")])]

    headers = cell_texts(page.locator("tf-hparams-table-view .table-header"))
    assert headers[:2] == ["Trial ID", "Show Metrics"]
    assert {"p1", "p2", "weight decay"} <= set(headers)  # the swept keys' columns, by default
    assert {"test acc (steady)", "test acc (best)", "gap (train - test)"} <= set(headers)
    for absent in ("train images", "test images", "standardize", "seed"):  # not swept: unchecked
        assert absent not in headers

    checked = dict(page.locator("paper-checkbox.hparam-checkbox").evaluate_all(
        "boxes => boxes.map(box => [box.textContent.trim(), box.checked])"))
    assert checked["p1"] and checked["p2"] and checked["weight decay"]
    assert not checked["train images"] and not checked["status"]
    assert "data.cache_dir" not in checked and "cache_dir" not in str(checked)  # left out


@pytest.mark.slow
def test_per_layer_probabilities_are_numeric_axes(dashboard, page):
    url, jobs, _ = dashboard
    page.goto(url + "#hparams")
    page.get_by_text("Parallel Coordinates View").click()
    # Scale choices (linear, log, quantile) are offered for numeric columns only.
    numeric = page.locator("tf-hparams-scale-and-color-controls .column-title")
    numeric.first.wait_for()
    assert {"p1", "p2", "weight decay"} <= set(cell_texts(numeric))
    axes = page.locator("tf-hparams-parallel-coords-plot g.axis-parent")
    axes.first.wait_for()
    ticks = {}  # axis title -> its tick labels
    for axis in axes.all():
        texts = axis.evaluate("g => [...g.querySelectorAll('text')]"
                              ".map(t => [t.getAttribute('class'), t.textContent])")
        title = [text for kind, text in texts if kind == "axis-title"][0]
        ticks[title] = [text for kind, text in texts if kind != "axis-title"]
    for layer in ("p1", "p2"):  # a linear axis from 0.2 to 0.5, not two categories
        values = [float(text) for text in ticks[layer]]
        assert min(values) == pytest.approx(0.2) and max(values) == pytest.approx(0.5)
        assert len(values) > 2
    lines = page.locator("tf-hparams-parallel-coords-plot g.foreground path")
    assert lines.count() == len(jobs)  # one line per job


@pytest.mark.slow
def test_custom_scalars_charts_are_there(dashboard, page):
    url, _, _ = dashboard
    page.goto(url + "#custom_scalars")
    charts = page.locator("tf-custom-scalar-multi-line-chart-card")
    charts.first.wait_for()
    titles = ("accuracy (train vs test)", "loss (train vs test)", "generalisation gap",
              "learning rate")
    for title in titles:
        assert page.get_by_text(title, exact=True).count() == 1
    assert charts.count() == len(titles)
