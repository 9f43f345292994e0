"""A user's factory module, as ``--model tf_factories:gpt2`` / ``--data tf_factories:padded`` would name it.

A 1-layer GPT-2 built from a config (default attention, no wrapper, never a download) and a dataset of
padded dict items in the Hugging Face convention (``input_ids``, ``attention_mask``, ``labels`` with -100
on padding), of different real lengths so that sequence and token weighting differ.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

VOCAB = 11
WIDTH = 8  # padded sequence length
PAD_ID = 0


def gpt2(n_layer: int = 1, n_embd: int = 16) -> nn.Module:
    """A small GPT-2 language model (``GPT2LMHeadModel``, tied head) from a config."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=n_layer,
        n_head=2,
        n_embd=n_embd,
        vocab_size=VOCAB,
        n_positions=WIDTH,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


class PaddedTokens(Dataset):
    """Right-padded token sequences as dict items; a fixed seeded draw per split."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(2, WIDTH + 1, (n,), generator=g)
        ids = torch.randint(1, VOCAB, (n, WIDTH), generator=g)
        mask = torch.arange(WIDTH)[None, :] < lengths[:, None]
        self.input_ids = torch.where(mask, ids, torch.full_like(ids, PAD_ID))
        self.attention_mask = mask.long()
        self.labels = torch.where(mask, ids, torch.full_like(ids, -100))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids[i],
            "attention_mask": self.attention_mask[i],
            "labels": self.labels[i],
        }


def padded(split: str = "train") -> Dataset:
    """24 training and 12 test sequences."""
    return PaddedTokens(24, seed=1) if split == "train" else PaddedTokens(12, seed=2)


# -- references written out by hand (float64) ------------------------------------------------------


def stacked(ds: Dataset) -> dict[str, torch.Tensor]:
    """Every item of ``ds`` in one dict batch."""
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def token_mean(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A causal LM's mean over counted tokens: -(1/M) sum log softmax(logits[:, t])[labels[:, t + 1]]."""
    logits, labels = logits[:, :-1], labels[:, 1:]
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    counted = labels != -100
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * counted).sum() / counted.sum()


def token_mean_of(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """The token mean of ``model`` (cast to float64) on a dict batch, from the model's own forward."""
    model = model.double().eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        return float(token_mean(model(**inputs).logits, batch["labels"]))
