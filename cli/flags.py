"""The one table from library parameter names to command-line flags, and the rewrite that uses it.

Library messages speak Python (``batch_size=0 must be > 0``, ``pass overwrite=True``; see
:mod:`landscape.errors`); a command shows them in its own flags (``--batch-size=0``,
``--overwrite``). :data:`PARAM_FLAGS` holds the flags every command shares, and
:data:`COMMAND_PARAM_FLAGS` those of one command (a flag of its own, or a shared name shown
otherwise). :data:`NOT_FLAGS` lists the names library messages use that no command sets with a flag
(options inside a JSON argument, internals of functions a command calls with fixed values), so
``tests/cli/test_flags.py`` can check that every name a library message uses is in one of them.

A parameter a user can get wrong and a command sets: add its line here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from landscape.errors import LandscapeError


@dataclass(frozen=True)
class Flag:
    """How a command line shows one library parameter.

    Attributes:
        option: the flag (``--batch-size``, ``-o/--out``).
        joiner: between the flag and a value, as each command's messages have always read it:
            ``"="`` (``device='tpu'`` -> ``--device='tpu'``) or ``" "`` (``samples=0`` -> ``--samples 0``).
        unquote: a quoted value loses its quotes (``optimizer='adam'`` -> ``--optimizer adam``).
        metavar: shown where the message gives no value (``to=`` -> ``--to CKPT2``).
        bare: the name standing alone is the flag too (``needs data_dir`` -> ``needs --data-dir``);
            only for names nothing else is called (a name with an underscore).
        after_verb: the one-word name is the flag after a verb of advice (``lower lr`` -> ``lower --lr``).
    """

    option: str
    joiner: str = " "
    unquote: bool = False
    metavar: str = ""
    bare: bool = False
    after_verb: bool = False

    def show(self, value: str) -> str:
        """``name=value`` on the command line (``value`` as the message wrote it, maybe empty)."""
        if value == "":
            return f"{self.option} {self.metavar}" if self.metavar else f"{self.option}{self.joiner}"
        if self.unquote and len(value) >= 2 and value[0] == value[-1] == "'":
            return f"{self.option} {value[1:-1]}"
        return f"{self.option}{self.joiner}{value}"


def _eq(option: str, **kw: bool | str) -> Flag:
    """A flag shown with ``=`` before its value."""
    return Flag(option, "=", **kw)  # type: ignore[arg-type]


PARAM_FLAGS: dict[str, Flag] = {
    "allow_nondeterministic": Flag("--allow-nondeterministic", bare=True),
    "batch_size": _eq("--batch-size", bare=True),
    "data": Flag("--data"),
    "data_dir": Flag("--data-dir", bare=True),
    "device": _eq("--device"),
    "dtype": _eq("--dtype"),
    "eigen_block": Flag("--eigen-block", bare=True),
    "model": Flag("--model", unquote=True),
    "model_kwargs": Flag("--model-kwargs", bare=True),
    "out_dir": Flag("-o/--out", bare=True),
    "overwrite": Flag("--overwrite"),
    "samples": Flag("--samples"),
    "seed": Flag("--seed"),
    "split": Flag("--split"),
    "subset": Flag("--samples"),
    "unsafe_load": Flag("--unsafe-load", bare=True),
}

_SURFACE: dict[str, Flag] = {
    "chunk_size": Flag("--chunk-size"),
    "dir_type": Flag("--dir-type", unquote=True),
    "ignore": Flag("--ignore", unquote=True),
    "mode": Flag("--mode", unquote=True),
    "norm": Flag("--norm", unquote=True),
    "points_per_pass": Flag("--points-per-pass"),
    "precision": Flag("--precision", unquote=True),
}

_SHARPNESS: dict[str, Flag] = {
    "backend": Flag("--backend", unquote=True),
    "bn_mode": Flag("--bn-mode", unquote=True),
    "density_runs": Flag("--density-runs"),
    "density_steps": Flag("--density-steps"),
    "eps": Flag("--eps"),
    "layer": Flag("--layer"),
    "m": Flag("--m"),
    "max_matvecs": Flag("--max-matvecs"),
    "measures": Flag("--measure"),
    "mode": Flag("--hvp-mode", unquote=True),
    "per_batch": Flag("--per-batch"),
    "per_layer": Flag("--per-layer-by", unquote=True),
    "perturb_norm": Flag("--perturb-norm", unquote=True),
    "rho": Flag("--rho"),
    "steps": Flag("--steps"),
    "tol": Flag("--tol"),
    "top_k": Flag("--top-k"),
    "trace_matvecs": Flag("--trace-matvecs"),
    "trace_method": Flag("--trace-method", unquote=True),
    "trace_rtol": Flag("--trace-rtol"),
    "which": Flag("--which", unquote=True),
}

_TRAIN: dict[str, Flag] = {
    **{
        name: _eq("--" + name.replace("_", "-"))
        for name in (
            "momentum",
            "weight_decay",
            "epochs",
            "save_every",
            "seed",
            "label_smoothing",
            "clip_grad_norm",
            "eval_every",
            "track_sharpness",
            "track_top_k",
            "track_samples",
        )
    },
    "augment": Flag("--augment", after_verb=True),
    "batch_size": _eq("--batch-size", bare=True),
    "decomposition": Flag("--decomposition", unquote=True),
    "loss": _eq("--loss", unquote=True),
    "lr": _eq("--lr", after_verb=True),
    "optimizer": Flag("--optimizer", unquote=True),
    "optimizer_kwargs": Flag("--opt-kwargs", bare=True),
    "rho": _eq("--rho", after_verb=True),
    "schedule": _eq("--schedule", unquote=True),
    "warmup_epochs": _eq("--warmup-epochs"),
}

COMMAND_PARAM_FLAGS: dict[str, dict[str, Flag]] = {
    "compare-magnitude": {
        "samples": Flag("--sharpness"),
        "subset": Flag("--sharpness"),
        "include_unfinished": Flag("--include-unfinished", bare=True),
    },
    "connect": {
        "align": Flag("--align"),
        "batch_size": Flag("--batch-size", bare=True),
        "bn": Flag("--bn"),
        "curve": Flag("--curve"),
        "epochs": Flag("--epochs"),
        "lr": Flag("--lr"),
        "out": Flag("-o/--out"),
        "points": Flag("--points"),
    },
    "plot1d": {**_SURFACE, "to": Flag("--to", metavar="CKPT2")},
    "plot2d": {
        **_SURFACE,
        "ckpts": Flag("--ckpts", metavar="B C"),
        "kind": Flag("--kind", unquote=True),
        "levels": Flag("--levels"),
        "trajectory": Flag("--trajectory", metavar="DIR"),
        "vmax": Flag("--vmax"),
        "vmin": Flag("--vmin"),
    },
    "sweep": {"jobs": _eq("--jobs"), "threads": _eq("--threads")},
    "train": _TRAIN,
}
COMMAND_PARAM_FLAGS["compare"] = COMMAND_PARAM_FLAGS["compare-magnitude"]
COMMAND_PARAM_FLAGS["sharpness"] = {
    "blocks": Flag("--blocks", unquote=True),
    "hvp": Flag("--hvp", unquote=True),
}

# Flags a command has for library names its messages still show as Python names, because its tests
# assert them (tests/cli/test_sharpness_cli.py, tests/cli/test_bad_input_analysis.py): moving an entry
# into COMMAND_PARAM_FLAGS turns them into flags, with those tests changed to match.
KEPT_AS_NAMES: dict[str, dict[str, Flag]] = {"sharpness": _SHARPNESS}

# Names library messages use that no command sets with a flag, and why.
NOT_FLAGS: dict[str, str] = {
    **dict.fromkeys(
        [
            "base_optimizer",
            "betas",
            "beta1",
            "create_graph",
            "dampening",
            "damping",
            "damping_int",
            "full_loss",
            "gamma",
            "hg_loader",
            "initial_inner_step",
            "initial_outer_lr",
            "inner_step_size",
            "loss_fn",
            "min_factor",
            "next_batch",
            "outer_lr",
            "partition",
            "r",
            "schedule_type",
            "warmup_steps",
            "weight_lr_power",
        ],
        "an optimizer's option, set inside --opt-kwargs JSON or by the training loop",
    ),
    **dict.fromkeys(
        ["milestones", "p", "padding", "step", "steps_per_epoch", "total_steps"],
        "a recipe's internal, derived from the training flags",
    ),
    **dict.fromkeys(
        [
            "block_size",
            "k",
            "matvecs",
            "max_iter",
            "method",
            "n",
            "ncv",
            "param_indices",
            "rtol",
            "runs",
            "sigma",
        ],
        "a numerical routine's argument, passed from the command's own flags",
    ),
    **dict.fromkeys(
        ["activation", "depth", "length", "num_classes"], "a model factory's argument, inside --model-kwargs"
    ),
    **dict.fromkeys(
        ["rank", "shard", "world_size"], "set by torchrun through the environment, not by a flag"
    ),
    **dict.fromkeys(
        ["every", "explore", "lanczos_tol", "pac_bayes_eps", "pac_bayes_target", "relative_flatness_method"],
        "a library option without a flag (fixed by the command)",
    ),
    **dict.fromkeys(
        [
            "baseline",
            "confidence",
            "floor",
            "format",
            "group",
            "group_by",
            "groups",
            "key",
            "metric",
            "num",
            "num_samples",
            "panel",
            "per_batch_which",
            "quantity",
            "sharpness_samples",
            "shuffle",
            "statistic",
        ],
        "a notebook user's argument of a function the commands call with fixed values",
    ),
    "eval_batch_size": "a training option without a flag (the evaluation batch is --batch-size)",
    "extra": "the options of a measure added through the registry, set in Python (MeasureOptions.extra)",
}

# A parameter name starts a word: not inside a path, a flag, a quoted key or a longer name.
_BEFORE = r"(?<![\w/.'\"-])"
_AFTER = r"(?![\w/.'\"=-])"
# Messages whose wording does not follow the ``name=value`` form.
_SPECIAL = (
    (re.compile(r"\bmodel_kwargs num_classes=(\d+)"), r"""--model-kwargs '{"num_classes": \1}'"""),
    (re.compile(r"\bwithout warmup_epochs\b"), "without --warmup-epochs"),
)
_VERBS = "lower|or|in|another|turn|set"


def with_flags(exc: LandscapeError, command: str | None = None) -> LandscapeError:
    """The same error (its class and attributes, such as a mismatch's ``path``) in ``command``'s flags."""
    flagged = type(exc).__new__(type(exc))
    flagged.__dict__.update(exc.__dict__)
    flagged.args = (as_flags(str(exc), command),)
    return flagged


def flags_of(command: str | None) -> dict[str, Flag]:
    """The flags ``command`` shows library parameters as (the shared ones, then its own)."""
    return {**PARAM_FLAGS, **COMMAND_PARAM_FLAGS.get(command or "", {})}


def _alternatives(names: Iterable[str]) -> str:
    """A regex alternation that tries longer names first (``batch_size`` before ``batch``)."""
    return "|".join(sorted(names, key=len, reverse=True)) or "(?!)"


def as_flags(message: str, command: str | None = None) -> str:
    """Rewrite the library's parameter names in ``message`` as the flags of ``command`` that set them.

    ``device='tpu' is not valid`` -> ``--device='tpu' is not valid``; ``samples=0`` -> ``--samples 0``;
    ``unsafe_load=True`` -> ``--unsafe-load``; ``needs data_dir`` -> ``needs --data-dir``. A message
    already in flags is left as it is, so rewriting twice changes nothing.
    """
    for pattern, replacement in _SPECIAL:
        message = pattern.sub(replacement, message)
    table = flags_of(command)
    names = _alternatives(table)
    message = re.sub(rf"{_BEFORE}({names})=True\b", lambda m: table[m[1]].option, message)
    message = re.sub(rf"{_BEFORE}({names})=('[^']*'|[^\s,;)']*)", lambda m: table[m[1]].show(m[2]), message)
    bare = _alternatives(n for n, f in table.items() if f.bare)
    message = re.sub(rf"{_BEFORE}({bare}){_AFTER}", lambda m: table[m[1]].option, message)
    verbed = _alternatives(n for n, f in table.items() if f.after_verb)
    return re.sub(rf"\b({_VERBS}) ({verbed}){_AFTER}", lambda m: f"{m[1]} {table[m[2]].option}", message)
