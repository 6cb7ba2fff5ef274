"""The textbook's eight dropout exercises, answered by experiments (``dropout-lab exercise``).

    runner.py     select exercises, run each one's sweep, measure, analyse, write its report
    types.py      Exercise (question, design, analysis), Findings and Table: what an analysis returns
    runs.py       the sweep's run records: settings, groups of seeds, estimates, names of settings
    stats.py      the statistics of the verdicts
    figures.py    plot helpers the exercises share (figures come from dropout_lab.plots)
    writing.py    report.md, results.json, measurements.json and index.md
    ex1_... ex8_  one module per exercise: its Exercise, measurements and analysis

Torch is imported only inside the functions that train (the sweep) or measure (ex3, ex4).
"""
