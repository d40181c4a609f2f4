"""difftm.physics."""
