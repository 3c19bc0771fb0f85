"""Typed records: one pydantic model and one reader/writer per JSON file bmbench writes.

A leaf room (pydantic, ``errors``, ``atomic`` and the standard library only), so the leaderboard can read a
run's facts (``run.json``) without importing anything that builds or runs a model, and the weights, cache
and data-set records are read without torch. Each module owns one format; :mod:`bmbench.records._io` gives
every reader the same checks.
"""
