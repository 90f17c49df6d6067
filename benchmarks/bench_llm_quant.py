"""Weight-only int4 quantization of a Hugging Face causal LM (issue 23): ours (RTN and GPTQ, the `wquant`
method's functions) beside the reference libraries doing the same in the same run: compressed-tensors' own
primitives for round-to-nearest, llm-compressor's one-shot GPTQ for GPTQ.

    python benchmarks/bench_llm_quant.py --llmc-python /work/venvs/llmc/bin/python   # tiny + 12 M models
    python benchmarks/bench_llm_quant.py --big --llmc-python ...   # + a ~0.5 B random-weight model (RTN)
    python benchmarks/bench_llm_quant.py --smoke    # the smallest sizes (smoke test): numbers mean nothing

Models:
- `tiny`: the Llama-style LM of tests/sources/hf/tiny_lm.py, trained here on the standard library's bytes
  (`--steps`), evaluated on held-out standard-library files (perplexity over `--test-rows` rows of 64 tokens);
- `random`: a larger Llama of random weights (`--hidden`, `--layers`; sizes and seconds only: the
  perplexity of random weights means nothing, it is printed for completeness);
- `--big`: a Llama of random weights with ~0.52 B parameters (hidden 1536, 20 layers, MLP 4096, byte
  vocabulary), written as a sharded checkpoint (500 MB shards + index); RTN only unless `--big-gptq`
  (GPTQ's column loop would take hours on two shared cores); perplexity on `--big-test-rows` rows.
Every model folder gets the tiny LM's byte-level tokenizer.json (a real one; llm-compressor wants one).

Per row: seconds from the float model to the written checkpoint (ours: a copy of the model, the quantization,
packing and saving; compressed-tensors: a copy, scales, compression, save; llm-compressor: its `oneshot` call,
which calibrates, quantizes, compresses and saves; loading the float model is outside every span), peak
resident memory above the start of that span (sampled every 5 ms; llm-compressor's in its own process),
perplexity before and after (each reference's checkpoint is loaded back with
`AutoModelForCausalLM.from_pretrained` and evaluated), and the size of the written `model.safetensors`.
llm-compressor does not install beside the product's pins; it runs in its own environment, whose python is
given by `--llmc-python` (or `MCS_LLMC_PYTHON`), through benchmarks/helpers/llmc_gptq.py; without it the row
says "not installed". Torch runs `--threads` threads (default 1, in both processes): on a shared,
oversubscribed 2-core machine two threads make every small tensor operation wait on the other (10-40x
slower here).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.helpers.peak_rss import measured  # noqa: E402
from tests.sources.hf.tiny_lm import tiny_config, train_tiny_lm, write_token_data  # noqa: E402


def ours(
    model: torch.nn.Module,
    algorithm: str,
    calibration: torch.Tensor,
    work: Path,
    source: Any,
    original: dict[str, torch.Tensor],
) -> Any:
    """`original`: the float state dict (names and dtypes), which a job holds from the start (`job.original`);
    here the untouched base model's, not a copy."""
    from compression_core.methods.wquant.checkpoint import write_quantized
    from compression_core.methods.wquant.run import quantize_model
    from compression_core.methods.wquant.spec import WQuantSpec

    config = WQuantSpec(bits=4, group_size=128, algorithm=algorithm, calibration_rows=calibration.shape[0])
    results = quantize_model(model, config, calibration=calibration, pack=True)  # as a job does
    tar = write_quantized(work / algorithm, source, model, results, original, config)
    return model, tar


def reference_rtn(model: torch.nn.Module, work: Path) -> Path:
    """compressed-tensors: attach the scheme, scales from calculate_qparams, compress, save, update config."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
        apply_quantization_config,
    )
    from compressed_tensors.quantization.utils.helpers import calculate_qparams
    from compressed_tensors.utils import update_offload_parameter

    args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=128)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    apply_quantization_config(
        model, QuantizationConfig(config_groups={"group_0": scheme}, ignore=["lm_head"])
    )
    for module in model.modules():
        if hasattr(module, "weight_scale"):
            weight = module.weight.data
            groups = weight.reshape(weight.shape[0], -1, 128)
            scale, zero = calculate_qparams(groups.amin(-1), groups.amax(-1), args)
            update_offload_parameter(module, "weight_scale", scale)
            update_offload_parameter(module, "weight_zero_point", zero.to(module.weight_zero_point.dtype))
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format="pack-quantized")
    compressor.compress_model(model)
    folder = work / "reference"
    model.save_pretrained(folder)
    compressor.update_config(str(folder))
    return folder


def _size(path: Path) -> int:
    import tarfile

    if path.is_dir():
        return sum(p.stat().st_size for p in path.glob("*.safetensors"))
    with tarfile.open(path) as tar:
        return tar.getmember("model.safetensors").size


def llmc_gptq(python: str, folder: Path, calibration: Path, out: Path, threads: int) -> dict[str, Any]:
    """llm-compressor's GPTQ through benchmarks/helpers/llmc_gptq.py in its own environment: its JSON line, or
    {"error": the last line it printed} when it failed."""
    script = Path(__file__).resolve().parent / "helpers" / "llmc_gptq.py"
    env = {**os.environ, "BENCH_THREADS": str(threads), "PYTHONPATH": ""}
    done = subprocess.run(
        [python, str(script), str(folder), str(calibration), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=out.parent,
        timeout=4 * 3600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    tail = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return {"error": tail[-1] if tail else f"exit status {done.returncode}"}


def _row(label: str, seconds: float, peak: float, after: float, before: float, size: float) -> None:
    figures = f"{seconds:8.2f} {peak / 1e6:8.1f} {after:10.4f} {after - before:+9.4f} {size / 1e6:7.2f}"
    print(f"{label:<34} {figures}", flush=True)


def bench(
    label: str, folder: Path, tokens: Path, rows: int, args: argparse.Namespace, *, gptq: bool = True
) -> None:
    import numpy as np
    from transformers import AutoModelForCausalLM

    from compression_core.sources import open_source
    from compression_core.sources.hf.lm import load_tokens, perplexity

    with open_source(folder) as source, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = source.module()
        config = source.config
        data = load_tokens(tokens, int(config["vocab_size"]), config.get("max_position_embeddings"))
        test, calibration = data.splits["test"][:rows], data.splits["train"]
        before = perplexity(base, test)["perplexity"]
        original = base.state_dict()
        dense = _size(folder)
        params = sum(p.numel() for p in base.parameters())
        print(
            f"\n{label}: {params / 1e6:.2f} M parameters, dense safetensors {dense / 1e6:.2f} MB, "
            f"perplexity {before:.4f} on {test.numel() - test.shape[0]} tokens; calibration "
            f"{calibration.shape[0]} x {calibration.shape[1]} tokens",
            flush=True,
        )
        print(f"{'int4 g128':<34} {'seconds':>8} {'peak MB':>8} {'ppl after':>10} {'increase':>9} {'MB':>7}")

        def our_row(algorithm: str) -> None:
            (model, tar), seconds, peak = measured(
                lambda: ours(copy.deepcopy(base), algorithm, calibration, work, source, original)
            )
            after = perplexity(model, test)["perplexity"]
            del model
            _row(f"ours {algorithm}", seconds, peak, after, before, _size(tar))

        our_row("rtn")
        reference, seconds, peak = measured(lambda: reference_rtn(copy.deepcopy(base), work))
        loaded = AutoModelForCausalLM.from_pretrained(reference)
        after = perplexity(loaded, test)["perplexity"]
        del loaded
        _row("compressed-tensors rtn (reloaded)", seconds, peak, after, before, _size(reference))
        if not gptq:
            print(f"{'gptq':<34} not run on this model (see --big-gptq)")
            return
        our_row("gptq")
        if not args.llmc_python:
            print(f"{'llm-compressor gptq':<34} not installed (give --llmc-python or MCS_LLMC_PYTHON)")
            return
        np.savez(work / "calibration.npz", train=calibration.numpy())
        result = llmc_gptq(args.llmc_python, folder, work / "calibration.npz", work / "llmc", args.threads)
        if "error" in result:
            print(f"{'llm-compressor gptq':<34} failed: {result['error'][:300]}")
            return
        loaded = AutoModelForCausalLM.from_pretrained(work / "llmc")
        after = perplexity(loaded, test)["perplexity"]
        del loaded
        versions = result["versions"]
        _row(
            "llm-compressor gptq (reloaded)",
            result["seconds"],
            result["peak_bytes"],
            after,
            before,
            _size(work / "llmc"),
        )
        print(
            f"  (llm-compressor {versions['llmcompressor']}, compressed-tensors "
            f"{versions['compressed_tensors']}, transformers {versions['transformers']}, "
            f"torch {versions['torch']})"
        )


def _with_tokenizer(folder: Path) -> Path:
    from tests.sources.hf.tiny_lm import byte_tokenizer_json

    (folder / "tokenizer.json").write_text(byte_tokenizer_json())
    return folder


def _small(root: Path, tokens: Path, args: argparse.Namespace) -> None:
    """The tiny trained LM and the random-weight one of `--hidden` x `--layers`."""
    from transformers import AutoModelForCausalLM

    clock = time.perf_counter()
    tiny = _with_tokenizer(train_tiny_lm(root / "tiny", steps=args.steps))
    print(f"tiny LM trained for {args.steps} steps in {time.perf_counter() - clock:.0f} s")
    bench("tiny (trained on the stdlib)", tiny, tokens, args.test_rows, args)
    config = tiny_config(
        hidden=args.hidden, layers=args.layers, intermediate=int(args.hidden * 2.75) // 128 * 128
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "random")
    bench(
        f"random weights (hidden {args.hidden}, {args.layers} layers)",
        _with_tokenizer(root / "random"),
        tokens,
        args.test_rows,
        args,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of the tiny LM")
    parser.add_argument("--test-rows", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=1024, help="the random-weight model's hidden size")
    parser.add_argument("--layers", type=int, default=8, help="the random-weight model's decoder layers")
    parser.add_argument("--big", action="store_true", help="also the ~0.5 B random-weight model")
    parser.add_argument("--big-gptq", action="store_true", help="GPTQ (ours and llm-compressor's) on it too")
    parser.add_argument("--big-only", action="store_true", help="only the ~0.5 B model")
    parser.add_argument("--big-test-rows", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (here and in llm-compressor)")
    parser.add_argument(
        "--llmc-python",
        default=os.environ.get("MCS_LLMC_PYTHON"),
        help="python of an environment with llm-compressor (default: $MCS_LLMC_PYTHON)",
    )
    parser.add_argument("--smoke", action="store_true", help="the smallest sizes (numbers mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.test_rows, args.hidden, args.layers = 2, 8, 256, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokens = write_token_data(
            root / "tokens.npz", train_rows=64 if not args.smoke else 8, test_rows=args.test_rows
        )
        if not args.big_only:
            _small(root, tokens, args)
        if args.big or args.big_only:
            from transformers import AutoModelForCausalLM

            clock = time.perf_counter()
            model = AutoModelForCausalLM.from_config(tiny_config(hidden=1536, layers=20, intermediate=4096))
            model.save_pretrained(root / "big", max_shard_size="500MB")
            del model
            print(f"\n~0.5 B random-weight model built and written in {time.perf_counter() - clock:.0f} s")
            bench(
                "random weights (hidden 1536, 20 layers, MLP 4096; sharded)",
                _with_tokenizer(root / "big"),
                tokens,
                args.big_test_rows,
                args,
                gptq=args.big_gptq,
            )


if __name__ == "__main__":
    main()
