"""Data paths: decode, augment and batch a fold's images (plain DataLoader, GPU-resident), and sampling.

Below the engine: they import torch but nothing from ``engine`` or ``runs``.
"""
