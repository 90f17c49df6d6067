"""llm-compressor's one-shot GPTQ (W4A16: int4, symmetric, group 128), the reference column of
bench_llm_quant.py. Run by that benchmark with the python of a separate environment that has llm-compressor
(it does not install beside the product's pins; see docs/transformers.md), as

    /work/venvs/llmc/bin/python benchmarks/helpers/llmc_gptq.py MODEL_DIR CALIBRATION.npz OUT_DIR

It imports nothing from this repository but its sibling `peak_rss.py` (standard library only).
MODEL_DIR is a Hugging Face checkpoint folder with a tokenizer.json;
CALIBRATION.npz holds `train`, 2-D int token ids (rows, tokens), the same rows our GPTQ calibrates on. The
span measured is the one-shot call (calibration forward passes, the Hessians, the GPTQ solve, compression
and the save of the pack-quantized folder to OUT_DIR); loading the float model is outside it, as it is for
ours. Prints one JSON line: {"seconds", "peak_bytes" (RSS above the span's start, sampled every 5 ms),
"versions"}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from peak_rss import measured  # the sibling helper (this script's folder is first on sys.path)


def main() -> None:
    import compressed_tensors
    import llmcompressor
    import numpy as np
    import torch
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model_dir, calibration, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    threads = os.environ.get("BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    rows = np.load(calibration)["train"].astype(np.int64)
    dataset = Dataset.from_dict({"input_ids": rows.tolist(), "attention_mask": np.ones_like(rows).tolist()})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # oneshot wants a processor beside a dataset (the rows are already ids: it only carries it to the output)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    # the same settings as ours: W4A16 = int4 symmetric group 128; damping 0.01 of mean(diag H); no act-order
    recipe = GPTQModifier(
        targets="Linear", scheme="W4A16", ignore=["lm_head"], dampening_frac=0.01, actorder=None
    )
    _, seconds, peak_bytes = measured(
        lambda: oneshot(
            model=model,
            tokenizer=tokenizer,
            dataset=dataset,
            recipe=recipe,
            num_calibration_samples=rows.shape[0],
            max_seq_length=rows.shape[1],
            shuffle_calibration_samples=False,
            output_dir=str(out),
        )
    )
    versions = {
        "llmcompressor": llmcompressor.__version__,
        "compressed_tensors": compressed_tensors.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    print(json.dumps({"seconds": seconds, "peak_bytes": peak_bytes, "versions": versions}))


if __name__ == "__main__":
    main()
