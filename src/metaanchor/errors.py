"""Exceptions for user mistakes.

Anything a user can cause (a bad argument, file, record or config value) raises a
``UserError`` subclass whose message names the culprit. The CLI prints it as one
line on stderr and exits with code 2; every other exception is an internal error
(exit code 1).
"""


import re
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A mistake in the user's input; the message names what is wrong."""


class AnchorSpecError(UserError, ValueError):
    """A malformed anchor-set SPEC string or file."""


class DataError(UserError):
    """A bad dataset file, image or annotation record."""


class ConfigError(UserError):
    """An unknown config key or a value of the wrong type."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or belongs to another model/version."""


class OutOfMemory(UserError):
    """The accelerator ran out of memory; the message says which batch size to try."""


def out_of_memory_message(where: str, batch_size: int, option: str) -> str:
    """One line for a CUDA out-of-memory error: where it happened and what to try.

    ``option`` is how the user sets the batch size (``solver.batch_size=`` or ``--batch-size``).
    """
    smaller = max(1, batch_size // 2)
    if batch_size <= 1:
        hint = "batch size is already 1: use a smaller input size (input.size=...) or a smaller backbone"
    else:
        sep = "" if option.endswith("=") else " "
        hint = f"try {option}{sep}{smaller}"
    return f"CUDA out of memory {where} with batch size {batch_size}; {hint}"


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA OOM error (also when raised as a plain RuntimeError by older code paths)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or (
        isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc))


@contextmanager
def out_of_memory_advice(where: str, batch_size: int, option: str, then: str = "") -> Iterator[None]:
    """Turn a CUDA out-of-memory error in the block into ``OutOfMemory`` with :func:`out_of_memory_message`
    (``then``: what to do afterwards, appended); any other exception passes through."""
    try:
        yield
    except Exception as e:
        if is_out_of_memory(e):
            raise OutOfMemory(out_of_memory_message(where, batch_size, option) + then) from None
        raise


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour codes (torch colours some advice)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (libraries often add paragraphs) without terminal colour
    codes, or its type's name."""
    text = ANSI_ESCAPE.sub("", str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__
