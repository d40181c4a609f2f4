"""difftm.cli."""
