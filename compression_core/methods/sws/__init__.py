"""Soft weight-sharing (a whole-model method): see README.md."""

from compression_core.methods.base import ModelMethod
from compression_core.methods.sws.spec import SWSSpec

METHOD = ModelMethod(spec=SWSSpec, run="compression_core.methods.sws.run:run")
