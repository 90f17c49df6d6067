#!/usr/bin/env bash
# A separate environment with llm-compressor, the GPTQ reference of benchmarks/bench_llm_quant.py.
# llm-compressor 0.14.0.1 pins torch<=2.14.0, compressed-tensors==0.19.0 and transformers<=5.17.0, so it does
# not install beside the product's (torch 2.14.1, compressed-tensors 0.20.1, transformers 5.24): this venv
# reuses the product venv's packages through a .pth file (no second torch), installs llm-compressor without
# its dependencies, then only the pure-Python/wheel ones it imports that the product venv lacks. It runs
# with the product's versions (checked by the benchmark, which prints them).
#
#   scripts/make-llmc-venv.sh [PRODUCT_VENV] [TARGET]      # defaults: .venv, /work/venvs/llmc
#   python benchmarks/bench_llm_quant.py --llmc-python /work/venvs/llmc/bin/python
set -euo pipefail
product=$(cd "${1:-.venv}" && pwd)
target=${2:-/work/venvs/llmc}
site=$("$product/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$product/bin/python" -m venv "$target"  # the same interpreter as the product's
echo "$site" > "$("$target/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_product.pth"
"$target/bin/pip" install -q --no-deps llmcompressor==0.14.0.1
"$target/bin/pip" install -q loguru accelerate datasets nvidia-ml-py
"$target/bin/python" -c 'from llmcompressor import oneshot; from llmcompressor.modifiers.quantization import GPTQModifier'
echo "$target/bin/python"
