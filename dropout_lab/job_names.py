"""Job folder names, computed here and only here: Hydra names each sweep job's folder with this
module's resolver (configs/config.yaml, ``hydra.sweep.subdir``) and the sweep planner resolves
the same setting to know the folders before anything runs.

    007_p=0.2-0.5_wd=1e-4

The job number is zero-padded (folders, TensorBoard runs and trial IDs sort in job order); the
settings that vary across the sweep's jobs follow (the planner leaves the constant ones out
through ``hydra.job.config.override_dirname.exclude_keys``; a one-job sweep names all its
overrides), the usually swept keys first, with short aliases (``SHORT_KEYS``), numbers written
compactly (0.0001 -> 1e-4). Names use only ``A-Z a-z 0-9 . _ = + -``, which no shell (bash,
zsh) expands: ``_`` between settings, ``=`` between a key and its value, ``-`` between a list's
items (``p=0.2-0.5`` is ``[0.2,0.5]``). Paths, threads and the progress bar are always left
out (the registry's ``in_folder_names``, keys.py). The full overrides stay in the job's
``.hydra/overrides.yaml`` and its config in summary.json and the TensorBoard hparams.

A folder already in the sweep dir that holds a job's settings under another name (an older
version's name, another number in a larger grid, other swept keys) stays that job's folder:
the planner lists such jobs in ``SWEEP_DIR/job_folders.json`` (``FOLDER_MAP``), which the
resolver reads in whichever process resolves it. No torch, no Hydra import: ``dropout-lab
runs`` uses the aliases too (hydra_resolvers.py makes ``job_folder`` a resolver).
"""

import json
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from dropout_lab.keys import CANNOT_CHANGE_RESULTS, SHORT_NAMES
from dropout_lab.keys import key as registry_key

NUM_WIDTH = 3  # 000-999 sort as text; a sweep of 1,000 jobs or more gets wider numbers
MAX_SETTINGS_CHARS = 80  # the part after the number; longer is cut (the number keeps it unique)
FOLDER_MAP = "job_folders.json"  # settings -> folder, for jobs whose folder has another name
# Overrides that never change a run's numbers (threads, progress, paths, logging; the launcher
# sets the first two per --jobs): a job's settings are the same with any of them.
NEUTRAL_KEYS = tuple(sorted(CANNOT_CHANGE_RESULTS))
# Config key -> the short name used in job folder names and the runs table, in the order a name
# lists its settings (keys.FOLDER_ORDER), then other keys by name.
SHORT_KEYS = SHORT_NAMES
_ORDER = {key: rank for rank, key in enumerate(SHORT_KEYS)}
# A float as Hydra writes one (0.0001, 1e-05, 0.5), not a part of a word or of another number.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)(?![\w.])")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")  # what a shell may expand or split on
_SAVED_MAPS: Dict[str, Tuple[int, Dict[str, str]]] = {}  # FOLDER_MAP path -> (mtime, map)
_PLANNED_MAPS: Dict[str, Dict[str, str]] = {}  # sweep dir -> map, set by this process's planner


def short_key(key: str) -> str:
    """``optim.weight_decay`` -> ``wd``; a list item ``model.dropout.p.0`` -> ``p1`` (layers
    count from 1, as the hparams do); keys without an alias: their last part."""
    key = key.lstrip("+~")
    parent, _, last = key.rpartition(".")
    if parent and last.isdigit():
        return f"{short_key(parent)}{int(last) + 1}"
    return SHORT_KEYS.get(key) or registry_key(key).short_name


def name_order(key: str) -> tuple:
    """Where a key stands in a name: SHORT_KEYS order (list items ``p.0``, ``p.1`` at their
    list's place), then the other keys by name."""
    parent, _, last = key.rpartition(".")
    if parent and last.isdigit():
        return (*name_order(parent)[:2], int(last))
    return (_ORDER.get(key, len(_ORDER)), key, -1)


def short_number(text: str) -> str:
    """A float as a label: 4 significant digits, the shorter of fixed and scientific notation
    (0.0001 -> 1e-4, 1e-05 -> 1e-5, 0.5 -> 0.5, 0.01 -> 0.01, 0.534723 -> 0.5347)."""
    value = float(f"{float(text):.4g}")
    mantissa, exponent = f"{value:.3e}".split("e")
    scientific = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if value != 0 and not 1e-4 <= abs(value) < 1e6:
        return scientific
    fixed = f"{value:.10f}".rstrip("0").rstrip(".")
    return fixed if len(fixed) <= len(scientific) else scientific


def short_value(value: str) -> str:
    """An override's value as a label (the runs table): no spaces, floats compact."""
    return _NUMBER.sub(lambda match: short_number(match.group()), str(value).replace(" ", ""))


def folder_text(text: str) -> str:
    """A key or value as a folder name writes it: ``[0.2,0.5]`` -> ``0.2-0.5``; brackets and
    quotes dropped, every other character a shell could expand or split on made ``-``."""
    return _UNSAFE.sub("-", re.sub(r"[][{}()'\"]", "", short_value(text)).replace(",", "-"))


def split_top_level(text: str, separator: str) -> List[str]:
    """``a:1,b:[2,3]`` split at the separators outside brackets and braces."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def override_key(override: str) -> str:
    """``+model.dropout.p=0.5`` -> ``model.dropout.p``."""
    return str(override).partition("=")[0].strip().lstrip("+~")


def override_items(overrides: Iterable[str]) -> List[Tuple[str, str]]:
    """(key, value as written) of each override; a dict value (``model.dropout={kind:custom,
    p:0.5}``, as exercises 7 and 8 sweep) as one item per entry (``model.dropout.kind``, ...)."""
    items = []
    for override in overrides:
        key, _, value = str(override).partition("=")
        key, value = key.strip().lstrip("+~"), value.strip()
        if value.startswith("{") and value.endswith("}") and value[1:-1].strip():
            for entry in split_top_level(value[1:-1], ","):
                name, _, item = entry.partition(":")
                items.append((f"{key}.{name.strip()}", item.strip()))
        else:
            items.append((key, value))
    return items


def excluded(key: str, exclude_keys: Sequence[str]) -> bool:
    """Whether a name leaves out override ``key``: in ``exclude_keys`` (the sweep's constant
    keys, hydra.job.config.override_dirname.exclude_keys), Hydra's own, or a key the registry
    keeps out of names (paths, threads, progress: keys.py)."""
    key = key.lstrip("+~")
    return (key in exclude_keys or key.startswith("hydra.") or key.startswith("hydra/")
            or not registry_key(key).in_folder_names)


def settings_label(overrides: Iterable[str], exclude_keys: Sequence[str] = ()) -> str:
    """``['optim.weight_decay=0.0001', 'model.dropout.p=[0.2,0.5]']`` -> ``p=0.2-0.5_wd=1e-4``.

    In name_order; a short name two keys would share falls back to the full keys."""
    kept = [o for o in overrides if not excluded(override_key(o), exclude_keys)]
    items = sorted(override_items(kept), key=lambda item: name_order(item[0]))
    names = [short_key(key) for key, _ in items]
    clashing = {name for name in names if names.count(name) > 1}
    return "_".join(f"{folder_text(key if name in clashing else name)}={folder_text(value)}"
                    for name, (key, value) in zip(names, items))


def settings_identity(overrides: Iterable[str], ignored: Iterable[str] = NEUTRAL_KEYS) -> str:
    """What makes two jobs the same run, whatever their folders' names: their overrides, in
    any order, without the ``ignored`` keys (by default the NEUTRAL_KEYS)."""
    ignored = set(ignored)
    return " ".join(sorted(f"{key}={value}" for key, value in override_items(overrides)
                           if key not in ignored))


def job_folder(num, overrides: Iterable[str] = (), exclude_keys: Sequence[str] = (),
               sweep_dir: Optional[str] = None, width: int = NUM_WIDTH) -> str:
    """The folder name of sweep job ``num`` with job ``overrides``: ``007_p=0.2-0.5_wd=1e-4``,
    or the folder the sweep dir's FOLDER_MAP gives its settings. ``width``: the digits of the
    number (the planner widens it for a sweep of 1,000 jobs or more)."""
    overrides = list(overrides)
    if sweep_dir:
        mapped = folder_map(sweep_dir).get(settings_identity(overrides))
        if mapped:
            return mapped
    settings = settings_label(overrides, exclude_keys)
    if len(settings) > MAX_SETTINGS_CHARS:  # cut: only the number tells such names apart
        settings = settings[:MAX_SETTINGS_CHARS - 3] + "..."
    return f"{int(num):0{int(width)}d}_{settings}"  # "003_" alone when nothing is left to name


def number_width(jobs: int) -> int:
    """The digits a sweep of ``jobs`` jobs numbers its folders with, so that they sort."""
    return max(NUM_WIDTH, len(str(jobs - 1)))


def folder_map(sweep_dir: str) -> Dict[str, str]:
    """Settings identity -> folder name for the jobs whose folder is not their plain name: the
    one this process's planner made (``plan_folders``), else the sweep dir's FOLDER_MAP file
    (read again only when it changes: every job resolves its name)."""
    sweep_dir = os.path.abspath(sweep_dir)
    if sweep_dir in _PLANNED_MAPS:
        return _PLANNED_MAPS[sweep_dir]
    path = os.path.join(sweep_dir, FOLDER_MAP)
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:  # none: every job has its plain name
        return {}
    if _SAVED_MAPS.get(path, (None,))[0] != mtime:
        with open(path) as file:
            _SAVED_MAPS[path] = (mtime, json.load(file))
    return _SAVED_MAPS[path][1]


def plan_folders(sweep_dir: str, mapping: Dict[str, str]) -> None:
    """Use ``mapping`` (settings identity -> folder) for ``sweep_dir`` in this process."""
    _PLANNED_MAPS[os.path.abspath(sweep_dir)] = mapping
