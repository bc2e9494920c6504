"""Where a sweep's record lives and how it is written: the store's folders and URLs (``store``, ``infra``),
one driver per sweep (``driver_lock``), the study's write-behind (``write_behind``), the MLflow writer process
and its bulk metric rows (``mlflow_writer``, ``metric_rows``), a trial's logs (``trial_logs``), and the
repair of what a dead driver left RUNNING (``reconcile``)."""
