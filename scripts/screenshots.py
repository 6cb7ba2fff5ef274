"""Render the README's pictures of the dashboards into docs/images/ (rerun to refresh them).

    .venv/bin/python scripts/screenshots.py [--sweep-dir DIR] [--out docs/images]

Runs a small demo sweep into DIR when it holds none yet (per-layer dropout x weight decay, 8
jobs on 2,000 images, 60 epochs at lr 0.1, so that dropout has overfitting to prevent: about
two minutes on 2 cores) and a second one beside it (learning rate x 2 seeds, 4 jobs),
serves them with `dropout-lab tensorboard` and photographs them in headless Chromium (Debian's
`chromium`, driven by playwright's Python driver):

    hparams_parallel_coordinates.png  HParams of the demo sweep, parallel coordinates view, as
                                      it opens
    train_vs_test.png                 custom scalars: one run's accuracy, train (dropout on, and
                                      off: eval mode) vs test
    hparams_many_sweeps.png           HParams of the folder holding both sweeps, table view: the
                                      keys swept in either checked, one row per setting (seeds
                                      folded: their mean)
    report_test_accuracy.png          the sweep report's plot (report.md's test_accuracy.png)

Each picture is at most 1200 px wide and stored with a 256-colour palette (small files).
"""

import argparse
import select
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dropout_lab.run_folder import Status, read_status, run_folders  # noqa: E402

DEMO_SWEEP = ["model.dropout.p=[0,0],[0.2,0.5],[0.5,0.2],[0.5,0.5]", "optim.weight_decay=0,1e-3",
              "optim.lr=0.1", "data.subset=2000", "data.test_subset=5000", "trainer.epochs=60"]
SECOND_SWEEP = ["optim.lr=0.05,0.2", "seed=0,1", "data.subset=2000", "data.test_subset=5000",
                "trainer.epochs=60"]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTH = 1200
TRAIN_VS_TEST_RUNS = "^002_"  # p=(0.2, 0.5), no weight decay: train acc with dropout on and off


def cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dropout_lab", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)


def ensure_sweep(sweep_dir: Path, jobs: int, overrides=DEMO_SWEEP, runs: int = 8) -> None:
    """Run (or complete) the demo sweep in ``sweep_dir``."""
    done = [run for run in run_folders(sweep_dir)] if sweep_dir.is_dir() else []
    if len(done) >= runs and all(read_status(run) == Status.COMPLETED for run in done):
        return
    print(f"screenshots: running the sweep {' '.join(overrides)} into {sweep_dir}", flush=True)
    sweep = cli("sweep", "--jobs", jobs, "--sweep-dir", sweep_dir, *overrides)
    sweep.communicate()
    if sweep.returncode != 0:
        sys.exit(f"screenshots: the demo sweep failed (exit {sweep.returncode})")


def save(png: bytes, path: Path) -> None:
    """Shrink to WIDTH (when wider) and store with a 256-colour palette."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > WIDTH:
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"screenshots: {path} ({path.stat().st_size // 1024} KiB)")


@contextmanager
def browser_page():
    """A Chromium page, 1500 CSS px wide at a scale of 0.8 (1200 pixels)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("screenshots: needs chromium on the PATH (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 850}, device_scale_factor=0.8)
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


@contextmanager
def served(folder: Path):
    """The URL of `dropout-lab tensorboard FOLDER`, stopped afterwards."""
    server = cli("tensorboard", folder)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        if not ready:
            sys.exit("screenshots: TensorBoard printed no URL within 60 s")
        yield server.stdout.readline().split()[-1]
    finally:
        server.terminate()
        server.wait(timeout=30)


def photograph_sweep(url: str, out: Path) -> None:
    with browser_page() as page:
        page.goto(url + "#hparams")
        page.get_by_text("Parallel Coordinates View").click()
        page.locator("tf-hparams-parallel-coords-plot g.foreground path").first.wait_for()
        page.wait_for_timeout(1500)  # the lines' transition
        # down to the plot (the session details below it are empty until one is clicked)
        plot = page.locator("tf-hparams-parallel-coords-plot").bounding_box()
        save(page.screenshot(clip={"x": 0, "y": 0, "width": 1500,
                                   "height": plot["y"] + plot["height"] + 8}),
             out / "hparams_parallel_coordinates.png")

        page.goto(url + "#custom_scalars")
        page.locator("paper-input#names-regex input").fill(TRAIN_VS_TEST_RUNS)
        card = page.locator("tf-custom-scalar-multi-line-chart-card").first
        card.wait_for()
        card.locator("paper-icon-button[icon='fullscreen']").click()  # the wide chart
        card.locator(".toggle-matches-button").click()  # its legend: run and tag per line
        page.wait_for_timeout(2000)
        box = card.bounding_box()
        save(page.screenshot(clip={"x": 0, "y": 0, "width": 1500,
                                   "height": box["y"] + box["height"] + 8}),
             out / "train_vs_test.png")


def photograph_folder(url: str, out: Path, rows: int) -> None:
    """The HParams table of a folder of sweeps: the rows (settings) and the filters beside."""
    with browser_page() as page:
        page.goto(url + "#hparams")
        cells = page.locator("tf-hparams-table-view vaadin-grid-cell-content")
        cells.filter(has_text="lr=").nth(rows - 1).wait_for()
        page.wait_for_timeout(1500)
        save(page.screenshot(), out / "hparams_many_sweeps.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-dir", type=Path, default=REPO / "outputs" / "screenshots" / "sweep")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_sweep(args.sweep_dir, args.jobs)
    ensure_sweep(args.sweep_dir.parent / "rates", args.jobs, SECOND_SWEEP, runs=4)

    with served(args.sweep_dir) as url:
        photograph_sweep(url, args.out)
    with served(args.sweep_dir.parent) as url:  # both sweeps: 8 + 2 settings
        photograph_folder(url, args.out, rows=10)
    save((args.sweep_dir / "test_accuracy.png").read_bytes(), args.out / "report_test_accuracy.png")


if __name__ == "__main__":
    main()
