"""What TensorBoard's HParams dashboard shows of dropout-lab runs: the experiment, declared.

A run's config is not dumped as it is: the hparams are the settings a reader of a dropout
experiment looks for, each with its type, in the registry's order (keys.py): the dropout probability of each
hidden layer as its own number (``model.dropout.p1``, ``p2``, ...: numeric axes in the parallel
coordinates view), the dropout kind(s), weight decay, learning rate, optimizer, hidden sizes,
epochs, batch size, seed, then the rest that can change the results. Paths, the cache, the
download switch, the progress bar and the logging switches cannot, threads change only the last
digits: ``LEFT_OUT``, the one list of them that `runs`, `diff` and the dashboard use.
Hparam names are the config keys; the dashboard shows the short ``display`` names.

What runs write themselves (for plain ``tensorboard --logdir``): a single run declares the
experiment (hparams with their domains, and the metrics) in its own TensorBoard run; a sweep
declares it at the sweep folder's root (``write_sweep_experiment``, at the end of the sweep),
and each job writes only its session start and end. TensorBoard shows the first declaration it
finds, so a folder of several sweeps needs one of its own: ``folder_dashboard`` computes it from
the runs' configs, with the runs of a setting (all but the seed alike) one session group, for
``dropout-lab tensorboard`` to serve (tensorboard_server.py).

Which columns are shown by default. The dashboard (TensorBoard 2.x, plugins/hparams) lists the
experiment's hparams ordered by ``differs`` (true first), then by name, and checks the first
five; metrics are checked in the order declared, the first five. So ``differs`` is set for the
columns to show: the swept settings (whose values differ between the runs), then, up to five,
the first ``HEADLINE`` settings (the seeds of a folded row first). More than five swept keys:
five of them are checked, the others listed first among the unchecked.

No torch import; TensorBoard's protobufs are imported when a summary is made.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from dropout_lab import keys
from dropout_lab.config import flatten_config, per_layer_values
from dropout_lab.run_folder import EVENTS_GLOB, FINAL_STATUSES, SUMMARY, Status, read_runs

SHOWN_BY_DEFAULT = 5  # hparams and metrics the dashboard checks at first (see above)
MAX_DISCRETE = 10  # more distinct numbers: an interval (the dashboard lists <= 10 as checkboxes)


@dataclass(frozen=True)
class Setting:
    key: str  # the config key, and the hparam's name
    display: str  # what the dashboard shows
    description: str


PER_LAYER_P = Setting("model.dropout.p", "p", keys.key("model.dropout.p").description)
HEADLINE = ["seeds", "model.dropout.p", "model.dropout.kind", "optim.weight_decay", "optim.lr",
            "optim.name", "model.hidden", "trainer.epochs", "trainer.batch_size", "seed"]
STATUS = Setting("status", "status", "completed or diverged")
SEEDS = Setting("seeds", "seeds", "the seeds of the setting's runs (Show Metrics draws each)")
# The registry's (keys.py) classes of keys that cannot change results: `diff` names them.
NO_EFFECT = keys.NO_EFFECT
LAST_DIGITS = keys.LAST_DIGITS


def settings() -> List[Setting]:
    """The named hparams in reading order (the registry's, per-layer probabilities first)."""
    return [PER_LAYER_P if k.name == PER_LAYER_P.key else Setting(k.name, k.display, k.description)
            for k in keys.KEYS if k.display and k.effect == keys.Effect.RESULTS]


def left_out() -> frozenset:
    """Not hparams, not columns of `runs`: the keys that cannot change results."""
    return keys.NO_EFFECT | keys.LAST_DIGITS


# Not hparams, not columns of `runs`: the one list runs, diff and the dashboard leave out.
LEFT_OUT = left_out()
# (scalar tag, display name, description): the first five declared are shown by default.
METRICS = [(m.tag, m.display, m.description) for m in keys.metrics(keys.DECLARED_ORDER)]
# Declared only when a run holds out a validation split (data.validation).
VALIDATION_METRICS = {m.tag for m in keys.METRICS if m.validation}



# --- a run's hparams, from its config -------------------------------------------------------

def compact(value: Any) -> Any:
    """An hparam value: bool, number or text; lists as ``[256,256]``; None stays None."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(compact(item)) for item in value) + "]"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def hparam_values(config: Dict[str, Any]) -> Dict[str, Any]:
    """The run's hparams, name -> bool, number or text, in reading order (unset ones left out).

    Keys without a display name in the registry (keys.py) appear after the named ones."""
    flat = flatten_config(config)
    layers = len(flat.get("model.hidden") or [0])
    values: Dict[str, Any] = {}
    named = settings()
    named_keys = {setting.key for setting in named}
    for setting in named:
        if setting is PER_LAYER_P:
            if "model.dropout.p" in flat:
                for k, p in enumerate(per_layer_values(flat["model.dropout.p"], layers), start=1):
                    values[f"{setting.key}{k}"] = p
        elif setting.key == "model.dropout.kind" and setting.key in flat:
            kinds = per_layer_values(flat[setting.key], layers)
            values[setting.key] = kinds[0] if len(set(kinds)) == 1 else ",".join(kinds)
        elif setting.key in flat:
            values[setting.key] = compact(flat[setting.key])
    for key, value in flat.items():
        if key not in named_keys and key not in left_out():
            values[key] = compact(value)
    return {name: value for name, value in values.items() if value is not None}


def layer_of(name: str) -> Optional[int]:
    """The hidden layer of a per-layer probability's name (``model.dropout.p2`` -> 2), else None."""
    layer = name[len(PER_LAYER_P.key):]
    return int(layer) if name.startswith(PER_LAYER_P.key) and layer.isdigit() else None


def setting_of(name: str) -> Setting:
    """The Setting of an hparam name."""
    layer = layer_of(name)
    if layer is not None:
        return Setting(name, f"{PER_LAYER_P.display}{layer}", PER_LAYER_P.description.format(k=layer))
    registered = keys.key(name)
    if registered.display:
        return Setting(name, registered.display, registered.description)
    return {STATUS.key: STATUS, SEEDS.key: SEEDS}.get(name) or Setting(name, name, "")


def headline_rank(name: str) -> int:
    """Where an hparam stands in HEADLINE (per-layer probabilities share the first place)."""
    base = PER_LAYER_P.key if layer_of(name) is not None else name
    return HEADLINE.index(base) if base in HEADLINE else len(HEADLINE)


def swept_names(runs: Sequence[Dict[str, Any]]) -> List[str]:
    """The hparams whose values differ between ``runs`` (dicts of hparam_values)."""
    names = list(dict.fromkeys(name for values in runs for name in values))
    return [name for name in names
            if len({repr(values.get(name)) for values in runs}) > 1]


def shown_by_default(names: Sequence[str], swept: Sequence[str]) -> List[str]:
    """The columns to show at first: every swept one, then HEADLINE ones up to five."""
    shown = [name for name in names if name in swept]
    for name in sorted(names, key=headline_rank):
        if len(shown) >= SHOWN_BY_DEFAULT or headline_rank(name) == len(HEADLINE):
            break
        if name not in shown:
            shown.append(name)
    return shown


# --- TensorBoard summaries ------------------------------------------------------------------

def experiment_summary(runs: Sequence[Dict[str, Any]], statuses: Iterable[str] = (),
                       swept: Optional[Sequence[str]] = None):
    """The experiment config (hparams, their domains and the metrics) over ``runs``, each a
    dict of hparam_values; a ``Summary`` protobuf for the ``_hparams_/experiment`` tag.
    ``swept``: the hparams that differ (by default, those whose values differ between runs)."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    names = list(dict.fromkeys(name for values in runs for name in values))
    shown = set(shown_by_default(names, swept_names(runs) if swept is None else swept))
    infos = []
    for name in names:
        setting = setting_of(name)
        info = api_pb2.HParamInfo(name=name, display_name=setting.display,
                                  description=setting.description, differs=name in shown)
        domain(hp, [values[name] for values in runs if name in values]).update_hparam_info(info)
        infos.append(info)
    status_values = sorted(set(statuses)) or [Status.COMPLETED.value]
    status = api_pb2.HParamInfo(name=STATUS.key, display_name=STATUS.display,
                                description=STATUS.description)
    hp.Discrete(status_values).update_hparam_info(status)
    infos.append(status)
    experiment = api_pb2.Experiment(
        hparam_infos=infos, time_created_secs=time.time(),
        metric_infos=[hp.Metric(tag, display_name=display, description=description).as_proto()
                      for tag, display, description in declared_metrics(runs)])
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


def declared_metrics(runs: Sequence[Dict[str, Any]]) -> list:
    """METRICS, the validation ones only when one of ``runs`` holds out a validation split."""
    validation = any(values.get("data.validation") for values in runs)
    return [metric for metric in METRICS if validation or metric[0] not in VALIDATION_METRICS]


def domain(hp, values: List[Any]):
    """Booleans and text: the values seen; numbers: those values, or their range if many."""
    distinct = sorted(set(values), key=lambda v: (str(type(v)), v))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        numbers = sorted({float(v) for v in distinct if math.isfinite(v)})
        if len(numbers) > MAX_DISCRETE:
            return hp.RealInterval(numbers[0], numbers[-1])
        return hp.Discrete(numbers)
    if all(isinstance(v, bool) for v in distinct):
        return hp.Discrete(distinct)
    return hp.Discrete(sorted({str(v) for v in distinct}))


def session_start_summary(values: Dict[str, Any], status: str, start_time: float,
                          group: str = ""):
    """A run's hparam values (and its status), for the ``_hparams_/session_start_info`` tag.

    ``group``: the session group's name (the trial ID); none (what a run writes itself): each
    run is its own group, named after its TensorBoard run (its folder)."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionStartInfo(start_time_secs=start_time, group_name=group)
    for name, value in {**values, STATUS.key: str(status)}.items():
        if isinstance(value, bool):  # before int: a bool is an int to Python
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = value
        else:
            info.hparams[name].string_value = str(value)
    return _summary(metadata.SESSION_START_INFO_TAG,
                    plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end_summary(status: str, end_time: float):
    """The session's end: success for a completed run, failure for any other."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    outcome = api_pb2.STATUS_SUCCESS if status == Status.COMPLETED else api_pb2.STATUS_FAILURE
    info = plugin_data_pb2.SessionEndInfo(status=outcome, end_time_secs=end_time)
    return _summary(metadata.SESSION_END_INFO_TAG,
                    plugin_data_pb2.HParamsPluginData(session_end_info=info))


def run_summaries(config: Dict[str, Any], status: str, start_time: float,
                  with_experiment: bool) -> list:
    """What a run that has ended writes for the dashboard: its experiment (a single run;
    a sweep's jobs leave it to the sweep), its session start and end."""
    values = hparam_values(config)
    summaries = [experiment_summary([values], [str(status)])] if with_experiment else []
    return [*summaries, session_start_summary(values, status, start_time),
            session_end_summary(status, time.time())]


def _summary(tag: str, plugin_data):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata

    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(plugin_data),
                      tensor=metadata.NULL_TENSOR)
    return summary


# --- a sweep's experiment ---------------------------------------------------------------------

def write_sweep_experiment(sweep_dir: Path) -> Optional[Path]:
    """Declare the experiment of the runs under ``sweep_dir`` in an event file at its root
    (replacing an earlier one: a resumed sweep may hold more runs). The swept settings are those
    whose values differ between the runs' configs (summary.json): the grid's overrides, an
    Optuna search's trials and a group override's consequences (``optim=adam``) alike.
    None when no run has a config yet."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    sweep_dir = Path(sweep_dir)
    runs, statuses = [], []
    for run in read_runs(sweep_dir):
        if run.config:  # an unreadable run has none: the report names it
            runs.append(hparam_values(run.config))
            if run.ended_for_good:
                statuses.append(run.status)
    if not runs:
        return None
    for old in sweep_dir.glob(EVENTS_GLOB):
        old.unlink()
    writer = EventFileWriter(str(sweep_dir), filename_suffix=".experiment")
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=0,
                                     summary=experiment_summary(runs, statuses)))
    writer.close()
    return next(sweep_dir.glob(EVENTS_GLOB))


# --- a folder's dashboard: one experiment over all its runs, seeds folded -------------------


@dataclass(frozen=True)
class Session:
    """A run as the HParams dashboard sees it."""
    run: str  # TensorBoard's run name: the run folder relative to the served one ("." itself)
    values: Dict[str, Any]  # hparam_values of its config
    status: str
    start_time: float


def folder_sessions(root: Path) -> List[Session]:
    """The runs at or below ``root`` that TensorBoard shows (a config and event files)."""
    root = Path(root)
    sessions = []
    for record in read_runs(root):  # an unreadable run has no config: `dropout-lab runs` names it
        run_dir = record.run_dir
        if record.config and next(run_dir.glob(EVENTS_GLOB), None):
            run = run_dir.relative_to(root).as_posix() if run_dir != root else "."
            sessions.append(Session(run, hparam_values(record.config), record.status,
                                    (run_dir / SUMMARY).stat().st_mtime))
    return sessions


def setting_key(values: Dict[str, Any]) -> str:
    """What the runs of one setting share: every value but the seed."""
    return repr(sorted((name, repr(value)) for name, value in values.items() if name != "seed"))


def by_setting(runs: Iterable, values=lambda run: run) -> Dict[str, list]:
    """``runs`` grouped by setting (``values(run)``: its settings), in order of appearance."""
    groups: Dict[str, list] = {}
    for run in runs:
        groups.setdefault(setting_key(values(run)), []).append(run)
    return groups


def folder_dashboard(sessions: Sequence[Session], folder_name: str) -> Dict[str, Dict[str, bytes]]:
    """What TensorBoard's HParams plugin reads of a folder (run -> summary tag -> plugin data),
    computed from its runs' configs, whatever declarations their event files hold: one
    experiment over all of them, the runs of a setting one session group.

    A group is named after its values of the settings that differ under the folder (short
    names: ``wd=0.001 lr=0.1``; the folder's name when only seeds differ); its hparams are the
    setting's, with ``seeds`` instead of ``seed`` and ``status`` the set of its runs' statuses,
    so that the dashboard's rows, filters and parallel coordinates show one line per setting,
    with the mean of each metric over its seeds (TensorBoard's aggregation of a group)."""
    from tensorboard.plugins.hparams import metadata

    if not sessions:
        return {}  # no run with a config and events yet: TensorBoard's own view
    swept = [name for name in swept_names([s.values for s in sessions]) if name != "seed"]
    contents: Dict[str, Dict[str, bytes]] = {".": {}}  # the experiment first
    groups, statuses = [], set()
    settings = list(by_setting(sessions, lambda session: session.values).values())
    for members, group in zip(settings, group_names([m[0].values for m in settings], swept)):
        values = {name: value for name, value in members[0].values.items() if name != "seed"}
        seeds = sorted({s.values["seed"] for s in members if "seed" in s.values})
        if seeds:
            values[SEEDS.key] = ",".join(map(str, seeds))
        status = "+".join(sorted({s.status for s in members}))
        groups.append(values)
        statuses.add(status)
        for session in members:
            tags = contents.setdefault(session.run, {})
            start = session_start_summary(values, status, session.start_time,
                                          group=group or folder_name)
            tags[metadata.SESSION_START_INFO_TAG] = _content(start)
            if session.status in FINAL_STATUSES:  # else running: TensorBoard's own status for it
                tags[metadata.SESSION_END_INFO_TAG] = _content(
                    session_end_summary(session.status, session.start_time))
    contents["."][metadata.EXPERIMENT_TAG] = _content(experiment_summary(groups, statuses, swept))
    return contents


def group_names(settings: Sequence[Dict[str, Any]], swept: Sequence[str]) -> List[str]:
    """Each setting's values of the ``swept`` hparams, short (``wd=1e-3 lr=0.1``: job folder
    names' aliases and numbers), in full where short ones would name two settings alike."""
    from dropout_lab.job_names import short_key, short_value

    def name(values, text):
        return " ".join(f"{short_key(key)}={text(values[key])}" for key in swept if key in values)

    short = [name(values, lambda v: short_value(str(v))) for values in settings]
    return short if len(set(short)) == len(short) else [name(values, str) for values in settings]


def _content(summary) -> bytes:
    return summary.value[0].metadata.plugin_data.content
