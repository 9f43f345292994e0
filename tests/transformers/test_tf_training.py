"""Training steps on Hugging Face dict batches: every optimizer's closure, the token-mean loss, gradient
clipping against a hand computation, and the data helpers of a run (batches, input shapes)."""

from __future__ import annotations

import pytest
import tf_factories as tf
import torch

from landscape.data.datasets import input_shape
from landscape.errors import ConfigError
from landscape.objective.losses import CrossEntropy
from landscape.optim.factory import make_optimizer, training_step
from landscape.training.batches import SeededBatches
from landscape.training.config import TrainConfig

LOSS = CrossEntropy(causal=True)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return tf.gpt2(n_embd=8).double()


def _batch(n: int = 6, seed: int = 4) -> dict[str, torch.Tensor]:
    return tf.stacked(tf.PaddedTokens(n, seed=seed))


OPTIMIZERS = [
    "sgd",
    "adamw",
    "sam",
    "asam",
    "sam-direction",
    "sam-magnitude",
    "msam",
    "adamw-msam-sf",
    "sgd-hess",
]


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("as_pair", [True, False], ids=["inputs-labels", "dict-batch"])
def test_every_optimizer_steps_on_dict_batches(name, as_pair):
    model = _model()
    opt = make_optimizer(name, model, lr=0.01, momentum=0.9, **({"seed": 0} if name == "sgd-hess" else {}))
    batch = _batch()
    given = ({k: v for k, v in batch.items() if k != "labels"}, batch["labels"]) if as_pair else batch
    before = [p.detach().clone() for p in model.parameters()]
    loss = training_step(opt, model, LOSS, given)
    assert torch.isfinite(torch.tensor(loss))
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    if name in ("sgd", "adamw", "sam", "asam", "sam-direction", "sam-magnitude", "sgd-hess"):
        # the loss at the parameters before the step, on the shifted token mean
        start = _model()
        assert loss == pytest.approx(tf.token_mean_of(start, batch), rel=1e-12)


def test_minmin_steps_on_two_dict_batches():
    model = _model()
    opt = make_optimizer("minmin", model, lr=0.01, momentum=0.0, small_batch_size=3, large_batch_size=6)
    loss = training_step(opt, model, LOSS, _batch(3, seed=5), _batch(6, seed=6))
    assert loss == pytest.approx(tf.token_mean_of(_model(), _batch(3, seed=5)), rel=1e-12)


@pytest.mark.parametrize("clip", [1e-3, 1e6], ids=["clipped", "below-the-bound"])
def test_clip_grad_norm_scales_the_gradient_sgd_steps_with(clip):
    """Plain SGD: the update is -lr * g * min(1, clip / ||g||) with g the token-mean gradient."""
    model, lr = _model(), 0.1
    batch = _batch()
    reference = _model()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    grads = torch.autograd.grad(
        tf.token_mean(reference(**inputs).logits, batch["labels"]), list(reference.parameters())
    )
    norm = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
    scale = min(1.0, clip / (norm + 1e-6))  # clip_grad_norm_'s rule
    opt = make_optimizer("sgd", model, lr=lr, momentum=0.0)
    training_step(opt, model, LOSS, batch, clip_grad_norm=clip)
    for p, p0, g in zip(model.parameters(), reference.parameters(), grads):
        torch.testing.assert_close(p.detach(), p0.detach() - lr * scale * g, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"clip_grad_norm": 0.0}, r"^clip_grad_norm=0.0 must be > 0$"),
        ({"clip_grad_norm": "1"}, r"^clip_grad_norm='1' must be a positive number or None$"),
        (
            {"clip_grad_norm": 1.0, "optimizer": "gd"},
            r"^clip_grad_norm=1.0 is not supported with optimizer='gd'",
        ),
        ({"clip_grad_norm": 1.0, "optimizer": "sgd-hess"}, r"optimizer='sgd-hess' \(its Hessian probe"),
    ],
    ids=["zero", "text", "gd", "sgd-hess"],
)
def test_bad_clip_grad_norm_is_refused_by_name(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**settings).validate()


def test_seeded_batches_and_input_shape_take_dict_items():
    ds = tf.padded("train")
    assert input_shape(ds) == (tf.WIDTH,)
    x, y = SeededBatches(ds, torch.device("cpu"), torch.float64).take(torch.tensor([3, 1]))
    assert sorted(x) == ["attention_mask", "input_ids"]
    assert torch.equal(x["input_ids"], torch.stack([ds[3]["input_ids"], ds[1]["input_ids"]]))
    assert torch.equal(y, torch.stack([ds[3]["labels"], ds[1]["labels"]]))


def test_label_smoothing_of_token_labels_is_refused_before_anything_is_written(tmp_path):
    from landscape.data.datasets import DataSpec
    from landscape.models.builders import ModelSpec
    from landscape.training.loop import train

    config = TrainConfig(
        model=ModelSpec("tf_factories:gpt2", {}),
        data=DataSpec("tf_factories:padded"),
        label_smoothing=0.1,
        epochs=1,
        batch_size=8,
    )
    with pytest.raises(
        ConfigError,
        match=r"^label_smoothing=0.1 applies to class labels, but data='tf_factories:padded' has token labels "
        r"\(one per position\); set label_smoothing=0$",
    ):
        train(config, tmp_path / "run", device="cpu", quiet=True)
    assert not (tmp_path / "run").exists()


def test_minmin_training_step_takes_the_dict_pairs_of_its_sampler():
    from landscape.optim.minmin import MinMinBatchSampler, minmin_training_step

    sampler = MinMinBatchSampler(tf.padded("train"), small_batch_size=3, large_batch_size=6, seed=0)
    small, large = sampler.get_pair()
    assert sorted(small) == ["attention_mask", "input_ids", "labels"]
    model = _model()
    opt = make_optimizer("minmin", model, lr=0.01, small_batch_size=3, large_batch_size=6)
    loss = minmin_training_step(model, opt, small, large, LOSS)
    assert loss == pytest.approx(tf.token_mean_of(_model(), small), rel=1e-12)
