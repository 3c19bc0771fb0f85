"""Runs: ``bmbench run`` orchestration, concurrent folds, merging, provenance, the lr-find job and the grid.

The top of the training stack; the scorer and the leaderboard never import it.
"""
