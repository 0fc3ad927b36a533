"""Typed errors: the CLI turns each into one clear line and its exit code.

Exit codes are the same for every command (docs/cli.md, docs/contracts.md):
0 success; 1 a check or gate failed, or requests failed; 2 usage or input error;
3 the server could not be reached or started; 4 a perf level did not stabilise.
"""


class ZeroserveError(Exception):
    """Base error; `exit_code` is what the CLI exits with."""

    exit_code = 2
    said = ""  # a server's own words, when the error reports its answer (zeroserve.triton.errors.translate)


class InputError(ZeroserveError):
    """A user's input is wrong or missing: a name, a file, a shape, a folder."""

    exit_code = 2


class MissingDataError(InputError):
    """A course data file is not where it is expected."""

    def __init__(self, filename: str, data_dir, fix: str = ""):
        self.filename = filename
        self.data_dir = data_dir
        self.fix = fix  # the command that fetches it, when one can
        how = f"fetch it with `{fix}`, or put" if fix else "put"
        super().__init__(
            f"missing data file {filename}: expected at {data_dir}/{filename} "
            f"({how} the course's {filename} there, or point --data-dir / ZEROSERVE_DATA_DIR at its folder)"
        )


class CheckFailed(ZeroserveError):
    """A gate or a check found a mismatch, or requests failed."""

    exit_code = 1


class ServerError(ZeroserveError):
    """The server could not be reached or started."""

    exit_code = 3


class UnstableError(ZeroserveError):
    """A perf level did not stabilise."""

    exit_code = 4
