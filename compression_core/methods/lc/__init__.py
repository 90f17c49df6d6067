"""The LC (learning-compression) algorithm (a whole-model method): see README.md."""

from compression_core.methods.base import CompressMethod
from compression_core.methods.lc.spec import LCSpec

METHOD = CompressMethod(spec=LCSpec, run="compression_core.methods.lc.run:run")
