"""`zeroserve tune`: the best serving configuration of a deployed model under a latency budget.

search.py (pure: candidates, space, quick and brute search), settings.py (deployed config <->
candidate), runner.py (the private server and the measurements), apply.py (--apply/--revert into
the canonical repository), report.py (table, PNG, HTML), cli.py.
"""
