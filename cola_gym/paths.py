"""Where cola-gym keeps files it makes on the user's machine."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache directory: ``$COLA_GYM_CACHE``, else ``$XDG_CACHE_HOME/cola-gym``, else ``~/.cache/cola-gym``."""
    explicit = os.environ.get("COLA_GYM_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cola-gym"


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is meant as a filesystem path rather than a Hugging Face Hub id.

    Hub ids are ``name`` or ``owner/name``; anything absolute, relative (``./``, ``../``),
    home-based (``~``) or with more than one ``/`` is a path.

    >>> looks_like_path("meta-llama/Llama-3.1-8B"), looks_like_path("./ckpt"), looks_like_path("/a/b")
    (False, True, True)
    """
    return (
        name.startswith(("/", "./", "../", "~", "."))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
        or Path(name).exists()
    )
