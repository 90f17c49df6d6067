"""int8: post-training static quantization of the exported ONNX model with ONNX Runtime (QDQ); see README.md.

A whole-model method of the "deploy" stage: the job's deployment stage (compression_core/deploy/stage.py)
runs it after `model.onnx` is written and checked, with `run(config, stage, out_dir)`.
"""

from compression_core.methods.base import DeployMethod
from compression_core.methods.int8.spec import Int8Spec

METHOD = DeployMethod(spec=Int8Spec, run="compression_core.methods.int8.run:run")
