"""The fleet-scale benchmark (issue 10): ``make bench`` runs :mod:`bench.run`.

Every figure is a ratio measured side by side in one run against a baseline
(the API floor, the git CLI, ``ecs-deploy``); see bench/README.md. The package
is not collected by pytest; tests/test_bench_smoke.py keeps it from rotting.
"""
