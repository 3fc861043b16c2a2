"""asynctrace's overhead benchmarks (issue 7): ``python -m benchmarks [NAME] [--quick]``.

One module per scenario, each with ``NAME`` and ``run(quick) -> ScenarioResult``;
``rounds`` interleaves variants and summarises them, ``report`` prints the tables
and writes the JSON. Benchmarks start their own redis-server on a free port.
"""
