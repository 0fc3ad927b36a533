"""Infrastructure for Triton below every stage: the wheel's layout, ports, the control plane, private servers."""
