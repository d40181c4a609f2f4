"""3D reconstruction from 2DTM particles: extraction (:mod:`.extract`), direct Fourier
insertion (:mod:`.insert`), FSC (:mod:`.fsc`), the omit test (:mod:`.omit`) and the whole
run (:mod:`.run`); ``difftm reconstruct`` is the command (docs/RECONSTRUCT.md)."""
