"""difftm.io."""
