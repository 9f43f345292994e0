"""Tiny transformers built from configs (never a download) and padded token data, for the objective tests."""

from __future__ import annotations

import torch
from torch import nn

LENGTHS = (6, 3, 5, 2, 6, 4, 1)  # real lengths of the padded sequences (one with no causal target)
VOCAB = 7
PAD_ID = 0


def gpt2(seed: int = 0) -> nn.Module:
    """A 1-layer GPT-2 language model (about 330 parameters), float64, default attention ('sdpa')."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=4, vocab_size=VOCAB, n_positions=8, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config).double().eval()


def padded_tokens(lengths: tuple[int, ...] = LENGTHS, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded sequences: ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding)."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(1, VOCAB, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, PAD_ID))
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_mean(logits: torch.Tensor, labels: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """The mean over counted tokens written out by hand: -(1/M) sum log softmax(logits)[label]."""
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    counted = labels != -100
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * counted).sum() / counted.sum()


def dense_reference(model: nn.Module, data: dict[str, torch.Tensor], *, causal: bool):
    """(loss, gradient, Hessian) of the token mean of all sequences at once, over the flat parameters."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p.detach() for _, p in model.named_parameters() if p.requires_grad]
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]
    inputs = {k: v for k, v in data.items() if k != "labels"}

    def f(flat: torch.Tensor) -> torch.Tensor:
        d = {n: c.view(s) for n, c, s in zip(names, torch.split(flat, sizes), shapes)}
        out = torch.func.functional_call(model, d, (), inputs, strict=False)
        return token_mean(out.logits, data["labels"], causal=causal)

    flat0 = torch.cat([p.reshape(-1) for p in params])
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        loss = f(flat0)
        grad = torch.autograd.functional.jacobian(f, flat0)
        H = torch.autograd.functional.hessian(f, flat0)
    return float(loss), grad, (H + H.T) / 2
