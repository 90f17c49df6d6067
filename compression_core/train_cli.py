"""`mcs train ARCH --data DATASET -o model.pth`: train a reference model to compress later."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    arch: Annotated[
        str, typer.Argument(help="lenet300, lenet5, mlp, a torchvision classifier or an mcs.models name")
    ],
    data: Annotated[
        str, typer.Option("--data", help="built-in data set (mnist-5k, digits) or a .npz/.safetensors")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="where to write the state dict (.pth/.safetensors)")
    ],
    epochs: Annotated[int, typer.Option(help="training epochs")] = 20,
    kwargs: Annotated[
        str, typer.Option(help='architecture kwargs as JSON, e.g. {"sizes": [64, 32, 10]}')
    ] = "{}",
    batch_size: Annotated[int, typer.Option(help="mini-batch size")] = 16,
    lr: Annotated[float, typer.Option(help="initial learning rate")] = 0.005,
    optimizer: Annotated[str, typer.Option(help="sgd (momentum 0.9, Nesterov) or adam")] = "sgd",
    gamma: Annotated[float, typer.Option(help="StepLR decay per epoch")] = 0.95,
    seed: Annotated[int, typer.Option(help="initialisation and shuffling seed")] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default)")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
) -> None:
    """Train a reference model with the seed recipe (batch 16, SGD lr 0.005, momentum 0.9, Nesterov,
    StepLR gamma 0.95 every epoch) and print its test error with the sample count."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from compression_core.data import BUILTIN_DATASETS, load_builtin, load_upload
    from compression_core.errors import CompressionError
    from compression_core.spec.fields import OptimizerName, RetrainConfig
    from compression_core.train import save_state_dict, train_reference
    from compression_core.training.loop import EpochStats

    console = Console()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        model_kwargs = json.loads(kwargs)
        if not isinstance(model_kwargs, dict):
            raise ValueError("kwargs must be a JSON object")
        config = RetrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=OptimizerName(optimizer),
            gamma=gamma,
            seed=seed,
        )
        splits = load_builtin(data) if data in BUILTIN_DATASETS else load_upload(data)
        with Progress(
            TextColumn("[bold]train[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("", total=epochs)

            def on_epoch(stats: EpochStats) -> None:
                err = (
                    ""
                    if stats.validation_error is None
                    else f", {splits.choice_split} error {100 * stats.validation_error:.2f}%"
                )
                bar.update(task, advance=1, description=f"loss {stats.train_loss:.4f}{err}")

            result = train_reference(
                {"arch": arch, "kwargs": model_kwargs}, splits, config, device=device, on_epoch=on_epoch
            )
    except (CompressionError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    save_state_dict(result.model, output)
    ev = result.evaluation
    which = splits.eval_split if splits.test is not None else f"{splits.eval_split} (no test split)"
    console.print(
        f"{arch} on {splits.name}: {which} error {100 * ev.error:.2f}% "
        f"({round(ev.error * ev.samples)}/{ev.samples} samples wrong), top-5 {100 * ev.top5:.2f}%; "
        f"wrote {output}"
    )
