"""difftm.simulate."""
