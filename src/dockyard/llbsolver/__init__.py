"""llbsolver."""
