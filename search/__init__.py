"""hpsearch's engine: a space file in, a sweep run by Ray Tune with Optuna sampling and pruning, every trial
in MLflow, results read back. Its sub-packages, each importing only those below it:

* ``space``: the space file, its checks, and the samplers and pruners it names (no store is touched);
* ``stores``: the Optuna study, the MLflow runs and the store's folders, and how the driver writes to them;
* ``readback``: what reads a sweep back from its stores (sweeps, best, compare, report);
* ``driver``: the process that runs a sweep (Ray Tune, the Optuna bridge, the trials' sessions, resume);
* ``commands``: the ``hpsearch`` command line, and the servers it starts.

``names`` (the names shared across processes and stores) and ``errors`` (the user-error family, caught in
one place by the commands) are leaves every sub-package may take. ``docs/architecture.md`` draws the flow.
"""
