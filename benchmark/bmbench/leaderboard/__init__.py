"""The leaderboard: entries, the paper's published rows, statistics, the Markdown/HTML board and its check.

Reads entries as data only: it never imports submission or training code (submitted code is untrusted).
"""
