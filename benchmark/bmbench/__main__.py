"""``python -m bmbench``: the same command tree as the ``bmbench`` console script."""

from bmbench.cli.main import run

if __name__ == "__main__":
    run()
