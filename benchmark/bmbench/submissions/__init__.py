"""Submissions: folders with a validated ``submission.toml`` (and optionally ``model.py``)."""
