"""Deep Compression's retraining (a whole-model method; data-aware jobs run it by default): see README.md."""

from compression_core.methods.base import CompressMethod
from compression_core.methods.retrain.spec import RetrainSpec

METHOD = CompressMethod(spec=RetrainSpec, run="compression_core.methods.retrain.run:run")
