"""Where a model's artifacts and a repository's records live: the one object that spells each path.

`ModelFolder.of(artifacts, name)` is `artifacts/<model>/`: the checkpoint train writes, its record
(`train.json`) and loss plot, each exported format's file (named by the format table), the real
held-out sample export keeps (`sample.npz`), the export record (`export.json`) and a failed
export's numbers (`export-failed.json`). `RepositoryLayout`
is a canonical repository's manifest. No other module spells these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRAIN_RECORD = "train.json"
EXPORT_RECORD = "export.json"
EXPORT_FAILURES = "export-failed.json"
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.pt"
SAMPLE = "sample.npz"
LOSS_PLOT = "loss.png"


@dataclass(frozen=True)
class ModelFolder:
    """One model's artifact folder, `<artifacts>/<model>/`, and every file the stages keep in it."""

    root: Path

    @classmethod
    def of(cls, artifacts: Path, name: str) -> ModelFolder:
        return cls(Path(artifacts) / name)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def checkpoint(self) -> Path:
        """The trained state dict (`zeroserve train`; a user spec's own checkpoint= overrides it)."""
        return self.root / CHECKPOINT

    @property
    def train_record(self) -> Path:
        return self.root / TRAIN_RECORD

    @property
    def loss_plot(self) -> Path:
        return self.root / LOSS_PLOT

    @property
    def export_record(self) -> Path:
        return self.root / EXPORT_RECORD

    @property
    def export_failures(self) -> Path:
        """The numbers of the last export whose gate failed (the previous export stays)."""
        return self.root / EXPORT_FAILURES

    @property
    def sample(self) -> Path:
        """Real held-out inputs export keeps (first rows, keyed by input tensor name, graph shapes)."""
        return self.root / SAMPLE

    def file(self, name: str) -> Path:
        """A file of this folder by the name a record holds (an exported format's `file`, the `sample`)."""
        path = self.root / name
        if path.parent != self.root:
            raise ValueError(f"{name!r} is not a file name inside {self.root}")
        return path


@dataclass(frozen=True)
class RepositoryLayout:
    """A canonical model repository (`deploy` writes it): its manifest beside one folder per Triton model."""

    root: Path

    @property
    def manifest(self) -> Path:
        return Path(self.root) / MANIFEST

    def model(self, triton_name: str) -> Path:
        return Path(self.root) / triton_name
