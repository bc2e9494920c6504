"""What reads a sweep back from its stores, for the read-only commands and the driver's end-of-sweep
lines: the sweeps a store holds (``sweeps``), the best trial and its export (``results``, ``scored``),
the comparison table and its seed statistics (``compare``, ``seed_stats``), and the HTML report."""
