"""Grad-CAM explanations of a finished run (paper Sec. 2.5, Figs. 5 and 6).

* :mod:`bmbench.explain.targets` picks the layer whose activations and gradients Grad-CAM weighs, per
  backbone family, and the token-to-grid reshape a vision transformer needs.
* :mod:`bmbench.explain.cam` computes the maps (float32, hooks released after use).
* :mod:`bmbench.explain.gallery` loads a run's best checkpoints, picks correctly classified and misclassified
  test images of one class from its predictions, and writes the gallery (PNG, self-contained HTML, JSON).

torch, the grad-cam package, OpenCV and matplotlib are imported by the sub-modules that need them, never here.
"""
