"""The fast loop: data sliced from (device) tensors in exactly the order the seeded DataLoader gave."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from compression_core.spec.fields import RetrainConfig
from compression_core.training.loop import loader_batches, permuted_batches, run_epoch, train_epochs


def _data(n: int = 103) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_loader_batches_are_the_dataloaders_batches_epoch_after_epoch():
    data = _data()
    ours = loader_batches(data, 16, torch.Generator().manual_seed(7), device="cpu")
    theirs = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7))
    for _epoch in range(3):  # the generator state must advance alike, not only the first epoch match
        a, b = list(ours), list(theirs)
        assert len(a) == len(b) == 7
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_permuted_batches_move_the_data_once_and_cover_every_sample():
    data = _data()
    batches = permuted_batches(data, 10, torch.Generator().manual_seed(0), device="cpu")
    first = list(batches)
    assert len(first) == len(batches) == 11
    seen = torch.cat([y for _, y in first])
    assert torch.equal(seen.sort().values, data.tensors[1].sort().values)
    assert all(x.device == batches.x.device for x, _ in first)
    second = torch.cat([y for _, y in batches])
    assert not torch.equal(seen, second)  # a fresh permutation per epoch


def test_run_epoch_sums_match_a_per_step_reference():
    torch.manual_seed(0)
    data = _data()
    model = torch.nn.Linear(5, 3)
    reference = torch.nn.Linear(5, 3)
    reference.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    batches = list(permuted_batches(data, 16, torch.Generator().manual_seed(3)))
    totals = run_epoch(model, batches, opt, device=torch.device("cpu"))
    loss_sum, correct = 0.0, 0
    for x, y in batches:  # the old loop: .item() and int() after every step
        out = reference(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        loss_sum += loss.item() * len(y)
        correct += int((out.argmax(1) == y).sum())
    assert abs(totals.loss_sum - loss_sum) < 1e-4 and totals.correct == correct and totals.seen == 103
    assert torch.equal(model.weight, reference.weight)


def test_train_epochs_still_learns():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    model = torch.nn.Linear(4, 2)
    history = train_epochs(model, data, RetrainConfig(epochs=5, lr=0.1, batch_size=32))
    assert history[-1].train_accuracy > 0.9 and history[-1].train_loss < history[0].train_loss


def test_history_entries_are_named_for_the_split_they_were_measured_on() -> None:
    from compression_core.training.loop import EpochStats, renamed_for_split, with_split_names

    entry = EpochStats(1, 1, 0.1, 0.5, 0.9, validation_error=0.2, validation_samples=40).to_dict()
    assert entry["validation_error"] == 0.2 and "test_error" not in entry
    renamed = renamed_for_split(entry, "test")
    assert (renamed["test_error"], renamed["test_samples"]) == (0.2, 40) and "validation_error" not in renamed
    # a checkpoint written before the rename (test_* keys measured on validation) still resumes
    old = {k.replace("validation_", "test_"): v for k, v in entry.items()}
    assert EpochStats(**with_split_names(old)) == EpochStats(**entry)


def test_a_diverging_phase_stops_with_its_stage_epoch_and_lr_instead_of_training_on_nan():
    import pytest

    from compression_core.errors import TrainingDiverged

    torch.manual_seed(0)
    data = _data()
    x, y = data.tensors
    overflowing = TensorDataset(x * 1e37, y)  # logits past float32's range: the loss is inf or NaN
    model = torch.nn.Linear(5, 3)
    seen: list[int] = []
    with pytest.raises(
        TrainingDiverged, match=r"finetune epoch 1/3 diverged: training loss (nan|inf) at lr 10 \(sgd\)"
    ):
        train_epochs(
            model,
            overflowing,
            RetrainConfig(epochs=3, lr=10.0),
            stage="finetune",
            on_epoch=lambda stats: seen.append(stats.epoch),
        )
    assert seen == []  # no epoch of NaN weights was handed on
    sane = torch.nn.Linear(5, 3)
    history = train_epochs(sane, data, RetrainConfig(epochs=2, lr=0.01), stage="finetune")
    assert [h.epoch for h in history] == [1, 2]  # a stable lr trains on as before
