"""Statistics of the answers: descriptive summaries and the decisions on declared questions.

    describe.py     mean and sample standard deviation over runs (report tables, exercise estimates)
    sequential.py   the group-sequential design: look schedule, alpha spending, boundaries
    decide.py       declared questions and their four answers (A better, B better, equivalent,
                    undecided) under Holm's correction and the sequential boundaries; Fisher's
                    exact test for counts

No torch import: the statistics load fast and test without training.
"""
