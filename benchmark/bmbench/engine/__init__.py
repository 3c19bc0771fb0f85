"""The training engine: one fold's loop, checkpoints, torchrun processes, devices, the non-torch baselines.

It reads a recipe and a data path; it knows nothing of submissions folders, run folders or the grid.
"""
