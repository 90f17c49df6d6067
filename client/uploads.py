"""Upload progress: file objects that report every chunk httpx reads while it streams the multipart body.

httpx streams multipart files chunk by chunk (64 KiB `read` calls) and takes the length from `fileno()`, so
wrapping the open file is enough: the body is never held in memory and the progress bar advances as bytes
leave. A retry re-opens the files and the counter starts again from zero.
"""

from __future__ import annotations

import os
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
