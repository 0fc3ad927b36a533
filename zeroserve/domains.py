"""What a valid value of one input looks like: random, zero and warm-up-safe values, human input.

Each input spec holds a domain. Export's gate and the load generator draw random values from it,
`--input zero` and deploy's warm-up take its safe values, and `client infer --text/--image`
encodes a person's input through it. Nothing else in the code asks "which domain?".
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from zeroserve.errors import InputError


@dataclass(frozen=True)
class Domain:
    """Any value of the dtype is valid: standard normal random values, zeros are safe.

    Attributes:
        reads: what human input `encode` takes ("" for none, "text", "image").
    """

    name = "normal"
    reads = ""

    def random(self, shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
        """Random valid values of `shape` (batch axis included)."""
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype)

    def safe(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """The plainest valid value: zeros (what `--input zero` and a warm-up without a sample send)."""
        return np.zeros(shape, dtype=dtype)

    def encode(self, value, input_name: str) -> np.ndarray:
        """A person's input (text, an image path) as this input's tensor; InputError where it reads none."""
        raise InputError(f"input {input_name} does not read {self.reads or 'human'} input")

    def as_json(self) -> str:
        return self.name


@dataclass(frozen=True)
class Unit(Domain):
    """Values in [0, 1] (features scaled, pixels)."""

    name = "unit"

    def random(self, shape, dtype, rng):
        return rng.random(shape, dtype=np.float32).astype(dtype)


@dataclass(frozen=True)
class Image(Unit):
    """A grayscale picture [channels, side, side] in [0, 1], as the course's ToTensor() gives MNIST."""

    name = "image"
    reads = "image"
    side: int = 28

    def encode(self, value, input_name):
        """An image file (or (path, invert)) -> float32 [1, 1, side, side]; invert for dark-on-light drawings."""
        from PIL import Image as PILImage
        from PIL import UnidentifiedImageError

        path, invert = value if isinstance(value, tuple) else (value, False)
        try:
            with PILImage.open(path) as img:
                gray = img.convert("L")
                if gray.size != (self.side, self.side):
                    gray = gray.resize((self.side, self.side), PILImage.Resampling.BILINEAR)
                pixels = np.asarray(gray, dtype=np.float32) / 255.0
        except FileNotFoundError:
            raise InputError(f"image not found: {path}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"cannot read image {path}: {exc}") from None
        if invert:
            pixels = 1.0 - pixels
        return pixels.reshape(1, 1, self.side, self.side)


@dataclass(frozen=True)
class OneHot(Domain):
    """One-hot rows over an alphabet (the last axis); text is read one character per step."""

    name = "onehot"
    reads = "text"
    alphabet: tuple[str, ...] = ()

    def random(self, shape, dtype, rng):
        return np.eye(shape[-1], dtype=dtype)[rng.integers(0, shape[-1], shape[:-1])]

    def encode(self, value, input_name):
        """Text -> float32 [1, time, len(alphabet)]."""
        text = str(value)
        bad = sorted(set(text) - set(self.alphabet))
        if not text or bad:
            raise InputError(f"input {input_name} reads only the characters {''.join(self.alphabet)}; got {text!r}")
        return np.eye(len(self.alphabet), dtype=np.float32)[[self.alphabet.index(c) for c in text]][None]


@dataclass(frozen=True)
class Tokens(Domain):
    """Zero-padded character codes [batch, time] (ASCII below `vocab`); text is comma-separated items.

    Accents are stripped (NFKD); an item with nothing left is refused.
    """

    name = "tokens"
    reads = "text"
    vocab: int = 128

    def random(self, shape, dtype, rng):
        return rng.integers(1, self.vocab, shape).astype(dtype)

    def code(self, item: str) -> list[int]:
        """One item's codes (the course's str2ascii_arr)."""
        ascii_item = unicodedata.normalize("NFKD", item.strip()).encode("ascii", "ignore").decode()
        if not ascii_item:
            raise InputError(f"{item!r} is empty after ASCII encoding")
        return [ord(c) for c in ascii_item]

    def encode_items(self, items: list[str], time: int | None = None) -> np.ndarray:
        """Items -> int64 [batch, time], zero padded to `time` (default: the longest)."""
        codes = [self.code(i) for i in items]
        longest = max(len(c) for c in codes)
        time = time or longest
        if longest > time:
            raise InputError(f"an item is longer than {time} characters")
        tokens = np.zeros((len(codes), time), dtype=np.int64)
        for i, c in enumerate(codes):
            tokens[i, : len(c)] = c
        return tokens

    def encode(self, value, input_name):
        items = [n for n in str(value).split(",") if n.strip()]
        if not items:
            raise InputError(f"input {input_name}: give at least one comma-separated item")
        return self.encode_items(items)


@dataclass(frozen=True)
class Lengths(Domain):
    """Per-row valid lengths of the input named `of` (padding is 0 beyond them); never zero."""

    name = "lengths"
    of: str = ""

    def random(self, shape, dtype, rng, time: int = 1):
        lengths = rng.integers(1, time + 1, shape).astype(dtype)
        lengths[rng.integers(0, shape[0])] = time  # one row uses the whole time axis
        return lengths

    def safe(self, shape, dtype):
        return np.ones(shape, dtype=dtype)

    def derive(self, padded: np.ndarray) -> np.ndarray:
        """The lengths of zero-padded rows (the count of non-zero steps)."""
        return (np.asarray(padded) != 0).sum(axis=1).astype(np.int64)

    def pad(self, padded: np.ndarray, lengths: np.ndarray) -> None:
        """Zero what lies beyond each row's length, in place, as a real batch has it."""
        padded[np.arange(padded.shape[1])[None, :] >= lengths[:, None]] = 0

    def as_json(self) -> str:
        return f"lengths of {self.of}"


NORMAL = Domain()
UNIT = Unit()
