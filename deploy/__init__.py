"""Stage 3: the canonical Triton repository for a target release (`deploy`, `plan`), and its KServe manifest."""
