"""Weight-only int4 quantization of a Hugging Face causal LM (issue 23): ours (RTN and GPTQ, the `wquant`
method's functions) beside compressed-tensors' own primitives doing the same round-to-nearest in the same run.

    python benchmarks/bench_llm_quant.py            # the tiny LM trained on the stdlib + a random-weight one
    python benchmarks/bench_llm_quant.py --smoke    # the smallest sizes (smoke test): numbers mean nothing

Two models:
- `tiny`: the Llama-style LM of tests/sources/hf/tiny_lm.py, trained here on the standard library's bytes
  (`--steps`), evaluated on held-out standard-library files (perplexity over `--test-rows` rows of 64 tokens);
- `random`: a larger Llama of random weights (`--hidden`, `--layers`; sizes and seconds only: the
  perplexity of random weights means nothing, it is printed for completeness).

Per row: seconds from the float model to the written checkpoint (a copy of the model, the quantization,
packing and saving; the same span on both sides), peak resident memory above the start of that span
(sampled every 5 ms), perplexity before and after, and the size of the written checkpoint
(`model.safetensors` inside the tar; the dense one for reference). Reference: compressed-tensors 0.20
(`calculate_qparams` per group, then its `ModelCompressor` pack-quantized save), the primitives
transformers itself uses to read the checkpoint back; its checkpoint is loaded back with
`AutoModelForCausalLM.from_pretrained` and evaluated. llm-compressor's GPTQ (the reference for our GPTQ)
was not installed here (0.14 conflicts with the torch 2.14.1 pin), so GPTQ has no reference column in this
run; tests/methods/wquant/test_grid.py checks our GPTQ against RTN on the layer objective it minimizes.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sources.hf.tiny_lm import tiny_config, train_tiny_lm, write_token_data  # noqa: E402


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(call: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, seconds, peak RSS above the start in bytes), RSS sampled every 5 ms."""
    start, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    clock = time.perf_counter()
    try:
        result = call()
    finally:
        seconds = time.perf_counter() - clock
        done.set()
        thread.join()
    return result, seconds, max(peak[0], _rss()) - start


def ours(model: torch.nn.Module, algorithm: str, calibration: torch.Tensor, work: Path, source: Any) -> Any:
    from compression_core.methods.wquant.checkpoint import write_quantized
    from compression_core.methods.wquant.run import quantize_model
    from compression_core.methods.wquant.spec import WQuantSpec

    config = WQuantSpec(bits=4, group_size=128, algorithm=algorithm, calibration_rows=calibration.shape[0])
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    results = quantize_model(model, config, calibration=calibration)
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


def bench(label: str, folder: Path, tokens: Path, rows: int) -> None:
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
        dense = _size(folder)
        params = sum(p.numel() for p in base.parameters())
        print(
            f"\n{label}: {params / 1e6:.2f} M parameters, dense model.safetensors {dense / 1e6:.2f} MB, "
            f"perplexity {before:.4f} on {test.numel() - test.shape[0]} tokens; calibration "
            f"{calibration.shape[0]} x {calibration.shape[1]} tokens"
        )
        print(f"{'int4 g128':<34} {'seconds':>8} {'peak MB':>8} {'ppl after':>10} {'increase':>9} {'MB':>7}")
        for algorithm in ("rtn", "gptq"):
            (model, tar), seconds, peak = measured(
                lambda a=algorithm: ours(copy.deepcopy(base), a, calibration, work, source)  # type: ignore[misc]
            )
            after = perplexity(model, test)["perplexity"]
            print(
                f"{'ours ' + algorithm:<34} {seconds:8.2f} {peak / 1e6:8.1f} {after:10.4f} "
                f"{after - before:+9.4f} {_size(tar) / 1e6:7.2f}"
            )
        reference, seconds, peak = measured(lambda: reference_rtn(copy.deepcopy(base), work))
        loaded = AutoModelForCausalLM.from_pretrained(reference)
        after = perplexity(loaded, test)["perplexity"]
        print(
            f"{'compressed-tensors rtn (reloaded)':<34} {seconds:8.2f} {peak / 1e6:8.1f} {after:10.4f} "
            f"{after - before:+9.4f} {_size(reference) / 1e6:7.2f}"
        )
        print(f"{'llm-compressor gptq':<34} {'not run here (does not install beside torch 2.14.1)':>50}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of the tiny LM")
    parser.add_argument("--test-rows", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=1024, help="the random-weight model's hidden size")
    parser.add_argument("--layers", type=int, default=8, help="the random-weight model's decoder layers")
    parser.add_argument("--smoke", action="store_true", help="the smallest sizes (numbers mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.test_rows, args.hidden, args.layers = 2, 8, 256, 1
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clock = time.perf_counter()
        tiny = train_tiny_lm(root / "tiny", steps=args.steps)
        print(f"tiny LM trained for {args.steps} steps in {time.perf_counter() - clock:.0f} s")
        tokens = write_token_data(
            root / "tokens.npz", train_rows=64 if not args.smoke else 8, test_rows=args.test_rows
        )
        bench("tiny (trained on the stdlib)", tiny, tokens, args.test_rows)
        from transformers import AutoModelForCausalLM

        config = tiny_config(
            hidden=args.hidden, layers=args.layers, intermediate=int(args.hidden * 2.75) // 128 * 128
        )
        AutoModelForCausalLM.from_config(config).save_pretrained(root / "random")
        bench(
            f"random weights (hidden {args.hidden}, {args.layers} layers)",
            root / "random",
            tokens,
            args.test_rows,
        )


if __name__ == "__main__":
    main()
