"""Chat text: the one place prompts and training examples are rendered.

Envs (:class:`TextCodec`, through :mod:`cola_gym.envs.episode`), training data and the CLI
all write a conversation as text here, so a model sees at training time exactly what an env
shows it.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Message = Mapping[str, str]
"""A chat message: ``{"role": "user" | "assistant" | "system", "content": text}``."""


class TextCodec:
    """The tokenizer's side of episodes: chat rendering, encoding, decoding, stop tokens.

    Decoding a growing turn costs constant work per token where the tokenizer allows it:
    for byte-level BPE tokenizers without clean-up (GPT-2's scheme, the Llama 3 and SmolLM
    families) a turn's text is the UTF-8 reading of its tokens' bytes, so :meth:`extend`
    appends one token's bytes instead of decoding the whole turn again. Other tokenizers
    decode the whole turn each time; both give ``tokenizer.decode(ids, skip_special_tokens=True)``.
    """

    def __init__(self, tokenizer: Any, stop_ids: Iterable[int]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(int(i) for i in stop_ids)
        self.has_chat_template = getattr(tokenizer, "chat_template", None) is not None
        self.token_bytes = byte_table(tokenizer)
        """Each token's bytes (``b""`` for special tokens), or ``None`` where decoding is not byte-level."""

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text of ``messages``, ready for the assistant's turn."""
        return render_chat(self.tokenizer, messages)

    def encode(self, text: str, first: bool = False) -> list[int]:
        """Token ids of ``text``; ``first``: the start of a context (special tokens without a template)."""
        return list(self.tokenizer(text, add_special_tokens=first and not self.has_chat_template)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens."""
        if not ids:
            return ""
        if self.token_bytes is not None:
            table = self.token_bytes
            return b"".join(table[i] for i in ids).decode("utf-8", "replace")
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def extend(self, turn_bytes: bytes, turn_ids: Sequence[int]) -> tuple[bytes, str]:
        """``(bytes, text)`` of a turn whose last token ``turn_ids[-1]`` was just added to a
        turn of ``turn_bytes``: one token's work for byte-level tokenizers (``bytes`` is then
        the turn's bytes, else empty)."""
        if self.token_bytes is None:
            return b"", self.decode(turn_ids)
        grown = turn_bytes + self.token_bytes[turn_ids[-1]]
        return grown, grown.decode("utf-8", "replace")


_BYTE_TABLES: weakref.WeakKeyDictionary[Any, list[bytes] | None] = weakref.WeakKeyDictionary()


def byte_table(tokenizer: Any) -> list[bytes] | None:
    """Each token's bytes, for tokenizers whose ``decode(..., skip_special_tokens=True)`` is the
    UTF-8 reading (invalid bytes replaced) of their tokens' bytes; ``None`` for others.

    Byte-level BPE writes each byte as one printable character (GPT-2's ``bytes_to_unicode``);
    special tokens decode to nothing, other added tokens to their text. The table is built once
    per tokenizer and checked against ``decode`` on every token before it is trusted.
    """
    try:
        return _BYTE_TABLES[tokenizer]
    except (KeyError, TypeError):
        pass
    table = _build_byte_table(tokenizer)
    with contextlib.suppress(TypeError):  # not weakly referenceable: built again next time
        _BYTE_TABLES[tokenizer] = table
    return table


def _build_byte_table(tokenizer: Any) -> list[bytes] | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.decoder).__name__ != "ByteLevel":
        return None
    if getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return None
    byte_of = {char: byte for byte, char in _bytes_to_unicode().items()}
    added = getattr(tokenizer, "added_tokens_decoder", {})
    special = set(getattr(tokenizer, "all_special_ids", ()))
    table = []
    for index, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if index in special or (index in added and added[index].special):
            table.append(b"")
        elif index in added or piece is None:
            table.append((added[index].content if index in added else "").encode("utf-8"))
        elif all(char in byte_of for char in piece):
            table.append(bytes(byte_of[char] for char in piece))
        else:
            return None
    every = list(range(len(table)))
    if tokenizer.decode(every, skip_special_tokens=True) != b"".join(table).decode("utf-8", "replace"):
        return None
    return table


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map of byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The one prompt renderer of envs and training data: the chat template when there is one."""
    if getattr(tokenizer, "chat_template", None) is not None:
        return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))
    return "".join(f"{m['content']}\n" for m in messages)


def render_exchange(tokenizer: Any, messages: Sequence[Message], response: str) -> tuple[str, str]:
    """``(prompt text, response text)`` of a prompt and its answer, as a decoder is trained on them.

    The prompt is :func:`render_chat`'s; the response is what the chat template appends for
    the assistant's turn (its end-of-turn marker included), or the response and the
    tokenizer's end-of-sequence token without a template.
    """
    prompt = render_chat(tokenizer, messages)
    if getattr(tokenizer, "chat_template", None) is None:
        return prompt, response + (tokenizer.eos_token or "")
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": response}], tokenize=False)
    return prompt, full[len(prompt) :] if full.startswith(prompt) else response
