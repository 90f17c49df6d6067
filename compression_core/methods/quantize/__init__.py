"""Weight sharing by 1-D k-means (a per-tensor step): see README.md."""

from compression_core.methods.base import StepMethod
from compression_core.methods.quantize.spec import QuantizeStep

METHOD = StepMethod(spec=QuantizeStep, apply="compression_core.methods.quantize.apply:apply")
