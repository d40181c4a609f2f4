"""difftm.report."""
