"""The language-model losses of `training/lm.py` against transformers' own, on a tiny random Llama."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    from tests.sources.hf.tiny_lm import tiny_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(hidden=32, layers=1, intermediate=64)).eval()


def test_causal_lm_loss_is_transformers_loss_with_labels(model: torch.nn.Module) -> None:
    from compression_core.training.lm import causal_lm_loss

    ids = torch.randint(0, 256, (3, 17), generator=torch.Generator().manual_seed(1))
    out = model(input_ids=ids, labels=ids)
    assert causal_lm_loss(out.logits, ids).item() == pytest.approx(out.loss.item(), rel=1e-5)


def test_kd_loss_is_zero_against_itself_and_positive_against_another(model: torch.nn.Module) -> None:
    import copy

    from compression_core.training.lm import kd_lm_loss

    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(2))
    logits = model(input_ids=ids).logits
    assert kd_lm_loss(model, temperature=2.0, alpha=1.0)(logits, ids).item() == pytest.approx(0.0, abs=1e-6)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.lm_head.weight.mul_(-1.0)
    assert kd_lm_loss(other, temperature=2.0, alpha=1.0)(logits, ids).item() > 0.01


def test_a_diverging_lm_phase_stops_with_its_stage_epoch_and_lr(model: torch.nn.Module) -> None:
    import copy

    from torch.utils.data import TensorDataset

    from compression_core.errors import TrainingDiverged
    from compression_core.spec.fields import RetrainConfig
    from compression_core.training.lm import train_lm

    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.lm_head.weight.fill_(1e38)  # logits past float32's range: the loss is NaN
    rows = TensorDataset(torch.randint(0, 256, (4, 9), generator=torch.Generator().manual_seed(3)))
    seen: list[int] = []
    diverged = r"finetune epoch 1/2 diverged: training loss (nan|inf) at lr 0.001 \(adam\)"
    with pytest.raises(TrainingDiverged, match=diverged):
        train_lm(
            broken,
            rows,
            RetrainConfig(epochs=2, lr=0.001, optimizer="adam", batch_size=2),
            stage="finetune",
            on_epoch=lambda stats: seen.append(stats.epoch),
        )
    assert seen == []
