"""The published split files: the algorithm that derives them, reading with hash checks, and split cards."""
