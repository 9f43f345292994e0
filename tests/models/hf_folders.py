"""Tiny Hugging Face models saved to folders with ``save_pretrained`` (built from configs, no download)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def tiny_gpt2(seed: int = 0) -> nn.Module:
    """A tied 1-layer GPT-2 language model (vocab 11, width 8)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=8, vocab_size=11, n_positions=8, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config)


def tiny_bert(seed: int = 0) -> nn.Module:
    """A 1-layer BERT sequence classifier with 3 labels."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        vocab_size=20,
        max_position_embeddings=16,
        num_labels=3,
    )
    return BertForSequenceClassification(config)


def saved(model: nn.Module, folder: Path) -> Path:
    """``model`` written to ``folder`` by ``save_pretrained``."""
    model.save_pretrained(str(folder))
    return folder
