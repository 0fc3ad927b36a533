"""The perf engine: load plans, the load generator and its wire, measurement windows, records and reports.

`run` is the entry (`run_perf`); `generator`/`load` drive the traffic over `wire`/`transport`;
`windows` decides when a level is stable; `inputs` makes the request bodies; `report` draws it.
"""
