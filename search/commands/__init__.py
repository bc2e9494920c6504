"""The ``hpsearch`` command line (``cli``): each command parses its options and calls the engine; ``app``
turns a user error into one line and its exit code. The commands live by kind (``sweep_commands``,
``watch_commands``, ``result_commands``, ``trainable_commands``); ``scaffold`` writes ``hpsearch init``'s
files and ``servers`` starts the dashboards."""
