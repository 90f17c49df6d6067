"""wquant: weight-only int quantization (RTN, GPTQ) of a Hugging Face model, written in compressed-tensors'
`pack-quantized` format; see README.md.

A whole-model method of the "compress" stage: `run(config, job, compress)` quantizes the job's module in
place (the dequantized weights are what the rules' steps, model.bin and the evaluation see) and adds the
packed checkpoint to the job's outputs (`job.writers`).
"""

from compression_core.methods.base import CompressMethod
from compression_core.methods.wquant.spec import WQuantSpec

METHOD = CompressMethod(spec=WQuantSpec, run="compression_core.methods.wquant.run:run")
