"""Models: building backbones with a 21-class head, and applying initialisations (weights)."""
