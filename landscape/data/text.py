"""A character-level text corpus that ships with every Python: registry name ``text``.

The corpus is the English text of the standard library's ``pydoc_data.topics`` (the help topics,
about 465k characters; no download), its topics joined in sorted order. It is cut into
non-overlapping sequences of ``seq_len`` characters (the tail shorter than one sequence is dropped),
and a fixed seeded permutation puts ``TEXT_TEST_FRACTION`` of them in the test split.

Items are dicts in the Hugging Face convention: ``input_ids``, ``attention_mask`` (all ones) and
``labels`` equal to ``input_ids`` (the causal shift is the objective's job). Token ids index the
vocabulary, the sorted characters of the corpus; it is recorded in the data spec (``vocab``) because
the help text, and so its characters, change between Python versions. Given a ``vocab``, the
characters of this Python's corpus outside it are dropped before cutting.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from landscape.data.common import check_split
from landscape.errors import DataError

TEXT_SEQ_LEN = 64
TEXT_TEST_FRACTION = 0.1
TEXT_SPLIT_SEED = 0


def text_corpus() -> str:
    """The English text of ``pydoc_data.topics``, its topics joined by blank lines in sorted order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def corpus_vocab(text: str) -> str:
    """The sorted distinct characters of ``text``: character ``vocab[i]`` has token id ``i``."""
    return "".join(sorted(set(text)))


class TextDataset(Dataset):
    """Fixed-length character sequences as Hugging Face style dict items.

    Attributes:
        ids: ``(N, seq_len)`` int64 token ids.
        vocab: the characters the ids index.
        spec_kwargs: what the data spec records (``seq_len``, ``vocab``), so a run can be redone.
    """

    def __init__(self, ids: torch.Tensor, vocab: str) -> None:
        self.ids = ids
        self.vocab = vocab
        self.spec_kwargs: dict[str, Any] = {"seq_len": int(ids.shape[1]), "vocab": vocab}

    @property
    def num_classes(self) -> int:
        """The vocabulary size (the number of outputs a language model on this data needs)."""
        return len(self.vocab)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    def decode(self, ids: torch.Tensor) -> str:
        """The characters of a sequence of token ids."""
        return "".join(self.vocab[int(i)] for i in ids)


def _check_seq_len(seq_len: object) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise DataError(
            f"the text data's seq_len {seq_len!r} must be an integer >= 2 (characters per sequence)"
        )
    return seq_len


def text_dataset(
    split: str = "train", *, seq_len: int = TEXT_SEQ_LEN, vocab: str | None = None
) -> TextDataset:
    """The ``split`` of the corpus in sequences of ``seq_len`` characters.

    Args:
        split: ``train`` (90% of the sequences) or ``test`` (10%), a fixed seeded split.
        seq_len: characters per sequence (the model's context length).
        vocab: the characters the token ids index (default: this corpus's own, sorted).

    Raises:
        DataError: a bad ``seq_len``, a ``vocab`` with repeated characters, or too little text.
    """
    check_split(split)
    seq_len = _check_seq_len(seq_len)
    text = text_corpus()
    if vocab is None:
        vocab = corpus_vocab(text)
    if not isinstance(vocab, str) or len(set(vocab)) != len(vocab) or not vocab:
        raise DataError(
            f"the text data's vocab {vocab!r:.60} must be a string of distinct characters; omit it to use "
            "the corpus's own"
        )
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = torch.tensor([index[ch] for ch in text if ch in index], dtype=torch.int64)
    n = ids.numel() // seq_len
    if n < 2:
        raise DataError(
            f"the text data's seq_len {seq_len} leaves fewer than 2 sequences; give a shorter one"
        )
    sequences = ids[: n * seq_len].view(n, seq_len)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(TEXT_SPLIT_SEED))
    n_test = max(1, int(round(TEXT_TEST_FRACTION * n)))
    chosen = torch.sort(perm[n_test:] if split == "train" else perm[:n_test]).values
    return TextDataset(sequences[chosen].contiguous(), vocab)


TEXT_KWARGS = ("seq_len", "vocab")


def read_text(split: str, **kwargs: Any) -> TextDataset:
    """:func:`text_dataset` with a data spec's kwargs, checked to be ``seq_len`` and ``vocab`` only.

    Raises:
        DataError: any other keyword, or a bad value (see :func:`text_dataset`).
    """
    unknown = sorted(set(kwargs) - set(TEXT_KWARGS))
    if unknown:
        raise DataError(
            f"dataset 'text' takes the data kwargs {' and '.join(TEXT_KWARGS)}, not {', '.join(unknown)}"
        )
    return text_dataset(split, **kwargs)
