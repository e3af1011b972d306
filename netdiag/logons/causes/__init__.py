"""The cause registry: one module per cause of lost logon time, listed once in `registry.py`.

A cause module declares a `CAUSE` (netdiag.logons.causes.base.Cause): its id, the budget
category its seconds are in, its next step for the engineer (`action`, reviewed against
docs/domain.md), and the functions that detect it over the tables (labelling intervals
before the budget sweep, finding rows after it, and rows for TCP connections outside every
logon). `engine.py` runs them in registry order. Adding a cause = one new module here plus one
line in `registry.REGISTRY`.

This package's `__init__` imports nothing, so that `budget` can read the registry's ids
without an import circle (engine -> budget -> registry -> cause modules -> base).
"""
