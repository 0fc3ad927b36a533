"""Stage 3: the canonical Triton repository (`deploy`) and the embedded Triton server (`serve`, `status`, `stop`)."""
