"""``bmbench bench``: the plain reference path and the bmbench path measured side by side, in one run.

:mod:`bmbench.bench.measure` times data-only throughput, full training steps and evaluation for both paths
(using the training loop's own step function and data paths), counts FLOPs and derives the model FLOPs
utilisation; :mod:`bmbench.bench.report` turns the result into a Rich table, a JSON file and the estimated
device-hours of the full 5-fold x 75-epoch recipe.
"""
