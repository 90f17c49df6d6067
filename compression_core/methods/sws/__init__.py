"""Soft weight-sharing (a whole-model method): see README.md."""

from compression_core.methods.base import CompressMethod
from compression_core.methods.sws.spec import SWSSpec

METHOD = CompressMethod(spec=SWSSpec, run="compression_core.methods.sws.run:run")
