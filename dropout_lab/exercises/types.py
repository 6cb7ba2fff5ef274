"""What an exercise is and what its analysis returns (no torch import).

An exercise is a named sweep (configs/experiment/exercise_N.yaml) plus an analysis: a function
from the sweep's run records (run_folder.RunRecord, from report.load_runs) and any measurements
made on the trained models to tables, plots and a conclusion computed from those numbers.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from dropout_lab.run_folder import RunRecord

NO_COMPLETED_RUN = "No run completed: nothing to conclude."


@dataclass(frozen=True)
class Table:
    title: str
    header: Sequence[str]
    rows: List[Sequence]
    note: str = ""


@dataclass
class Findings:
    """An analysis' result: tables, plots (caption, file name in the exercise folder), the
    conclusion (one bullet per line), extra setup lines, and key numbers for results.json."""

    tables: List[Table]
    plots: List[Tuple[str, str]]
    conclusion: List[str]
    setup: List[str] = field(default_factory=list)
    numbers: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def nothing(cls, reason: str = NO_COMPLETED_RUN) -> "Findings":
        """No tables or plots, only the reason why there is nothing to conclude."""
        return cls([], [], [reason])


@dataclass(frozen=True)
class Exercise:
    number: int
    title: str
    question: str  # the textbook's exercise, in our words
    design: str  # what the sweep runs, one paragraph
    analyze: Callable[[List[RunRecord], dict, Path], Findings]  # (runs, measurements, out_dir)
    quick: Tuple[str, ...] = ()  # overrides that shrink the sweep for --quick
    # (completed runs, out_dir, quick) -> JSON-able measurements on the trained models
    measure: Optional[Callable[[List[RunRecord], Path, bool], dict]] = None
    # The family of questions, declared before any run (inference.decide.Question), answered
    # together: Holm's correction over the family, paired by seed.
    questions: Tuple[Any, ...] = ()
    # (question, runs, measurements) -> ({seed: A's value}, {seed: B's value}); default: the
    # arms' runs by their overrides, the question's metric of each (exercises/questions.py)
    values: Optional[Callable[[Any, List[RunRecord], dict], Tuple[dict, dict]]] = None

    @property
    def experiment(self) -> str:
        return f"exercise_{self.number}"
