"""Which data sets each registry model trains on: the one place the data room meets the registry.

The catalogue (`course`), the readers and the downloader (`fetch`) never import the registry;
this module sits above both and maps model names to data set names for `data fetch`, `train`
and the demo.
"""

from __future__ import annotations

from zeroserve import registry
from zeroserve.data import course
from zeroserve.data import fetch as F
from zeroserve.errors import InputError


def dataset_names_for_model(spec) -> list[str]:
    """Names of the data sets a registry model trains on: its course files, or the IDX set its source reads."""
    if spec.data is None:  # a model of your own with no data source
        return []
    out = [name for name, (_, files) in F.COURSE_DATASETS.items() if set(files) & set(spec.data.files)]
    idx = {id(course.MNIST): "mnist", id(course.FASHION): "fashion-mnist"}.get(id(spec.data))
    return out + ([idx] if idx else [])


def models_by_dataset() -> dict[str, list[str]]:
    """Registry model names per data set name (for help texts and `status`)."""
    out: dict[str, list[str]] = {name: [] for name in (*F.COURSE_DATASETS, *F.TORCHVISION_DATASETS)}
    for spec in registry.REGISTRY.values():
        for name in dataset_names_for_model(spec):
            out[name].append(spec.name)
    return out


def resolve(names: list[str]) -> list[F.Dataset]:
    """`NAME|all` -> data sets; a NAME is a data set name or a registry model name (what it trains on)."""
    table = F.datasets()
    parts = [p for n in (names or ["all"]) for p in n.split(",") if p]
    if parts == ["all"]:
        return list(table.values())
    if "all" in parts:
        raise InputError("'all' cannot be combined with other names")
    out: list[F.Dataset] = []
    for part in parts:
        key = F.ALIASES.get(part.lower(), part.lower())
        if key in table:
            found = [table[key]]
        elif part in registry.REGISTRY:
            found = [table[n] for n in dataset_names_for_model(registry.REGISTRY[part])]
        else:
            raise InputError(
                f"unknown data set or model {part!r}; data sets: {', '.join(table)}; "
                f"models: {', '.join(registry.REGISTRY)}"
            )
        out += [d for d in found if d not in out]
    return out
