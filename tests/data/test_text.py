"""The embedded ``text`` data: pydoc_data's characters in fixed seeded sequences, as dict items; and the
data spec's ``kwargs`` (recorded only when there are some, passed to the sources that take them)."""

from __future__ import annotations

import pytest
import torch

from landscape.data.datasets import DataSpec, load_dataset
from landscape.data.text import TEXT_TEST_FRACTION, corpus_vocab, text_corpus, text_dataset
from landscape.errors import DataError


def test_the_corpus_is_the_standard_library_help_text():
    text = text_corpus()
    assert len(text) > 400_000  # ~465k characters on CPython 3.11
    assert "The " in text and len(corpus_vocab(text)) == len(set(text))


@pytest.mark.parametrize("seq_len", [64, 128], ids=["default", "128"])
def test_the_split_sizes_follow_the_sequence_length(seq_len):
    n = len(text_corpus()) // seq_len
    train = text_dataset("train", seq_len=seq_len)
    test = text_dataset("test", seq_len=seq_len)
    assert len(test) == round(TEXT_TEST_FRACTION * n) and len(train) + len(test) == n
    assert train.ids.shape == (len(train), seq_len)
    # the two splits are disjoint pieces of one cut: together they hold every sequence once
    every = torch.cat([train.ids, test.ids])
    cut = torch.tensor([train.vocab.index(c) for c in text_corpus()[: n * seq_len]]).view(n, seq_len)
    assert sorted(map(tuple, every.tolist())) == sorted(map(tuple, cut.tolist()))


def test_the_split_is_fixed_and_items_follow_the_hugging_face_convention():
    a, b = text_dataset("train"), text_dataset("train")
    assert torch.equal(a.ids, b.ids)
    item = a[3]
    assert set(item) == {"input_ids", "attention_mask", "labels"}
    assert item["input_ids"].dtype == torch.int64 and item["input_ids"].shape == (64,)
    assert torch.equal(item["labels"], item["input_ids"])  # the causal shift is the objective's job
    assert torch.equal(item["attention_mask"], torch.ones(64, dtype=torch.int64))
    assert a.decode(item["input_ids"]) in text_corpus()


def test_the_vocabulary_is_recorded_in_the_data_spec_and_reused():
    spec = DataSpec("text", split="test")
    ds = load_dataset(spec)
    vocab = corpus_vocab(text_corpus())
    assert spec.kwargs == {"seq_len": 64, "vocab": vocab} and ds.num_classes == len(vocab)
    again = DataSpec.from_dict(spec.to_dict())
    assert again.kwargs == spec.kwargs and torch.equal(load_dataset(again).ids, ds.ids)
    # a recorded vocabulary without some characters: those are dropped, the ids keep their meaning
    fewer = vocab.replace("e", "")
    ids = text_dataset("train", vocab=fewer).ids
    assert int(ids.max()) < len(fewer) and fewer.index("f") in ids


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq_len": 1}, r"seq_len 1 must be an integer >= 2"),
        ({"seq_len": "64"}, r"seq_len '64' must be an integer"),
        ({"seq_len": 10**7}, r"seq_len 10000000 leaves fewer than 2 sequences"),
        ({"vocab": "aab"}, r"vocab 'aab' must be a string of distinct characters"),
        ({"width": 3}, r"dataset 'text' takes the data kwargs seq_len and vocab, not width"),
    ],
    ids=["short", "string", "too-long", "repeated", "unknown"],
)
def test_bad_text_kwargs_are_refused_in_one_line(kwargs, match):
    with pytest.raises(DataError, match=match):
        load_dataset(DataSpec("text", kwargs=kwargs))


def test_the_data_spec_writes_kwargs_only_when_there_are_some():
    assert "kwargs" not in DataSpec("digits").to_dict()
    assert DataSpec.from_dict({"name": "digits"}).kwargs == {}
    with pytest.raises(DataError, match=r"dataset 'digits' takes no keyword arguments, got \{'seq_len': 8\}"):
        load_dataset(DataSpec("digits", kwargs={"seq_len": 8}))


def make_sized(split: str = "train", n: int = 3):
    """A dataset factory with a keyword of its own."""
    return torch.utils.data.TensorDataset(torch.zeros(n, 2), torch.zeros(n, dtype=torch.int64))


def test_a_factory_gets_the_data_kwargs():
    spec = DataSpec(f"{__name__}:make_sized", kwargs={"n": 5})
    assert len(load_dataset(spec)) == 5
    with pytest.raises(DataError, match=r"does not take the data kwargs \{'m': 5\}"):
        load_dataset(DataSpec(f"{__name__}:make_sized", kwargs={"m": 5}))
