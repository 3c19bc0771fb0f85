"""The Typer command line: a thin layer over the library; heavy imports happen inside commands."""
