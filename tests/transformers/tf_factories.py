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


# -- the rest of the test matrix: a BERT-style classifier, a ViT, torch's TransformerEncoder --------

N_CLASSES = 3
IMAGE = 8  # ViT image side
PATCH = 4


def bert() -> nn.Module:
    """A 1-layer ``BertForSequenceClassification`` from a config (default attention)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=WIDTH,
        type_vocab_size=2,
        num_labels=N_CLASSES,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=PAD_ID,
    )
    return BertForSequenceClassification(config)


class PaddedSequences(Dataset):
    """Right-padded sequence-classification items: ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (two segments) and a class per sequence."""

    def __init__(self, n: int, seed: int) -> None:
        tokens = PaddedTokens(n, seed)
        g = torch.Generator().manual_seed(seed + 100)
        self.input_ids, self.attention_mask = tokens.input_ids, tokens.attention_mask
        self.token_type_ids = (torch.arange(WIDTH)[None, :] >= WIDTH // 2).long().expand(n, -1).clone()
        self.labels = torch.randint(0, N_CLASSES, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids[i],
            "attention_mask": self.attention_mask[i],
            "token_type_ids": self.token_type_ids[i],
            "labels": self.labels[i],
        }


def bert_data(split: str = "train") -> Dataset:
    """16 training and 8 test sequences."""
    return PaddedSequences(16, seed=3) if split == "train" else PaddedSequences(8, seed=4)


def vit() -> nn.Module:
    """A 1-layer ``ViTForImageClassification`` on 8x8 images, 4x4 patches."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=IMAGE,
        patch_size=PATCH,
        num_channels=3,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=N_CLASSES,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ViTForImageClassification(config)


class Images(Dataset):
    """Random images as dict items ``pixel_values``, ``labels``."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.pixel_values = torch.randn(n, 3, IMAGE, IMAGE, generator=g)
        self.labels = torch.randint(0, N_CLASSES, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}


def vit_data(split: str = "train") -> Dataset:
    """16 training and 8 test images."""
    return Images(16, seed=5) if split == "train" else Images(8, seed=6)


class EncoderClassifier(nn.Module):
    """A user's module: embedding, ``nn.TransformerEncoder`` (batch first), mean pool, linear head."""

    def __init__(self, d_model: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


def encoder() -> nn.Module:
    return EncoderClassifier()


class TokenClasses(Dataset):
    """Tensor items: a token sequence and its class."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, VOCAB, (n, WIDTH), generator=g)
        self.y = torch.randint(0, N_CLASSES, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def encoder_data(split: str = "train") -> Dataset:
    """16 training and 8 test sequences."""
    return TokenClasses(16, seed=7) if split == "train" else TokenClasses(8, seed=8)


def gpt2_data(split: str = "train") -> Dataset:
    """``padded`` under the matrix's naming (``NAME_DATA``)."""
    return padded(split)
