"""Ctrl-C that arrives while a large library is being imported."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT until the block ends, then deliver it.

    A KeyboardInterrupt raised inside `import torch` (or matplotlib) surfaces as unrelated errors from
    half-built modules, or is lost; held back, it arrives as a clean interrupt right after the import.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
