"""difftm.stats."""
