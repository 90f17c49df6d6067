"""Knowledge distillation from an uploaded teacher (a whole-model method): see README.md."""

from compression_core.methods.base import PrepareMethod
from compression_core.methods.distill.spec import DistillSpec

METHOD = PrepareMethod(spec=DistillSpec, run="compression_core.methods.distill.run:run")
