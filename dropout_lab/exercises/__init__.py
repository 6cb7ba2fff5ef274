"""The textbook's eight dropout exercises, answered by experiments (``dropout-lab exercise``).

    runner.py     select exercises, run each one's sweep, measure, analyse, write its report
    ex1_... ex8_  one module per exercise: its Exercise (question, design, analysis)
    stats.py      the statistics of the verdicts
"""
