"""One level shared among worker processes: concurrency split as evenly as it goes, a rate split evenly."""

from __future__ import annotations

from zeroserve.client.perf.generator import LoadPlan


def split_level(
    base: LoadPlan, workers: int, concurrency: int | None, rate: float | None, output_regions: list
) -> list[LoadPlan]:
    """One level shared among `workers` plans: concurrency split as evenly as it goes, rate split evenly
    with staggered constant schedules (or independent Poisson streams, whose sum is Poisson at `rate`)."""
    from dataclasses import replace

    plans: list[LoadPlan] = []
    if concurrency is not None:
        shares = [concurrency // workers + (i < concurrency % workers) for i in range(workers)]
        start = 0
        for i, c in enumerate(s for s in shares if s):
            plans.append(
                replace(
                    base,
                    concurrency=c,
                    rate=None,
                    seed=base.seed + i,
                    output_regions=output_regions[start : start + c] if output_regions else [],
                )
            )
            start += c
        return plans
    per = max(1, len(output_regions) // workers) if output_regions else 0
    for i in range(workers):
        assert rate is not None  # an open-loop level has a rate (concurrency None)
        plans.append(
            replace(
                base,
                concurrency=None,
                rate=rate / workers,
                seed=base.seed + i,
                start_at=base.start_at + (i / rate if base.distribution == "constant" else 0.0),
                output_regions=output_regions[i * per : (i + 1) * per] if output_regions else [],
            )
        )
    return plans
