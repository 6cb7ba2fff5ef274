"""The declared questions of an exercise, answered from its runs.

Each exercise declares its questions in code (``Exercise.questions``), before any run: A and
B are settings named by the overrides that make them (their swept values), compared on a
metric of each run, paired by seed. This module picks each arm's runs from the sweep, takes the
metric per seed and hands the family to inference.decide. A run without a value (diverged,
failed) is NaN: it drops its own seed from that question's pairing, no other.
"""

import math
from functools import lru_cache
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

from dropout_lab.exercises.runs import steady_value
from dropout_lab.inference.decide import Answer, Question, answer_questions
from dropout_lab.inference.sequential import Design
from dropout_lab.run_folder import RunRecord, Status

# Question.metric -> a run's value
METRICS: Dict[str, Callable[[RunRecord], Optional[float]]] = {
    "steady test accuracy": steady_value,
    "steady gap": lambda run: steady_value(run, "gap"),
}

BySeed = Dict[Hashable, float]


@lru_cache(maxsize=256)
def _parsed(override: str) -> Tuple[str, object]:
    """('model.dropout.p.0', 0.2) from 'model.dropout.p.0=0.2', by Hydra's own parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(override)
    return parsed.key_or_group, parsed.value()


def _at(config, key: str):
    for part in key.split("."):
        if isinstance(config, list) and part.isdigit() and int(part) < len(config):
            config = config[int(part)]
        elif isinstance(config, dict) and part in config:
            config = config[part]
        else:
            return None
    return config


def _same(wanted, found) -> bool:
    """A value from an override against the run's config: dicts by the keys given."""
    if isinstance(wanted, dict):
        return isinstance(found, dict) and all(_same(v, found.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(found, list) and len(wanted) == len(found) and all(
            _same(w, f) for w, f in zip(wanted, found))
    if isinstance(wanted, (int, float)) and isinstance(found, (int, float)):
        return math.isclose(float(wanted), float(found), rel_tol=1e-12, abs_tol=0.0)
    return wanted == found


def arm_runs(runs: Sequence[RunRecord], overrides: Sequence[str]) -> List[RunRecord]:
    """The runs of one arm: those whose config has every override's value."""
    wanted = [_parsed(o) for o in overrides]
    return [run for run in runs if run.config
            and all(_same(value, _at(run.config, key)) for key, value in wanted)]


def by_seed(runs: Sequence[RunRecord], value: Callable[[RunRecord], Optional[float]]) -> BySeed:
    """{seed: value}; NaN for a run that did not complete or has no value."""
    table = {}
    for run in runs:
        result = value(run) if run.status == Status.COMPLETED else None
        table[run.config["seed"]] = math.nan if result is None else float(result)
    return table


def arm_values(question: Question, runs: Sequence[RunRecord]) -> Tuple[BySeed, BySeed]:
    """The default: each arm's runs by its overrides, the metric of each run."""
    value = METRICS[question.metric]
    return (by_seed(arm_runs(runs, question.a_overrides), value),
            by_seed(arm_runs(runs, question.b_overrides), value))


def fixed_design(values: Dict[str, Tuple[BySeed, BySeed]]) -> Design:
    """One look at the seeds run (the most any question has)."""
    seeds = max((len(set(a) | set(b)) for a, b in values.values()), default=1)
    return Design((max(seeds, 1),))


def answer_exercise(questions: Sequence[Question], values: Dict[str, Tuple[BySeed, BySeed]],
                    design: Optional[Design] = None) -> List[Answer]:
    """The family's answers; ``design`` default: one look at the seeds run."""
    return answer_questions(questions, values, design or fixed_design(values))
