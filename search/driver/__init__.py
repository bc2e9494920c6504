"""The process that runs a sweep. ``plan`` checks and builds it without touching anything; ``runner``
drives it: the stores made ready (``study_setup``), Ray started (``ray_patches``, ``head_watch``), Ray Tune
run with the Optuna bridge (``optuna_bridge`` owns the study, with ``fused_routing`` for fused groups and
``verdict`` for how a configuration ended; ``tune_glue`` is what Ray calls, ``trial_budget`` stops late
trials), each trial's session in its Ray worker (``ray_session``), its MLflow
run (``tracking``), the progress lines and the end (``progress``, ``summary``), interrupts
(``interrupts``); ``resume`` finishes a sweep whose driver died."""
