"""The typed record: one pydantic model per file a stage leaves for the next, its loader and its atomic save.

Every record on disk (train.json, export.json, the repository's manifest, a server's state file, the
perf, tune and check records) is a `Record` subclass. `Record.load(path)` is the one place such a file
is opened: it says in one line what is wrong with it (missing, unreadable, truncated, not a record,
from a newer zeroserve, which field is wrong) and what to do, and migrates an older zeroserve's shape
(`migrate`). `record.save(path)` writes it atomically as strict JSON (records.write_json).

Shapes are open (`extra="allow"`): a field this version does not declare is kept and written back, so
a record read and saved again loses nothing. A field that is absent stays absent (`to_json` writes the
fields that were set), so a record's JSON is what the stage wrote, field for field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from zeroserve import records
from zeroserve.errors import InputError

LEGACY_SCHEMA_KEY = "schema"  # what records before the typed ones (main 53e25ec) wrote their version as


class Block(BaseModel):
    """A part of a record: typed fields, undeclared ones kept as they are."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, use_attribute_docstrings=True, protected_namespaces=()
    )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, the fields that were set (absent stays absent; a None that was set is null)."""
        return self.model_dump(mode="python", exclude_unset=True, by_alias=True)

    def updated(self, **changes: Any) -> Self:
        """A copy with `changes` set, validated (a block given as a dict becomes its type)."""
        return type(self).model_validate({**self.to_json(), **changes})

    def without(self, *keys: str) -> Self:
        """A copy without the fields `keys` (absent, as if never written)."""
        return type(self).model_validate({k: v for k, v in self.to_json().items() if k not in keys})


class Record(Block):
    """A record file: a `Block` with a kind, a schema version, a loader and an atomic save.

    Subclasses set `KIND` (the words an error uses: "export record"), `VERSION` (the schema version
    this zeroserve writes; bump it when a field changes meaning, and teach `migrate` the old shape)
    and `REMEDY` (what to do about a bad file, e.g. "run `zeroserve export` again").
    """

    KIND: ClassVar[str] = "record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "delete it and run the stage that writes it again"
    MODE: ClassVar[int | None] = None  # file permissions on save (0o600 for a record holding a secret)

    schema_version: int = 1
    """The record's schema version (`VERSION` of the zeroserve that wrote it; a record from before typed
    records lacks it and reads as 1)."""

    def model_post_init(self, context: Any, /) -> None:
        # the version is always written, also when a stage builds the record without naming it
        self.__pydantic_fields_set__.add("schema_version")

    # ------------------------------------------------------------------ reading

    @classmethod
    def migrate(cls, raw: dict[str, Any], version: int) -> dict[str, Any]:
        """`raw` as written by schema `version` (< VERSION, or a pre-typed record) in this version's shape."""
        return raw

    @classmethod
    def parse(cls, raw: Any, where: str = "", remedy: str | None = None) -> Self:
        """A record from already-decoded JSON (`where`: the file or stream it came from, for the message)."""
        where = where or cls.KIND
        remedy = remedy or cls.REMEDY
        if not isinstance(raw, dict):
            raise InputError(f"{where} holds {_json_kind(raw)}, not a {cls.KIND}; {remedy}")
        version = raw.get("schema_version", raw.get(LEGACY_SCHEMA_KEY, 1))
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InputError(f"{where}: schema_version {version!r} is not a version number; {remedy}")
        if version > cls.VERSION:
            raise InputError(
                f"{where} was written by a newer zeroserve ({cls.KIND} schema {version}; this one reads up to "
                f"{cls.VERSION}): upgrade zeroserve, or {remedy}"
            )
        raw = cls.migrate(records.restore(dict(raw)), version)
        raw.pop(LEGACY_SCHEMA_KEY, None)
        raw["schema_version"] = cls.VERSION
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise InputError(f"{where}: {field_error(exc)}; {remedy}") from None

    @classmethod
    def load(cls, path: Path, remedy: str | None = None) -> Self:
        """Read and validate the record at `path`, or raise InputError saying in one line what is wrong."""
        path = Path(path)
        what = f"{cls.KIND} {path}"
        remedy = remedy or cls.REMEDY
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise InputError(f"{cls.KIND} not found: {path}; {remedy}") from None
        except IsADirectoryError:
            raise InputError(f"{what} is a folder, not a file; {remedy}") from None
        except PermissionError:
            raise InputError(f"{what} cannot be read (permission denied); check its owner and mode") from None
        except OSError as exc:
            raise InputError(f"{what} cannot be read ({exc.strerror or exc}); {remedy}") from None
        except UnicodeDecodeError:
            raise InputError(f"{what} is not text (not UTF-8); {remedy}") from None
        if not text.strip():
            raise InputError(f"{what} is empty (a write that never finished?); {remedy}")
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            # the text ends mid-document: the error is at its end, or a string never closes before it does
            cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
            how = "is truncated" if cut else "is not valid JSON"
            raise InputError(f"{what} {how} (line {exc.lineno} column {exc.colno}: {exc.msg}); {remedy}") from None
        return cls.parse(raw, what, remedy)

    @classmethod
    def load_if_valid(cls, path: Path) -> Self | None:
        """The record at `path`, or None when it is missing or bad (a reader that must never fail on one)."""
        try:
            return cls.load(path)
        except InputError:
            return None

    # ------------------------------------------------------------------ writing

    def save(self, path: Path, mode: int | None = None) -> None:
        """Write the record atomically as indented strict JSON (`mode` overrides the class's MODE)."""
        records.write_json(Path(path), self.to_json(), mode if mode is not None else self.MODE)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The record's JSON Schema (what docs/contracts.md's record tables are generated from)."""
        return cls.model_json_schema(mode="serialization")


def field_error(exc: ValidationError) -> str:
    """The first thing wrong with a record's fields, in one line: where, what, and what it held."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "missing":
        line = f"field {where} is missing"
    else:
        line = f"field {where}: {first['msg'][0].lower()}{first['msg'][1:]} (it holds {_short(first.get('input'))})"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_kind(raw: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(raw), "a number")
