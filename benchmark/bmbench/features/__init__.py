"""Frozen-feature evaluation: encoders, one forward pass into a feature store, and probes on the store.

``encoders`` loads any encoder (timm, torchvision, ``model.py``, a finished run) with its weights' SHA-256;
``preprocess`` resolves its input preprocessing; ``embed`` writes a resumable float16 feature store that
``store`` opens read-only (memory-mapped) for the probes.
"""
