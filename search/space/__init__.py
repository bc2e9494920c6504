"""The space file and everything checked before anything runs: reading it (``loading``: the safe YAML of
``yaml_file``, ``--set`` of ``overrides``), its schema (``spec``; the searched parameters in ``params``,
conditional ones in ``conditions``), its checks against the trainable (``trainable_checks``), constraints,
what defines a study's search (``definition``), and the samplers and pruners built by name (``samplers``,
``pareto``). Nothing here touches a store or starts Ray: a refusal costs a fraction of a second."""
