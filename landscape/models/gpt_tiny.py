"""A small GPT-2 from ``transformers`` for the character-level ``text`` data: registry name ``gpt-tiny``."""

from __future__ import annotations

from torch import nn

from landscape.errors import ModelError

TRANSFORMERS_EXTRA = "landscape-geometry[transformers]"


def require_transformers(what: str) -> None:
    """Raise ``ModelError`` naming the optional extra when ``transformers`` is not installed."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ModelError(
            f"{what} needs the transformers package, which is not installed: pip install '{TRANSFORMERS_EXTRA}'"
        ) from None


def gpt_tiny(
    vocab_size: int = 128,
    n_positions: int = 64,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
) -> nn.Module:
    """A GPT-2 language model (``GPT2LMHeadModel``) built from a config: random weights, no download.

    The token embedding and the output head are tied, as in GPT-2. Dropout is off, so every pass over
    the data sees the same function (the toolkit's objective and products assume it). With the
    defaults (2 layers, width 64, 4 heads) and the 103 characters of ``text`` it has about 110k
    parameters. Training fills ``vocab_size`` and ``n_positions`` from the data.

    Args:
        vocab_size: number of tokens (the data's vocabulary size).
        n_positions: longest sequence (the data's sequence length).
        n_layer: transformer blocks.
        n_embd: width of the residual stream.
        n_head: attention heads (must divide ``n_embd``).

    Raises:
        ModelError: ``transformers`` is not installed, or ``n_head`` does not divide ``n_embd``.
    """
    require_transformers("model 'gpt-tiny'")
    from transformers import GPT2Config, GPT2LMHeadModel

    if n_head <= 0 or n_embd % n_head:
        raise ModelError(
            f"gpt-tiny's n_head {n_head} must divide its n_embd {n_embd}; e.g. 4 heads of width 64"
        )
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)
