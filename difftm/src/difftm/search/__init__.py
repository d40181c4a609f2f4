"""difftm.search."""
