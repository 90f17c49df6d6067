"""Upload progress: file objects that report every chunk httpx reads while it streams the multipart body.

httpx streams multipart files chunk by chunk (64 KiB `read` calls) and takes the length from `fileno()`, so
wrapping the open file is enough: the body is never held in memory and the progress bar advances as bytes
leave. A retry re-opens the files and the counter starts again from zero.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

UploadProgress = Callable[[int, int], None]  # (bytes sent so far, total bytes of all files)


class UploadTracker:
    """Adds up the bytes read from every file of one request and calls the callback with (sent, total)."""

    def __init__(self, total: int, callback: UploadProgress | None) -> None:
        self.total = total
        self.sent = 0
        self._callback = callback

    def advance(self, n: int) -> None:
        self.sent += n
        if self._callback is not None:
            self._callback(self.sent, self.total)

    def rewind(self, n: int) -> None:
        self.sent = max(0, self.sent - n)
        if self._callback is not None:
            self._callback(self.sent, self.total)


class ProgressFile:
    """A read-only binary file that tells its tracker how many bytes were read."""

    def __init__(self, path: Path, tracker: UploadTracker) -> None:
        self.name = str(path)
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by the request's owner
        self._tracker = tracker
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._read += len(chunk)
        self._tracker.advance(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        pos = self._file.seek(offset, whence)
        if pos < self._read:  # rewound (httpx seeks to 0 before streaming): un-count what is re-read
            self._tracker.rewind(self._read - pos)
            self._read = pos
        return pos

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


def data_array_names(path: Path) -> set[str] | None:
    """The array names of a data set file (.npz members or .safetensors header keys), read with the
    standard library only; None when the file is neither or cannot be read (the service then says why)."""
    try:
        if path.suffix.lower() == ".npz":
            with zipfile.ZipFile(path) as archive:
                return {name.removesuffix(".npy") for name in archive.namelist()}
        if path.suffix.lower() == ".safetensors":
            with path.open("rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                if size > 100_000_000:
                    return None
                header = json.loads(handle.read(size))
            return {key for key in header if key != "__metadata__"} if isinstance(header, dict) else None
    except (OSError, ValueError, zipfile.BadZipFile, struct.error):
        return None
    return None


def missing_validation_note(path: Path) -> str | None:
    """A note for a data set without x_val: the service will carve the validation split from x_train."""
    names = data_array_names(path)
    if names is None or "x_val" in names or "x_train" not in names:
        return None
    return (
        f"{path.name} has no x_val/y_val: the validation split that choices are made on will be carved from "
        "x_train, which your model was probably trained on; add held-out x_val/y_val for honest choices"
    )
