"""The space file and everything checked before anything runs: its schema (``spec``; the searched
parameters in ``params``, the safe YAML reading in ``yaml_file``, ``--set`` in ``overrides``), its checks
against the trainable (``trainable_checks``), constraints, what
defines a study's search (``definition``), and the samplers and pruners built by name (``samplers``,
``pareto``). Nothing here touches a store or starts Ray: a refusal costs a fraction of a second."""
