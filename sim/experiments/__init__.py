"""Experiments with the accelerator's numerics: training (:mod:`.train`), the accumulation
study (:mod:`.study`) and the golden model's speed (:mod:`.bench`)."""
