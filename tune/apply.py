"""`zeroserve tune --apply` and `--revert`: a tuned config into the canonical repository, atomically, and back.

The model folder is staged beside the repository (the artifact hard-linked, so nothing large is
copied), its config rendered from the deployed config with the tuned settings (tune/settings.py's
`config_for`, the transform the candidates were measured with), linted against its artifact by
deploy's own lint, and renamed into place (deploy/repository.py's `place`). The previous config
stays beside the new one as `config.pbtxt.before-tune`; `manifest.json` records the tuning: the
settings, the measurement that chose them, `tuned_on` (engine, CPU model, cores) and how that engine differs
from the one the repository is written for (`engine_differs`; the CLI says so). A later
`zeroserve deploy` keeps the tuned settings unless an option of its own or `--reset-tuning` says
otherwise.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from zeroserve import engine, records
from zeroserve.deploy.config import parse, render
from zeroserve.deploy.contents import read_deployed
from zeroserve.deploy.lint import lint_model
from zeroserve.deploy.release import TARGET
from zeroserve.deploy.repository import place, prune_stale, read_manifest, staging_parent, write_manifest
from zeroserve.errors import InputError
from zeroserve.records.manifest import ManifestEntry, Tuning
from zeroserve.records.measured import MeasuredOn
from zeroserve.tune.search import Candidate
from zeroserve.tune.settings import backend_of, config_for

PREVIOUS = "config.pbtxt.before-tune"
TUNED_KEYS = ("instances", "max_batch_size", "preferred_batch_sizes", "max_queue_delay_us", "threads")


def tuned_settings(c: Candidate) -> dict:
    """The settings a tuning writes, as a later deploy reads them back from the manifest."""
    return {
        "instances": c.instances,
        "max_batch_size": c.max_batch_size,
        "preferred_batch_sizes": list(c.preferred_batch_sizes),
        "max_queue_delay_us": c.queue_delay_us,
        "threads": c.threads,
    }


def _link_tree(src: Path, dst: Path) -> None:
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def _rewrite(repository: Path, name: str, text: str, previous: str | None) -> str:
    """Stage `name` with config `text` (and `previous` beside it, or none), lint, place; the new config's sha256."""
    repository = Path(repository)
    folder = repository / name
    staging = staging_parent(repository)
    prune_stale(staging, name)  # scratch folders of a deploy or tuning that was killed
    tmp = records.scratch_dir(staging, f".zs-deploy-{name}-")
    try:
        staged = tmp / name
        _link_tree(folder, staged)
        os.chmod(staged, 0o755)
        (staged / "config.pbtxt").unlink()
        (staged / "config.pbtxt").write_text(text)  # a new file: the hard-linked old one is left alone
        (staged / PREVIOUS).unlink(missing_ok=True)
        if previous is not None:
            (staged / PREVIOUS).write_text(previous)
        lint_model(staged)
        place(staged, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _entry(repository: Path, name: str) -> ManifestEntry:
    entry = read_manifest(repository).models.get(name)
    if entry is None:
        raise InputError(f"{name} is not in {repository}/manifest.json; deploy it with `zeroserve deploy` first")
    return entry


def apply_tuning(
    repository: Path, name: str, candidate: Candidate, measurement: dict, tuned_on: dict, context: dict
) -> ManifestEntry:
    """Write the candidate's settings into `repository/name` (atomic, linted); the manifest entry written.

    Args:
        measurement: what chose it (throughput within the budget, latencies, the side-by-side ratio).
        context: the run's terms (budget, percentile, protocol, search mode).
    """
    repository = Path(repository)
    folder = repository / name
    entry = _entry(repository, name)
    current_text = (folder / "config.pbtxt").read_text()
    current = read_deployed(folder)
    gated = max(current.max_batch_size, entry.gated_max_batch_size or 0)
    if candidate.max_batch_size > gated:
        raise InputError(
            f"{name}: max batch size {candidate.max_batch_size} is above what the export gate checked ({gated})"
        )
    model = config_for(current, candidate)
    text = render(model)
    # the config before the first tuning stays the one to go back to
    previous = (folder / PREVIOUS).read_text() if (folder / PREVIOUS).is_file() else current_text
    sha = _rewrite(repository, name, text, previous)
    target = engine.target_release(
        read_manifest(repository).target or asdict(TARGET), model.backend, model.instance_kind
    )
    detail = MeasuredOn.model_validate(tuned_on).engine_detail  # the tune record's `tuned_on`
    measured = detail.to_json() if detail is not None else None
    tuning = {
        "settings": tuned_settings(candidate),
        "measurement": measurement,
        "tuned_on": tuned_on,
        # the engine the settings were measured on against the one this repository is written for
        "engine": measured,
        "target_engine": target,
        "engine_differs": engine.differs(measured, target),
        **context,
        "applied": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "previous_config": PREVIOUS,
        "previous_config_sha256": hashlib.sha256(previous.encode()).hexdigest(),
    }
    new_entry = entry.updated(
        config_sha256=sha,
        max_batch_size=model.max_batch_size,
        max_queue_delay_us=model.max_queue_delay_us,
        instance_group={"kind": model.instance_kind, "count": model.instance_count},
        preferred_batch_sizes=list(model.preferred_batch_sizes),
        **{backend_of(model).threads_parameter: candidate.threads},
        tuning=tuning,
    )
    write_manifest(repository, [new_entry])
    return new_entry


def engine_note(tuning: Tuning) -> str:
    """One line: the settings were measured on another engine than the repository is written for."""
    return (
        f"tuned on {engine.line(tuning.engine)}, but this repository is written for "
        f"{engine.line(tuning.target_engine)} ({'; '.join(tuning.engine_differs or [])}): the settings were chosen "
        "on another engine, so measure them again where they will run"
    )


def revert_tuning(repository: Path, name: str) -> ManifestEntry:
    """Put the config from before the tuning back (atomic, linted) and drop the tuning from the manifest."""
    repository = Path(repository)
    folder = repository / name
    entry = _entry(repository, name)
    if not (folder / PREVIOUS).is_file():
        raise InputError(f"{name} has no tuning to revert ({folder / PREVIOUS} does not exist)")
    previous = (folder / PREVIOUS).read_text()
    model = parse(previous)
    sha = _rewrite(repository, name, previous, None)
    new_entry = entry.without("tuning", "preferred_batch_sizes", backend_of(model).threads_parameter).updated(
        config_sha256=sha,
        max_batch_size=model.max_batch_size,
        max_queue_delay_us=model.max_queue_delay_us,
        instance_group={"kind": model.instance_kind, "count": model.instance_count},
        reverted=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    write_manifest(repository, [new_entry])
    return new_entry
