"""difftm.geometry."""
