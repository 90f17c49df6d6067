"""Knowledge distillation from an uploaded teacher (a whole-model method): see README.md."""

from compression_core.methods.base import ModelMethod
from compression_core.methods.distill.spec import DistillSpec

METHOD = ModelMethod(spec=DistillSpec, run="compression_core.methods.distill.run:run")
