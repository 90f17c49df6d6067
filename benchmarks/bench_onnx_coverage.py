"""Which torchvision classifiers an ONNX upload supports end to end (issue 19): every classification model
of `torchvision.models.list_models`, built with `num_classes=10` (random weights), exported at 224x224 as
docs/bring-your-own-model.md tells users to (`torch.onnx.export(model, (x,), path, dynamo=True,
optimize=False, external_data=False)`: torch 2.14's default exporter, BatchNorms kept as layers), then:

1. `check`: the upload check (`compression_core/sources/onnx/check.py`: protobuf parsed, never executed);
2. `convert`: normalized and converted to a module of standard layers (`sources/onnx/convert.py`), whose
   output is within 1e-4 relative of the PyTorch model's (and of onnxruntime's on the graph), with the
   count of state-dict names that are not the model's own parameter names;
3. `data-free`: a data-free job (`compress_file`, every weight quantized to 256 shared values): model.pth
   loads strictly into the torchvision class, and model.onnx (the graph with the job's weights) computes
   what that module computes in onnxruntime within 1e-4;
4. `pruned`: every convolution loses 50% of its output channels with Torch-Pruning (the classifier, a
   convolution whose channels are the class scores and one whose channels go through a channel shuffle
   kept, as the job refuses them: their count in `left out`),
   the smaller module is exported and checked in onnxruntime within 1e-4, with the parameter count.

Baseline, same run: onnx2torch 1.5.15 as it ships (`onnx2torch.convert` on the same file, no
normalization, no added converters) in the column `onnx2torch alone`.

    PYTHONPATH=. python benchmarks/bench_onnx_coverage.py                      # all (hours on 2 cores)
    PYTHONPATH=. python benchmarks/bench_onnx_coverage.py --models resnet18,mobilenet_v2
    PYTHONPATH=. python benchmarks/bench_onnx_coverage.py --smallest 3          # the 3 smallest models
    PYTHONPATH=. python benchmarks/bench_onnx_coverage.py --smallest 1 --size 64   # the smoke run
    PYTHONPATH=. python benchmarks/bench_onnx_coverage.py --from-log run.txt   # the table of a stopped run

    PYTHONPATH=. python benchmarks/bench_onnx_coverage.py --json rows.json     # resumable: skips rows in it
    PYTHONPATH=. python benchmarks/bench_onnx_coverage.py --from-log a.json,b.json  # the table of rows files

Models over `--max-params` (default 100M) are listed as skipped for time. Each model runs in a child
process with `--threads` torch threads (default 2), bounded by `--timeout` seconds (a timeout is a row).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

RTOL = 1e-4
_LEAVE_OUT = re.compile(r"the model's outputs|regroups channels")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.abs(b).max()) or 1.0
    return float(np.abs(a - b).max()) / scale if a.shape == b.shape else float("inf")


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}"


def _ort(path: Path, x: torch.Tensor) -> np.ndarray:
    from compression_core.deploy.onnx_export import ort_session

    session = ort_session(path, torch.get_num_threads())
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def run_model(name: str, size: int, folder: Path, max_params: float = float("inf")) -> dict[str, Any]:
    """One model through the four stages; each stage "ok", a number, or the reason it failed."""
    import onnx
    import torchvision

    from compression_core.channels import count_parameters
    from compression_core.deploy.onnx_export import check_onnx, export_onnx
    from compression_core.deploy.pruning import PruneTarget, plan_structured, prune_structured
    from compression_core.job.pipeline import compress_file
    from compression_core.sources.onnx import OnnxSource
    from compression_core.spec import parse_spec

    row: dict[str, Any] = {"model": name}
    clock = time.perf_counter()
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"num_classes": 10}
    if name.startswith("inception") or name == "googlenet":
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = False
    model = torchvision.models.get_model(name, **kwargs).eval()
    for layer in model.modules():  # a head that starts at zero (the ViTs'): outputs of zero check nothing
        if isinstance(layer, torch.nn.Linear) and not layer.weight.any():
            torch.nn.init.normal_(layer.weight, std=0.02)
    row["params"] = count_parameters(model)
    if row["params"] > max_params:
        row["export"] = f"skipped for time ({row['params'] / 1e6:.0f}M params)"
        return row
    x = torch.randn(1, 3, size, size)
    batch = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    path = folder / f"{name}.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=True, optimize=False, external_data=False)
    except Exception as error:  # noqa: BLE001 - a benchmark row, not a crash
        row.update(export=_short(error), seconds=time.perf_counter() - clock)
        return row
    row["export"] = "ok"
    try:
        from onnx2torch import convert as plain

        with torch.no_grad():
            plain_out = plain(onnx.load(str(path)))(x)
        row["onnx2torch alone"] = (
            "ok" if _rel(plain_out.numpy(), model(x).detach().numpy()) <= RTOL else "wrong"
        )
    except Exception as error:  # noqa: BLE001
        row["onnx2torch alone"] = _short(error)
    source = OnnxSource(path)
    try:
        from compression_core.sources.onnx.check import read_checked

        read_checked(path)
        row["check"] = "ok"
        _stage("checked")
        converted = source.converted()
        module = converted.module.eval()
        with torch.no_grad():
            rel = _rel(module(batch).numpy(), model(batch).numpy())
        row["convert"] = "ok" if rel <= RTOL else f"rel {rel:.1e}"
        row["unmapped"] = len(converted.unmapped)
    except Exception as error:  # noqa: BLE001
        row.setdefault("check", _short(error))
        row["convert"] = _short(error) if row["check"] == "ok" else "-"
        row["seconds"] = time.perf_counter() - clock
        return row
    _stage("converted")
    try:
        spec = {"rules": [{"select": {"name": "*.weight"}, "steps": [{"type": "quantize", "k": 256}]}]}
        out = folder / f"{name}-free"
        compress_file(path, parse_spec(json.dumps(spec)), out)
        weights = torch.load(out / "model.pth", weights_only=True)
        strict = "strict" if not converted.unmapped else "-"
        if not converted.unmapped:  # the class's own state dict object: its _metadata (MNASNet reads it)
            mine = model.state_dict()
            assert set(mine) == set(weights), "model.pth keys differ from the class's"
            mine.update(weights)
            model.load_state_dict(mine, strict=True)
        loaded = source.module(weights)
        assert loaded is not None
        with torch.no_grad():
            expected = loaded.eval()(batch).numpy()
        rel = _rel(_ort(out / "model.onnx", batch), expected)
        row["data-free"] = (
            (f"ok ({strict})" if strict == "strict" else "ok") if rel <= RTOL else f"rel {rel:.1e}"
        )
    except Exception as error:  # noqa: BLE001
        row["data-free"] = _short(error)
    try:
        _stage("data-free done")
        pruned = source.module()
        assert pruned is not None
        convs = [
            n
            for n, m in pruned.named_modules()
            if isinstance(m, torch.nn.Conv2d) and (m.groups == 1 or m.groups != m.in_channels)
        ]
        targets = [PruneTarget(n, 0.5, 0) for n in convs]
        # what a rule leaves out, as the job's refusal says: a convolution whose channels are the class
        # scores, or whose channels go through a channel shuffle
        plan = plan_structured(pruned, x, targets)
        left_out = [p.layer for p in plan.refused if p.reason and _LEAVE_OUT.search(p.reason)]
        _stage("pruning planned")
        prune_structured(pruned, x, [t for t in targets if t.layer not in left_out])
        row["left out"] = len(left_out)
        smaller = folder / f"{name}-pruned.onnx"
        export_onnx(pruned.eval(), x, smaller)
        check = check_onnx(pruned, smaller, batch, rtol=RTOL, threads=torch.get_num_threads())
        after = count_parameters(pruned)
        row["pruned"] = f"ok ({after / row['params']:.0%} params)" if check["ok"] else "onnx differs"
    except Exception as error:  # noqa: BLE001
        row["pruned"] = _short(error)
    row["seconds"] = time.perf_counter() - clock
    return row


def classifiers() -> list[tuple[str, int | None]]:
    """(name, parameters) of every torchvision classifier, smallest first (built on the meta device; the
    RegNets, whose constructors cannot run there, are listed with their size unknown, after the rest)."""
    import torchvision

    out: list[tuple[str, int | None]] = []
    for name in torchvision.models.list_models(module=torchvision.models):
        with torch.device("meta"):
            try:
                kwargs: dict[str, Any] = {"num_classes": 10}
                if name.startswith("inception") or name == "googlenet":
                    kwargs.update(aux_logits=False, init_weights=False)
                model = torchvision.models.get_model(name, **kwargs)
                out.append((name, sum(p.numel() for p in model.parameters())))
            except Exception:  # noqa: BLE001 - sized when it runs
                out.append((name, None))
    return sorted(out, key=lambda item: (item[1] is None, item[1] or 0, item[0]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--smallest", type=int, default=0, help="only the N smallest models")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--max-params", type=float, default=100e6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--json", default="", help="rows file: models already in it are skipped (resume), written after each"
    )
    parser.add_argument("--after", default="", help="only the models after this one (in size order)")
    parser.add_argument("--redo", default="", help="comma-separated models to run again though in --json")
    parser.add_argument("--reverse", action="store_true", help="largest models first")
    parser.add_argument("--also", default="", help="comma-separated rows files of parallel runs: skip theirs")
    parser.add_argument("--claims", default="", help="a folder where parallel runs claim their models")
    parser.add_argument("--timeout", type=float, default=900, help="wall-clock seconds per model")
    parser.add_argument(
        "--memory-limit-gb", type=float, default=0, help="anonymous memory per model's child (0: none)"
    )
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # a child run: one model, JSON out
    parser.add_argument(
        "--from-log",
        default="",
        help="print the table of comma-separated rows files or logs of earlier (interrupted, parallel) runs",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    if args.from_log:
        every = classifiers()
        print_table(_merged([_log_rows(Path(f)) for f in args.from_log.split(",")], every), len(every))
        return
    if args.one:
        with tempfile.TemporaryDirectory(prefix="mcs-cov-") as tmp:
            row = run_model(args.one, args.size, Path(tmp), args.max_params)
            row["peak MB"] = _peak_mb()  # the child's high-water mark: export, conversion, jobs, pruning
            print(json.dumps(row))
        return
    every = classifiers()
    wanted = [m for m in args.models.split(",") if m]
    chosen = [(n, p) for n, p in every if n in wanted] if wanted else every
    if args.smallest:
        chosen = chosen[: args.smallest]
    if args.after:
        names = [n for n, _ in chosen]
        chosen = chosen[names.index(args.after) + 1 :] if args.after in names else chosen
    store = Path(args.json) if args.json else None
    rows = _read_rows(store)
    redo = {m for m in args.redo.split(",") if m}
    rows = [r for r in rows if r.get("model") not in redo]
    done_names = {r.get("model") for r in rows}
    print(
        f"torch {torch.__version__}, {len(chosen)} of {len(every)} torchvision classifiers, "
        f"{args.size}x{args.size}, {len([n for n, _ in chosen if n in done_names])} already in {store}"
    )
    if args.reverse:
        chosen = chosen[::-1]
    for name, params in chosen:
        if name in done_names:  # resumed: a stopped run loses nothing
            continue
        if args.also and name in {r.get("model") for f in args.also.split(",") for r in _read_rows(Path(f))}:
            continue  # measured by a parallel run
        if args.claims and not _claim(Path(args.claims), name):
            continue  # a parallel run has it
        if params is not None and params > args.max_params:
            skipped = f"skipped for time ({params / 1e6:.0f}M params)"
            row = {"model": name, "params": params, "export": skipped}
        else:
            row = _child(name, params, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if store is not None:  # after every model, so the table can be printed from it at any time
            store.write_text(json.dumps(rows, indent=1))
    print_table([r for r in rows if r.get("model") in {n for n, _ in chosen}] if wanted else rows)


def _memory_limit(gigabytes: float) -> Callable[[], None] | None:
    if not gigabytes:
        return None
    limit = int(gigabytes * 1e9)

    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return apply


def _stage(name: str) -> None:
    """A line on stderr per stage with the memory so far: a crashed child's row ends with the last one."""
    print(f"[{name}: peak {_peak_mb()} MB]", file=sys.stderr, flush=True)


def _peak_mb() -> int | None:
    """This process's peak resident memory (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _claim(folder: Path, name: str) -> bool:
    """Whether this run takes `name`: its claim made now, or left by a run that is gone."""
    import os

    claim = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    try:
        claim.mkdir()
    except FileExistsError:
        try:
            os.kill(int((claim / "pid").read_text()), 0)
            return False  # the claiming run is alive
        except (OSError, ValueError):
            pass  # it stopped: take the model over
    (claim / "pid").write_text(str(os.getpid()))
    return True


def _log_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a `--json` file, or the JSON lines a run printed."""
    text = path.read_text()
    if text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _merged(files: list[list[dict[str, Any]]], order: list[tuple[str, int | None]]) -> list[dict[str, Any]]:
    """The rows of several runs (a later file's row wins), in the models' size order."""
    by_name = {row["model"]: row for rows in files for row in rows}
    ranks = {name: i for i, (name, _) in enumerate(order)}
    return sorted(by_name.values(), key=lambda row: ranks.get(row["model"], len(ranks)))


def _read_rows(store: Path | None) -> list[dict[str, Any]]:
    if store is None or not store.exists():
        return []
    return list(json.loads(store.read_text()))


def _child(name: str, params: int | None, args: argparse.Namespace) -> dict[str, Any]:
    """One model in a child process (memory and converter state start clean, a crash is one row), bounded
    by `--timeout` seconds of wall clock (a timeout is a row too) and, with `--memory-limit-gb`, by that
    much anonymous memory (RLIMIT_DATA: an allocation past it is a MemoryError in the row's stage, where the
    machine's out-of-memory killer would otherwise take the child, or a neighbour)."""
    command = [
        sys.executable,
        __file__,
        "--one",
        name,
        "--size",
        str(args.size),
        "--threads",
        str(args.threads),
        "--max-params",
        str(args.max_params),
    ]
    clock = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=args.timeout,
            preexec_fn=_memory_limit(args.memory_limit_gb),
        )
    except subprocess.TimeoutExpired:
        return {
            "model": name,
            "params": params,
            "export": f"timeout after {args.timeout:.0f} s",
            "seconds": time.perf_counter() - clock,
        }
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        return dict(json.loads(lines[-1]))
    code = done.returncode  # -9: killed, on this machine the kernel's out-of-memory killer
    killed = " (SIGKILL: out of memory?)" if code == -9 else ""
    return {"model": name, "params": params, "export": f"crashed, exit {code}{killed}: {done.stderr[-160:]}"}


def print_table(rows: list[dict[str, Any]], total: int = 0) -> None:
    columns = [
        "model",
        "params",
        "onnx2torch alone",
        "check",
        "convert",
        "unmapped",
        "data-free",
        "pruned",
        "left out",
        "seconds",
        "peak MB",
    ]
    print("\n| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        if row.get("export") != "ok":
            export = " ".join(str(row.get("export")).split()).replace("|", "/")
            cells = [row["model"], f"{(row.get('params') or 0) / 1e6:.1f}M", f"export: {export}"]
            print("| " + " | ".join(cells) + " |" + " |" * (len(columns) - 3))
            continue
        values = []
        for column in columns:
            value = row.get(column, "-")
            if column == "params":
                value = f"{value / 1e6:.1f}M"
            elif column == "seconds":
                value = f"{value:.0f}"
            text = re.sub(
                r"NotImplementedError: Converter is not implemented \(OperationDescription\(domain='[^']*', "
                r"operation_type='(\w+)', version=(\d+)\)\)",
                r"no converter for \1-\2",
                str(value),
            )
            values.append(text.replace("|", "/"))
        print("| " + " | ".join(values) + " |")
    tried = [r for r in rows if r.get("export") == "ok"]

    def count(key: str) -> int:
        return sum(1 for r in tried if str(r.get(key, "")).startswith("ok"))

    print(
        f"\nexported {len(tried)} of {len(rows)}; onnx2torch alone {count('onnx2torch alone')}, converted "
        f"{count('convert')}, data-free + re-export {count('data-free')}, 50% structured + onnxruntime "
        f"{count('pruned')} (of those exported)"
    )
    if total:
        skipped = sum(1 for r in rows if str(r.get("export", "")).startswith("skipped"))
        timeouts = sum(1 for r in rows if str(r.get("export", "")).startswith("timeout"))
        sized = total - skipped

        def share(n: int) -> str:
            return f"{n} ({n / total:.0%} of all {total}, {n / max(sized, 1):.0%} of the {sized} not skipped)"

        print(
            f"converted {share(count('convert'))}; pruned {share(count('pruned'))}; skipped for time "
            f"{skipped}, timed out {timeouts}, not run {total - len(rows)}"
        )


if __name__ == "__main__":
    main()
