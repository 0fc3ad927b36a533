"""`zeroserve data fetch`: the data sets the course models train on, downloaded, verified, renamed into place.

One downloader for every file. The course's own files come from the course's published
repository and are checked against sha256 sums recorded here; MNIST and Fashion-MNIST come
from torchvision's own mirror list and are checked against torchvision's recorded md5 sums
(`MNIST.mirrors` / `MNIST.resources`), and are laid out as torchvision reads them
(`<data>/FashionMNIST/raw/...`, the .gz beside the decompressed file). A data set's files are
downloaded into a temporary folder beside the target, verified, and only then renamed into
place: a failure leaves nothing behind. (torchvision's `MNIST.download()` itself is not called: it
writes in place, draws tqdm bars, and folds "offline" and "checksum mismatch" into one RuntimeError.)

A mirror (`--source URL` or ZEROSERVE_DATA_MIRROR) has the layout of a data folder, so a
fetched `data/` served over HTTP is one (`URL/diabetes.csv.gz`, `URL/MNIST/raw/<file>.gz`);
for MNIST-style files a flat torchvision-style mirror (`URL/<file>.gz`) is tried second.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shlex
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroserve import records
from zeroserve.errors import CheckFailed, InputError, ServerError

COURSE_BASE_URL = "https://raw.githubusercontent.com/hunkim/PyTorchZeroToAll/master/data/"
MIRROR_ENV = "ZEROSERVE_DATA_MIRROR"
CHECKSUMS_ENV = "ZEROSERVE_DATA_CHECKSUMS"  # a JSON file that replaces recorded sums (tests, mirrors of other versions)
TEMP_PREFIX = ".zeroserve-fetch-"
DEFAULT_TIMEOUT = 30.0

# sha256 of the course's published files (data/ of the course repository), computed from byte-identical copies.
COURSE_SHA256 = {
    "diabetes.csv.gz": "398214d0f6b7f4a722f598d8e424f28bc078abbd16ebdeea0f8e264492325aa4",
    "names_train.csv.gz": "49b4bf41dce5bfeac989b46ca37cf7baccd9a0d2a855df82f86de67a9376268f",
    "names_test.csv.gz": "57d7758db533a42c99d513b2341a7e7b0f55c1e0e7d233b1ef6a4fa2f1adf753",
}


class DownloadError(ServerError):
    """A file could not be downloaded: offline, unreachable, refused, a dropped connection or an HTTP error."""


class ChecksumError(CheckFailed):
    """A downloaded (or present) file does not match its recorded checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set.

    Args:
        path: where it lives in the data folder (`diabetes.csv.gz`, `MNIST/raw/train-images-idx3-ubyte.gz`).
        gunzip: also leave the decompressed file beside it (torchvision reads those).
    """

    path: str
    gunzip: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def unpacked(self) -> str:
        return self.path[: -len(".gz")]


@dataclass(frozen=True)
class Dataset:
    """A downloadable data set: its files, where they come from, and the recorded checksums.

    Args:
        mirrors: base URLs tried in order; a file's URL is base + its file name.
        checksums: recorded digest per file path: sha256 (64 hex digits) or md5 (32).
    """

    name: str
    title: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    checksums: Mapping[str, str]

    def urls(self, f: RemoteFile, source: str | None) -> list[str]:
        """Where to try `f`: the mirror's data-folder layout, then a flat mirror; else the recorded mirrors."""
        if source is None:
            return [base + f.name for base in self.mirrors]
        return list(dict.fromkeys([source + f.path, source + f.name]))


# The data sets by name: the course's own files, and the torchvision classes whose files are fetched.
COURSE_DATASETS = {
    "diabetes": ("the course's diabetes set", ("diabetes.csv.gz",)),
    "names": ("the course's names train and test files", ("names_train.csv.gz", "names_test.csv.gz")),
}
TORCHVISION_DATASETS = {
    "mnist": ("MNIST, 60,000/10,000 digits (torchvision)", "MNIST"),
    "fashion-mnist": ("Fashion-MNIST, 60,000/10,000 clothing images (torchvision)", "FashionMNIST"),
}
ALIASES = {"fashion": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}


def datasets() -> dict[str, Dataset]:
    """Every downloadable data set, by name; read afresh from torchvision's tables (they are the record)."""
    import torchvision.datasets as tvd

    table = {
        name: Dataset(
            name, title, tuple(RemoteFile(f) for f in files), (COURSE_BASE_URL,), {f: COURSE_SHA256[f] for f in files}
        )
        for name, (title, files) in COURSE_DATASETS.items()
    }
    for name, (title, cls_name) in TORCHVISION_DATASETS.items():
        cls, raw = getattr(tvd, cls_name), f"{cls_name}/raw/"
        table[name] = Dataset(
            name,
            title,
            tuple(RemoteFile(raw + f, gunzip=True) for f, _ in cls.resources),
            tuple(cls.mirrors),
            {raw + f: md5 for f, md5 in cls.resources},
        )
    return table


def dataset_name_for_file(filename: str) -> str | None:
    """The name of the data set that provides a course file, if any."""
    return next((name for name, (_, files) in COURSE_DATASETS.items() if filename in files), None)


def fetch_command(names: str | list[str], data_dir: Path | str) -> str:
    """The exact shell command that fetches the data sets `names` into `data_dir`."""
    names = [names] if isinstance(names, str) else names
    return shlex.join(["zeroserve", "data", "fetch", *names, "--data-dir", str(data_dir)])


def normalise_source(source: str | None) -> str | None:
    """A mirror URL ending in '/' (http, https or file); a local folder becomes a file:// URL."""
    source = source or os.environ.get(MIRROR_ENV) or None
    if source is None:
        return None
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme == "" and Path(source).is_dir():
        source = Path(source).resolve().as_uri()
    elif scheme not in ("http", "https", "file"):
        raise InputError(f"--source {source!r}: give an http://, https:// or file:// URL, or a local folder")
    return source.rstrip("/") + "/"


def digest_of(path: Path, expected: str) -> str:
    """The file's hex digest in the algorithm `expected` is written in (md5: 32 hex digits, sha256: 64)."""
    h = hashlib.md5(usedforsecurity=False) if len(expected) == 32 else hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _file_state(data_dir: Path, f: RemoteFile, digest: str) -> str:
    """'good', 'missing', 'differs', or 'unpack' (the verified .gz is there, its unpacked file is not)."""
    path = data_dir / f.path
    if not path.is_file():
        return "good" if f.gunzip and (data_dir / f.unpacked).is_file() else "missing"  # torchvision reads these
    if digest_of(path, digest) != digest.lower():
        return "differs"
    return "unpack" if f.gunzip and not (data_dir / f.unpacked).is_file() else "good"


def is_present(dataset: Dataset, data_dir: Path) -> bool:
    """Whether every file of `dataset` is in `data_dir` and matches its recorded checksum."""
    return all(_file_state(Path(data_dir), f, dataset.checksums[f.path]) == "good" for f in dataset.files)


def _reap_stale_temp(data_dir: Path) -> None:
    """Remove temporary folders left by a fetch that was killed (its process is gone)."""
    records.prune_scratch(data_dir, TEMP_PREFIX)


@contextlib.contextmanager
def _temp_folder(data_dir: Path) -> Iterator[Path]:
    folder = records.scratch_dir(data_dir, TEMP_PREFIX)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Session:
    """One fetch run: hosts found unreachable are not tried again, progress goes to one rich Progress."""

    def __init__(self, timeout: float, progress):
        self.timeout = timeout
        self.progress = progress
        self.down: dict[str, str] = {}

    def download(self, url: str, dest: Path, label: str) -> None:
        """Download `url` to `dest`, or raise DownloadError saying why (nothing is kept on failure)."""
        host = urllib.parse.urlsplit(url).netloc
        if host in self.down:
            raise DownloadError(f"{url}: {self.down[host]}")
        task = None
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "zeroserve"})
            with urllib.request.urlopen(request, timeout=self.timeout) as resp, open(dest, "wb") as fh:
                # an HTTP response has .length; a file:// one is a bare file whose size is in its headers
                size = resp.headers.get("Content-Length")
                total = int(size) if size and size.isdigit() else None
                if self.progress is not None:
                    task = self.progress.add_task(label, total=total)
                got = 0
                while chunk := resp.read(1 << 16):
                    fh.write(chunk)
                    got += len(chunk)
                    if task is not None:
                        self.progress.update(task, advance=len(chunk))
                if total is not None and got < total:
                    raise DownloadError(f"{url}: the connection dropped after {got:,} of {total:,} bytes")
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            why = (
                f"cannot resolve {host} (offline?)"
                if isinstance(exc.reason, socket.gaierror)
                else f"could not download ({exc.reason})"
            )
            if urllib.parse.urlsplit(url).scheme != "file":
                self.down[host] = why  # the next files from this host would fail the same way
            raise DownloadError(f"{url}: {why}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise DownloadError(f"{url}: the connection dropped ({type(exc).__name__}: {exc})") from None
        finally:
            if task is not None:
                self.progress.remove_task(task)


def _download_verified(
    session: _Session, dataset: Dataset, f: RemoteFile, digest: str, source: str | None, temp: Path
) -> Path:
    """Download `f` into `temp` from the first URL that gives the recorded bytes."""
    dest = temp / f.path.replace("/", "__")
    failures: list[Exception] = []
    for url in dataset.urls(f, source):
        try:
            session.download(url, dest, f"{dataset.name}: {f.name}")
        except DownloadError as exc:
            failures.append(exc)
            continue
        got = digest_of(dest, digest)
        if got == digest.lower():
            return dest
        failures.append(ChecksumError(f"{url}: checksum mismatch, got {got}, recorded {digest}"))
    dest.unlink(missing_ok=True)
    bad = [e for e in failures if isinstance(e, ChecksumError)]
    raise (bad[0] if bad else DownloadError("; ".join(map(str, failures))))


def _gunzip(src: Path, dest: Path, what: str) -> None:
    try:
        with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except (OSError, EOFError) as exc:
        raise ChecksumError(f"{what} matches its checksum but is not a valid gzip file ({exc})") from None


def fetch_dataset(
    dataset: Dataset,
    data_dir: Path,
    *,
    source: str | None = None,
    checksums: Mapping[str, str] | None = None,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    progress=None,
    session: _Session | None = None,
) -> dict[str, Any]:
    """Bring one data set into `data_dir`: download what is missing, verify it, rename it into place.

    Args:
        source: a mirror URL (normalised with `normalise_source`), or None for the recorded mirrors.
        checksums: replaces recorded digests by file path (tests and private mirrors of other versions).
        force: download again and replace files that are present (also ones that differ).
        progress: optional rich Progress; one task per file while it downloads.

    Returns:
        {"dataset", "state": "present" | "fetched", "files": [paths written], "data_dir"}.
        Raises DownloadError (exit 3) or ChecksumError (exit 1); either way nothing is left behind.
    """
    data_dir = Path(data_dir)
    digests = {**dataset.checksums, **(checksums or {})}
    states = (
        {}
        if force or not data_dir.is_dir()
        else {f.path: _file_state(data_dir, f, digests[f.path]) for f in dataset.files}
    )
    differs = [f.path for f in dataset.files if states.get(f.path) == "differs"]
    if differs:
        raise ChecksumError(
            f"{', '.join(str(data_dir / p) for p in differs)}: present, but not the recorded file "
            "(checksum differs); move it away, or rerun with --force to download and replace it"
        )
    todo = [f for f in dataset.files if states.get(f.path) != "good"]
    result: dict[str, Any] = {
        "dataset": dataset.name,
        "state": "present" if not todo else "fetched",
        "files": [],
        "data_dir": str(data_dir),
    }
    if not todo:
        return result
    created = not data_dir.exists()
    records.ensure_writable_dir(data_dir)
    _reap_stale_temp(data_dir)
    session = session or _Session(timeout, progress)
    try:
        with _temp_folder(data_dir) as temp:
            staged: list[tuple[Path, Path]] = []  # (temporary file, final path), renamed only when all verified
            for f in todo:
                if states.get(f.path) == "unpack":
                    gz = data_dir / f.path
                else:
                    gz = _download_verified(session, dataset, f, digests[f.path], source, temp)
                    staged.append((gz, data_dir / f.path))
                if f.gunzip:
                    unpacked = temp / (f.path.replace("/", "__") + ".unpacked")
                    _gunzip(gz, unpacked, f.path)
                    staged.append((unpacked, data_dir / f.unpacked))
            for tmp, final in staged:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                result["files"].append(str(final))
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                data_dir.rmdir()  # only when still empty
        raise
    return result


def fetch(
    wanted: list[Dataset],
    data_dir: Path,
    *,
    source: str | None = None,
    checksums: Mapping[str, str] | None = None,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    progress=None,
) -> list[dict[str, Any]]:
    """Fetch every data set in `wanted`; one failure does not stop the rest.

    `zeroserve.data.models.resolve` maps data set and model names to data sets.

    Returns:
        One row per data set as `fetch_dataset` returns it, or with "state": "failed", "error" and
        "exit_code" (1 checksum, 3 download).
    """
    source = normalise_source(source)
    session = _Session(timeout, progress)
    rows = []
    for dataset in wanted:
        try:
            rows.append(
                fetch_dataset(dataset, data_dir, source=source, checksums=checksums, force=force, session=session)
            )
        except (DownloadError, ChecksumError) as exc:
            rows.append(
                {
                    "dataset": dataset.name,
                    "state": "failed",
                    "files": [],
                    "data_dir": str(data_dir),
                    "error": str(exc),
                    "exit_code": exc.exit_code,
                }
            )
    return rows


def exit_code(rows: list[dict[str, Any]]) -> int:
    """1 when any file failed verification, else 3 when any download failed, else 0."""
    codes = {r.get("exit_code", 0) for r in rows}
    return 1 if 1 in codes else (3 if 3 in codes else 0)
