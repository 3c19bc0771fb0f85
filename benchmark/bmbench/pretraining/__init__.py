"""In-domain pre-training (Glüge et al. 2023, Sec. 2.4.2): PatchCamelyon and Comparison Detector.

``pcam`` and ``cd`` read the official releases, ``hf`` reads Hugging Face copies, ``source`` turns any of
them into one pool of images with a train / val / test split for the unchanged training loop, and
``pretrain`` writes the checkpoint that the ``pcam``/``cd``/``imagenet+pcam``/``imagenet+cd``
initialisations load. Import the submodules directly; this package imports nothing heavy.
"""
