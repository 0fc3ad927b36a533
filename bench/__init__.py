"""The benchmarks (`make bench`), apart from the stages they measure: timing goals live here, never in tests."""
