"""bmbench: a reproducible benchmark for bone-marrow cell classification (Matek et al. 2021 data).

The package is split into small rooms (see docs/architecture.md): ``classes`` and ``data`` describe the
images, ``splits`` fixes who is trained and tested where, ``scoring`` is the one official scorer and
``cli`` is a thin Typer layer over them. Heavy packages (torch, OpenCV) are imported where used.
"""

__version__ = "0.1.0"
