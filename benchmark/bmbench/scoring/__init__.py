"""The one official scorer: strict validation of predictions files, metrics, and the paper's aggregation.

Needs numpy and pandas only (never torch), so ``bmbench score`` starts fast and the leaderboard check can
re-score entries without the training stack.
"""
