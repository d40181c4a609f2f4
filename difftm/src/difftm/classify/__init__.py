"""In situ classification with several templates and the constrained search (Lucas et al.,
eLife 2022): :mod:`.model` (likelihood and EM), :mod:`.run` (refine every particle under
every template and classify), :mod:`.constrained` (search a second template near detected
partners), :mod:`.mixture` (template pairs from models with chains or residues deleted, and
planted mixtures for validation)."""
