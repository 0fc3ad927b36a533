"""Stage 4: running the repository: the embedded Triton server (`serve`, `status`, `stop`) and its supervisor."""
