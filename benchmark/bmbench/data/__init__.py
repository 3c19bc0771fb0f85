"""The image data on disk: find it, index it, decode it, check it against the published image list.

* :mod:`bmbench.data.layout` finds the folder holding the class folders (``BM_cytomorphology_data/``,
  also inside the Kaggle ``bone_marrow_cell_dataset/`` wrapper) and indexes every image file recursively.
* :mod:`bmbench.data.decode` decodes one file with Pillow, falling back to OpenCV (imported lazily).
* :mod:`bmbench.data.verify` compares an index with the expected ids, decodes every file in a process
  pool and renders the result with Rich.

(Other sub-modules, such as the synthetic-data generator, sit beside these.) This package imports
nothing heavy on its own; import the sub-modules you need.
"""
