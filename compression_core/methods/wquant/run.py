"""wquant's run: evaluate, quantize the module's linear layers (RTN, or GPTQ block by block), evaluate the
quantized model, hand the dequantized weights to the rules' steps (model.bin) and add the packed checkpoint
to the job's outputs.

GPTQ walks the decoder blocks in order (the largest `nn.ModuleList` of the model, `model.layers` in every
transformers decoder): the calibration rows are run once up to the first block (its inputs and keyword
arguments captured), then each block in turn: forward hooks on its target linears accumulate `Σ XᵀX` of their
inputs (one sum per distinct input: q/k/v share one, gate/up another, solved as one stacked weight), the
linears are quantized, and the block is run again with the quantized weights to give the next
block's inputs, so each block is calibrated on what the quantized blocks before it produce. Target linears
outside the blocks (when `ignore` leaves them) are calibrated on one last full pass.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compression_core.budget import check_bytes
from compression_core.errors import InputError
from compression_core.job.context import JobContext
from compression_core.methods.base import CompressFn, Outcome
from compression_core.methods.wquant.checkpoint import OUTPUT_TAR, write_quantized
from compression_core.methods.wquant.grid import Grid
from compression_core.methods.wquant.layer import QuantizedWeight, gptq, rtn
from compression_core.methods.wquant.spec import Algorithm, Format, WQuantSpec

__all__ = ["quantize_model", "run", "target_linears"]

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised by the capture hook once the first block's inputs are recorded."""


def target_linears(
    model: nn.Module, ignore: list[str], only: list[str] | None = None
) -> dict[str, nn.Linear]:
    """The linear layers to quantize: every `nn.Linear` (matched by `only` when given) not matched by
    `ignore` and not tied to the input embeddings (a tied weight is the embedding table too, which stays in
    float)."""
    getter = getattr(model, "get_input_embeddings", None)
    embed = getter() if callable(getter) else None
    tied = embed.weight.data_ptr() if isinstance(embed, nn.Embedding) else None
    out: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or any(fnmatch.fnmatchcase(name, p) for p in ignore):
            continue
        if module.weight.data_ptr() == tied:
            continue
        if only is not None and not any(fnmatch.fnmatchcase(name, p) for p in only):
            continue
        out[name] = module
    return out


def _blocks(model: nn.Module) -> nn.ModuleList:
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise InputError("GPTQ: the model has no list of decoder blocks to calibrate block by block")
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def _hessians(
    linears: Mapping[str, nn.Linear], run: Callable[[], None]
) -> list[tuple[list[str], torch.Tensor]]:
    """H = 2 XᵀX / n of the linears' inputs over what `run` sends through them, one per distinct input:
    linears that read the same tensor (q/k/v, gate/up) share one Hessian, and are solved as one stacked
    weight (GPTQ treats rows independently, so stacking changes nothing but the time)."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    reads: dict[tuple[int, tuple[int, ...]], str] = {}  # an input of the first pass -> who owns its H
    owner: dict[str, str] = {}
    alive: list[torch.Tensor] = []  # each keyed input held until the pass ends: its address is not reused

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if name not in owner:
                key = (args[0].data_ptr(), tuple(args[0].shape))
                if key not in reads:
                    alive.append(args[0])
                owner[name] = reads.setdefault(key, name)
            if owner[name] != name:
                return  # the owner accumulates the shared input
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float().cpu()
            if name not in sums:
                sums[name] = torch.zeros(x.shape[1], x.shape[1])
                counts[name] = 0
            sums[name].addmm_(x.T, x)
            counts[name] += x.shape[0]

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in linears.items()]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
        alive.clear()
    groups: dict[str, list[str]] = {}
    for name in linears:
        groups.setdefault(owner.get(name, name), []).append(name)
    return [
        (names, 2 * sums[first] / max(counts[first], 1)) for first, names in groups.items() if first in sums
    ]


def quantize_model(
    model: nn.Module,
    config: WQuantSpec,
    *,
    calibration: torch.Tensor | None = None,
    device: str = "cpu",
    batch: int = 8,
    progress: Callable[[float, str], None] | None = None,
    check_cancel: Callable[[str], None] | None = None,
    pack: bool = False,
) -> dict[str, QuantizedWeight]:
    """Quantize `model`'s target linears in place (their weights become the dequantized ones); returns each
    layer's integers (packed as they come with `pack`, for a pack-quantized checkpoint) and scales. GPTQ
    needs `calibration` token-id rows."""
    targets = target_linears(model, config.ignore, config.only)
    if not targets:
        raise InputError("wquant: no linear layer left to quantize (check `ignore` and `only`)")
    results: dict[str, QuantizedWeight] = {}

    def grid_of(layer: nn.Linear) -> Grid:
        return Grid(config.bits, config.symmetric, layer.weight.dtype)

    def apply(name: str, result: QuantizedWeight) -> None:
        layer = targets[name]
        layer.weight.data.copy_(result.dequantized().to(layer.weight.dtype))
        results[name] = result.packed_form(config.bits) if pack else result
        if progress is not None:
            progress(len(results) / len(targets), name)

    if config.algorithm is Algorithm.rtn:
        for name, layer in targets.items():
            if check_cancel is not None:
                check_cancel(f"before {name}")
            apply(name, rtn(layer.weight.data, grid_of(layer), config.group_size, name))
        return results
    if calibration is None:
        raise InputError("wquant: GPTQ needs the `train` token ids of the uploaded data")

    def solve(names: list[str], hessian: torch.Tensor) -> None:
        if check_cancel is not None:
            check_cancel(f"before {names[0]}")
        layers = [targets[name] for name in names]
        stacked = gptq(
            torch.cat([layer.weight.data.float().cpu() for layer in layers]),
            hessian,
            grid_of(layers[0]),
            config.group_size,
            act_order=config.act_order,
            dampening=config.dampening,
            name=", ".join(names),
        )
        start = 0
        for name, layer in zip(names, layers, strict=True):
            apply(name, stacked.rows(start, start + layer.out_features))
            start += layer.out_features

    blocks = _blocks(model)
    prefix = {id(m): n for n, m in model.named_modules()}
    hidden = int(getattr(model.config, "hidden_size", 0) or 0)
    check_bytes("GPTQ's calibration activations", calibration.numel() * max(hidden, 1) * 4 * 2)
    batches = [calibration[i : i + batch].to(device) for i in range(0, calibration.shape[0], batch)]
    captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def capture(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured.append((args, kwargs))
        raise _Stop

    handle = blocks[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            for ids in batches:
                with contextlib.suppress(_Stop):
                    model(input_ids=ids, use_cache=False)
    finally:
        handle.remove()

    def first(output: Any) -> torch.Tensor:
        return output[0] if isinstance(output, tuple) else output

    with torch.no_grad():
        for block in blocks:
            base = prefix[id(block)]
            inside = {n: m for n, m in targets.items() if n.startswith(base + ".")}
            if inside:

                def forward_all(block: nn.Module = block, inputs: list[Any] = captured) -> None:
                    for args, kwargs in inputs:
                        block(*args, **kwargs)

                for names, hessian in _hessians(inside, forward_all):
                    solve(names, hessian)
            captured = [((first(block(*args, **kwargs)), *args[1:]), kwargs) for args, kwargs in captured]
        rest = {n: m for n, m in targets.items() if n not in results}
        if rest:

            def full() -> None:
                for ids in batches:
                    model(input_ids=ids, use_cache=False)

            for names, hessian in _hessians(rest, full):
                solve(names, hessian)
    return results


def run(config: WQuantSpec, job: JobContext, compress: CompressFn) -> Outcome:
    """Records of the whole state dict after weight quantization, and the packed checkpoint as an output."""
    lo, hi = job.span
    clock = time.perf_counter()
    job.progress("evaluate", lo, "perplexity before")
    job.evaluate_before()
    seconds: dict[str, float] = {"evaluate_before": time.perf_counter() - clock}
    data = job.other_data
    calibration = None
    if config.algorithm is Algorithm.gptq:
        if data is None or "train" not in data.splits:
            raise InputError("wquant: GPTQ calibrates on the data's `train` token ids; the upload has none")
        calibration = data.splits["train"][: config.calibration_rows]
    clock = time.perf_counter()
    job.model.to(job.device)
    results = quantize_model(
        job.model,
        config,
        calibration=calibration,
        device=job.device,
        progress=lambda f, name: job.progress(config.algorithm.value, lo + (hi - lo) * 0.7 * f, name),
        check_cancel=job.check_cancel,
        pack=config.format == Format.pack_quantized,
    )
    seconds[config.algorithm.value] = time.perf_counter() - clock
    clock = time.perf_counter()
    after = job._evaluate(job.model)
    if after is not None:
        job.evaluation["after"] = after
    seconds["evaluate_after"] = time.perf_counter() - clock
    job.model.to("cpu")
    current = {k: v.detach().cpu() for k, v in job.model.state_dict().items()}
    state = {name: current[name] for name in job.original}
    at = lo + (hi - lo) * 0.8
    records, metrics = compress(state, job.spec, should_cancel=job.should_cancel, span=(at, hi))
    rules = {entry["name"]: entry.get("rule") for entry in metrics["tensors"]}
    for name in results:
        rules.setdefault(f"{name}.weight", None)
        rules[f"{name}.weight"] = rules[f"{name}.weight"] or "wquant"
    section: dict[str, Any] = {
        **config.summary(),
        "format": f"compressed-tensors {config.format}",
        "checkpoint": OUTPUT_TAR,
        "layers": len(results),
        "quantized_parameters": sum(r.shape[0] * r.shape[1] for r in results.values()),
        "loss": {name: r.loss for name, r in results.items()},
        "seconds": seconds[config.algorithm.value],
    }
    before, done = job.evaluation.get("before"), job.evaluation.get("after")
    if before is not None and done is not None:
        section["perplexity"] = {
            "before": before["perplexity"],
            "after": done["perplexity"],
            "increase": done["perplexity"] - before["perplexity"],
            "tokens": done["tokens"],
        }

    def write(out_dir: Path) -> list[Path]:
        target = write_quantized(Path(out_dir), job.source, job.model, results, job.original, config)
        section["checkpoint_bytes"] = target.stat().st_size
        return [target]

    job.writers.append(write)
    return Outcome(
        records=records,
        rules=rules,
        seconds={**metrics["timing"]["seconds"], **seconds},
        section=section,
    )
