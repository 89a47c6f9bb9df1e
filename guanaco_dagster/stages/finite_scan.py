"""Find NaN or Inf in a safetensors file's floating-point tensors with one streaming pass.

The file is read sequentially into one reusable buffer, so memory stays at `chunk_bytes` (plus as much
again for the flags) whatever the model's size; the page cache may keep what was read, as after any read.
A non-finite float has every exponent bit set, which is what the bit masks below test for the formats
numpy has no type for (bfloat16, float8); float32 and float64 use numpy's vectorised `isfinite`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

CHUNK_BYTES = 8 * 1024**2

# dtype → (unsigned view of one element, exponent mask): all mask bits set means NaN or Inf.
_EXPONENT_MASKS: dict[str, tuple[type[np.unsignedinteger], int]] = {
    "F16": (np.uint16, 0x7C00),
    "BF16": (np.uint16, 0x7F80),
    "F8_E5M2": (np.uint8, 0x7C),
    "F8_E4M3": (np.uint8, 0x7F),  # e4m3fn has no Inf; S.1111.111 is its NaN
    "F8_E8M0": (np.uint8, 0xFF),
}
_NUMPY_FLOATS: dict[str, type[np.floating]] = {"F32": np.float32, "F64": np.float64}
# The dtypes that can hold a non-finite value; integers, bools and 4/6-bit floats cannot.
SCANNED_DTYPES = frozenset(_EXPONENT_MASKS) | frozenset(_NUMPY_FLOATS)


def _finder(dtype: str, buffer: bytearray) -> Callable[[int], bool]:
    """A function telling whether the first `nbytes` of `buffer` hold a non-finite `dtype` value."""
    if dtype in _NUMPY_FLOATS:
        values = np.frombuffer(buffer, dtype=_NUMPY_FLOATS[dtype])
        flags = np.empty(len(values), dtype=bool)

        def float_has_non_finite(nbytes: int) -> bool:
            count = nbytes // values.itemsize
            np.isfinite(values[:count], out=flags[:count])
            return not flags[:count].all()

        return float_has_non_finite
    unsigned, mask = _EXPONENT_MASKS[dtype]
    bits = np.frombuffer(buffer, dtype=unsigned)
    masked = np.empty_like(bits)
    flags = np.empty(len(bits), dtype=bool)

    def masked_has_non_finite(nbytes: int) -> bool:
        count = nbytes // bits.itemsize
        np.bitwise_and(bits[:count], mask, out=masked[:count])
        np.equal(masked[:count], mask, out=flags[:count])
        return bool(flags[:count].any())

    return masked_has_non_finite


def _read_fully(handle, view: memoryview) -> int:  # noqa: ANN001 - a raw binary file
    """Fill `view` from `handle` (a raw read may return less); the bytes read, fewer only at end of file."""
    filled = 0
    while filled < len(view) and (nbytes := handle.readinto(view[filled:])):
        filled += nbytes
    return filled


def non_finite_tensors(
    path: Path, tensors: dict[str, dict], *, chunk_bytes: int = CHUNK_BYTES, first_only: bool = True
) -> list[str]:
    """Names of the floating-point tensors of `path` holding NaN or Inf, in file order.

    `tensors` is the file's validated header (see weight_checks.read_safetensors_header). With
    `first_only` the scan stops at the first such tensor.
    """
    chunk_bytes -= chunk_bytes % 8  # whole elements of every dtype in each chunk
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    finders: dict[str, Callable[[int], bool]] = {}
    found: list[str] = []
    with path.open("rb", buffering=0) as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        data_start = 8 + header_len
        for name, meta in sorted(tensors.items(), key=lambda item: item[1]["data_offsets"][0]):
            dtype = meta["dtype"]
            if dtype not in SCANNED_DTYPES:
                continue
            finder = finders.get(dtype) or finders.setdefault(dtype, _finder(dtype, buffer))
            start, end = meta["data_offsets"]
            handle.seek(data_start + start)
            remaining = end - start
            while remaining > 0:
                nbytes = _read_fully(handle, view[: min(chunk_bytes, remaining)])
                if not nbytes:
                    break  # the header was validated against the file's size; a file cut meanwhile ends here
                remaining -= nbytes
                if finder(nbytes):
                    found.append(name)
                    break
            if found and first_only:
                break
    return found
