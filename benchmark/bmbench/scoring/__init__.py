"""The one official scorer: strict validation of predictions files, metrics, and the paper's aggregation.

Needs numpy and pyarrow (pandas only for a file pyarrow refuses, and to word errors; never torch), so
``bmbench score`` starts fast and the leaderboard check can re-score entries without the training stack.
"""
