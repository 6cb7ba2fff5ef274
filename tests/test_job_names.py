"""Job folder names (job_names.py): numbered in order, short, the same from Hydra and the planner."""

import pytest

from conftest import TINY, run_cli
from dropout_lab.job_names import job_folder, short_key, short_number

EXCLUDE = ["trainer.progress", "trainer.num_threads", "data.dir", "data.cache_dir", "experiment"]


def test_names_sort_in_job_order():
    names = [job_folder(num, [f"seed={num}"]) for num in range(25)]
    assert sorted(names) == names
    assert names[7] == "007_seed=7"


def test_the_number_parses_as_the_report_parses_it():
    """report.py reads a job's number from its folder name with ``(\\d+)_``."""
    import re

    for name in (job_folder(7, ["seed=1"]), job_folder(12, ["trainer.num_threads=2"], EXCLUDE)):
        assert int(re.match(r"(\d+)_", name).group(1)) in (7, 12)
    assert job_folder(12, ["trainer.num_threads=2"], EXCLUDE) == "012_"


def test_a_job_takes_the_folder_its_settings_already_have(tmp_path):
    # A resumed sweep with a larger grid numbers its jobs anew: job 5 finds seed=1's folder 001.
    (tmp_path / "001_seed=1").mkdir()
    assert job_folder(5, ["seed=1"], sweep_dir=str(tmp_path)) == "001_seed=1"
    assert job_folder(5, ["seed=2"], sweep_dir=str(tmp_path)) == "005_seed=2"
    (tmp_path / "004_seed=1").mkdir()  # two folders for the same settings: no guess
    assert job_folder(5, ["seed=1"], sweep_dir=str(tmp_path)) == "005_seed=1"
    assert job_folder(5, ["seed=1"], sweep_dir=str(tmp_path / "missing")) == "005_seed=1"


def test_names_are_short_and_leave_out_settings_that_change_nothing():
    overrides = ["trainer.num_threads=1", "optim.weight_decay=0.0001", "model.dropout.p=[0.2, 0.5]",
                 "trainer.progress=false", "data.dir=/data/fashion"]
    assert job_folder(7, overrides, EXCLUDE) == "007_p=[0.2,0.5],wd=1e-4"


def test_swept_keys_lead_budgets_follow():
    overrides = ["data.subset=1000", "trainer.epochs=2", "seed=1", "optim.lr=0.1"]
    assert job_folder(0, overrides) == "000_lr=0.1,seed=1,epochs=2,subset=1000"


@pytest.mark.parametrize("written, label", [
    ("0.0001", "1e-4"), ("1e-05", "1e-5"), ("0.5", "0.5"), ("0.01", "0.01"), ("0.001", "1e-3"),
    ("0.534723628", "0.5347"), ("0.0", "0"), ("100.0", "100")])
def test_numbers_are_written_compactly(written, label):
    assert short_number(written) == label


def test_list_items_and_dict_values_get_their_layer_names():
    assert short_key("model.dropout.p.0") == "p1"  # exercise 1 and the search sweep these
    assert job_folder(3, ["model.dropout.p.0=0.2", "model.dropout.p.1=0.5", "seed=2"]) == \
        "003_p1=0.2,p2=0.5,seed=2"
    assert job_folder(4, ["model.dropout={kind:custom,p:[0.2,0.5]}", "optim.lr=0.1"]) == \
        "004_p=[0.2,0.5],kind=custom,lr=0.1"  # exercises 7 and 8 sweep whole dropout configs


def test_two_keys_with_one_short_name_keep_their_full_names():
    assert job_folder(1, ["data.subset=5", "other.subset=6"]) == "001_data.subset=5,other.subset=6"


def test_a_long_name_is_cut_the_number_keeps_it_unique():
    name = job_folder(12, [f"model.dropout.p=[{', '.join(['0.123456'] * 30)}]"])
    assert name.startswith("012_p=[0.1235,0.1235") and name.endswith("...")
    assert len(name) <= 4 + 80


@pytest.mark.slow
def test_hydra_names_the_folders_the_planner_planned(tmp_path):
    """Parallel jobs run in joblib workers, where Hydra resolves the folder name itself (the
    resolver arrives with Hydra's state): the folders are those plan_sweep promised."""
    from dropout_lab.sweep.plan import plan_sweep

    overrides = ["model.dropout.p=[0.2,0.5],[0.5,0.2]", "optim.lr=0.05", *TINY]
    run_cli("sweep", "--jobs", "2", "--sweep-dir", tmp_path / "sweep", *overrides, check=True)
    made = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert made == plan_sweep(overrides, validate=0).subdirs == [
        "000_p=[0.2,0.5],lr=0.05,epochs=2,subset=1000,test_subset=500,device=cpu",
        "001_p=[0.5,0.2],lr=0.05,epochs=2,subset=1000,test_subset=500,device=cpu"]
