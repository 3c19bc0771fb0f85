"""Training: the paper's recipe, data paths, the per-fold loop, checkpoints, runs and provenance.

The neural parts import torch; ``baselines`` needs only numpy and scikit-learn. The scorer and the
leaderboard never import this package.
"""
