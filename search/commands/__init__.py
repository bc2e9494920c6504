"""The ``hpsearch`` command line (``cli``): each command parses its options, calls the engine, and turns
a user error into one line and its exit code; ``scaffold`` writes ``hpsearch init``'s files and
``servers`` starts the dashboards."""
