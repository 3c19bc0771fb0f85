"""Typed records: one pydantic model and one reader/writer per JSON file a run leaves behind.

A leaf room (pydantic, ``errors``, ``atomic`` and the standard library only), so the leaderboard can read a
run's facts (``run.json``) without importing anything that builds or runs a model.
"""
