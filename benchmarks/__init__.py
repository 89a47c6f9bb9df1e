"""Guanaco benchmarks: one script per question, each printing a table and writing `results/<name>.json`.

Run them all with `make bench` (or `python -m benchmarks.run_all`); each also runs alone, e.g.
`python -m benchmarks.bench_weight_loading`. See `benchmarks/README.md`.
"""
