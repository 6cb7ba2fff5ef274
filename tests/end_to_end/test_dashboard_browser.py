"""What a person sees: `dropout-lab tensorboard` over a folder of two sweeps with disjoint swept
keys (per-layer p x seed; learning rate) and a single run (weight decay), tiny runs, opened in
headless Chromium through Playwright: one HParams view with every swept key checked and every
value in its filter, one row per setting with its seeds folded, numeric axes, the charts.

Needs `chromium` on the PATH (Debian: apt-get install chromium) and the playwright package (its
Python driver only: the browser is the system's). Outside CI it is skipped when either is
missing; in CI (CI=true, which .ci/run sets and scripts/setup.sh then installs both for) a
missing browser fails it.
"""

import json
import os
import select
import shutil
import statistics
import subprocess
import sys

import pytest

from conftest import REPO, run_cli

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TINY = ["data.subset=500", "data.test_subset=200", "trainer.epochs=2", "trainer.progress=false",
        "trainer.num_threads=1"]
TIMEOUT_MS = 60_000
# The rows: one per setting, named by its values of the keys swept anywhere in the folder.
ROWS = {"p1=0.2 p2=0.5 wd=0 lr=0.5": "0,1", "p1=0.5 p2=0.2 wd=0 lr=0.5": "0,1",
        "p1=0.2 p2=0.5 wd=0 lr=0.1": "0", "p1=0.2 p2=0.5 wd=0 lr=0.3": "0",
        "p1=0.2 p2=0.5 wd=1e-4 lr=0.5": "0"}


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
    """(URL of a `dropout-lab tensorboard` over the folder, the folder, the chromium)."""
    chromium = browser_or_skip()
    root = tmp_path_factory.mktemp("dashboard") / "outputs"
    run_cli("sweep", "--jobs", "2", "--sweep-dir", root / "probs",
            "model.dropout.p=[0.2,0.5],[0.5,0.2]", "seed=0,1", *TINY, check=True)
    run_cli("sweep", "--jobs", "2", "--sweep-dir", root / "rates", "optim.lr=0.1,0.3", *TINY,
            check=True)
    run_cli("train", "optim.weight_decay=1e-4", f"hydra.run.dir={root / 'single'}", *TINY,
            check=True)
    server = subprocess.Popen([sys.executable, "-m", "dropout_lab", "tensorboard", str(root)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "no URL printed within 60 s"
        yield server.stdout.readline().split()[-1], root, chromium
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
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def cell_texts(locator):
    return [text.strip() for text in locator.all_text_contents() if text.strip()]


def table_rows(page):
    """The HParams table as shown: its headers, and {trial ID: {header: cell text}}."""
    from playwright.sync_api import expect

    page.goto(page.url.split("#")[0] + "#hparams")
    cells = page.locator("tf-hparams-table-view vaadin-grid-cell-content")
    expect(cells.filter(has_text="p1=")).to_have_count(len(ROWS), timeout=TIMEOUT_MS)
    headers = cell_texts(page.locator("tf-hparams-table-view .table-header"))
    texts = [text.strip() for text in cells.all_text_contents()][len(headers):]
    rows = {}
    for start in [k for k, text in enumerate(texts) if text in ROWS]:
        rows[texts[start]] = dict(zip(headers, texts[start:start + len(headers)]))
    return headers, rows


@pytest.mark.slow
def test_one_view_of_two_sweeps_and_a_run_checks_every_swept_key(dashboard, page):
    url, _, _ = dashboard
    page.goto(url)
    headers, rows = table_rows(page)
    assert headers[:2] == ["Trial ID", "Show Metrics"]
    # every key swept anywhere (the seeds of each row fill the fifth column), nothing constant
    assert set(headers[2:7]) == {"p1", "p2", "lr", "weight decay", "seeds"}
    assert {"test acc (steady)", "test acc (best)", "gap (train - test)"} <= set(headers)
    checked = dict(page.locator("paper-checkbox.hparam-checkbox").evaluate_all(
        "boxes => boxes.map(box => [box.textContent.trim(), box.checked])"))
    assert {name for name, on in checked.items() if on} == {"p1", "p2", "lr", "weight decay", "seeds"}
    assert "seed" not in checked and "learning rate" not in headers
    assert "lr (last epoch)" not in page.content()  # not a metric: its per-epoch chart stays

    # Each filter lists every value used anywhere in the folder, numbers as numbers.
    values = {}  # hparam -> the values its filter offers
    for hparam in page.locator("div.hparam").all():
        name = hparam.locator("paper-checkbox.hparam-checkbox").text_content().strip()
        options = cell_texts(hparam.locator("paper-checkbox.discrete-value-checkbox"))
        values[name] = options
    for name, numbers in (("lr", [0.1, 0.3, 0.5]), ("weight decay", [0.0, 1e-4]),
                          ("p1", [0.2, 0.5]), ("p2", [0.2, 0.5])):
        assert [float(text) for text in values[name]] == pytest.approx(numbers)
    assert values["seeds"] == ["0", "0,1"] and values["standardize"] == ["false"]


@pytest.mark.slow
def test_the_seeds_of_a_setting_are_one_row_with_their_mean(dashboard, page):
    url, root, _ = dashboard
    page.goto(url)
    _, rows = table_rows(page)
    assert set(rows) == set(ROWS)  # 7 runs, 5 settings
    assert {name: row["seeds"] for name, row in rows.items()} == ROWS
    for p1, p2 in ((0.2, 0.5), (0.5, 0.2)):
        runs = [json.loads(path.read_text()) for path in (root / "probs").glob("*/summary.json")]
        steady = [run["steady"]["test_accuracy"] for run in runs
                  if run["config"]["model"]["dropout"]["p"] == [p1, p2]]
        assert len(steady) == 2
        shown = float(rows[f"p1={p1} p2={p2} wd=0 lr=0.5"]["test acc (steady)"])
        assert shown == pytest.approx(statistics.fmean(steady), abs=1e-5)  # 5 digits shown

    # One click away: Show Metrics on a row draws its seeds' curves (the page fetches each one).
    fetched = []
    page.on("request", lambda request: fetched.append(json.loads(request.post_data)["sessionName"])
            if request.url.endswith("/metric_evals") else None)
    cells = page.locator("tf-hparams-table-view vaadin-grid-cell-content")
    texts = [text.strip() for text in cells.all_text_contents()]
    cells.nth(texts.index("p1=0.5 p2=0.2 wd=0 lr=0.5") + 1).locator("paper-checkbox").click()
    page.locator("tf-hparams-session-group-details").first.wait_for()
    page.wait_for_timeout(3000)
    seeds = sorted(path.parent.name for path in (root / "probs").glob("*/summary.json")
                   if json.loads(path.read_text())["config"]["model"]["dropout"]["p"] == [0.5, 0.2])
    assert sorted(set(fetched)) == [f"probs/{job}" for job in seeds]


@pytest.mark.slow
def test_per_layer_probabilities_are_numeric_axes_with_a_line_per_setting(dashboard, page):
    url, _, _ = dashboard
    page.goto(url + "#hparams")
    page.get_by_text("Parallel Coordinates View").click()
    # Scale choices (linear, log, quantile) are offered for numeric columns only.
    numeric = page.locator("tf-hparams-scale-and-color-controls .column-title")
    numeric.first.wait_for()
    assert {"p1", "p2", "lr", "weight decay"} <= set(cell_texts(numeric))
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
    assert lines.count() == len(ROWS)  # one line per setting, not per run


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
