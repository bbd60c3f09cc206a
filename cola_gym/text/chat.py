"""Chat text: the one place prompts and training examples are rendered.

Envs (:class:`TextCodec`, through :mod:`cola_gym.envs.episode`), training data and the CLI
all write a conversation as text here, so a model sees at training time exactly what an env
shows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Message = Mapping[str, str]
"""A chat message: ``{"role": "user" | "assistant" | "system", "content": text}``."""


class TextCodec:
    """The tokenizer's side of episodes: chat rendering, encoding, decoding, stop tokens."""

    def __init__(self, tokenizer: Any, stop_ids: Iterable[int]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(int(i) for i in stop_ids)
        self.has_chat_template = getattr(tokenizer, "chat_template", None) is not None

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text of ``messages``, ready for the assistant's turn."""
        return render_chat(self.tokenizer, messages)

    def encode(self, text: str, first: bool = False) -> list[int]:
        """Token ids of ``text``; ``first``: the start of a context (special tokens without a template)."""
        return list(self.tokenizer(text, add_special_tokens=first and not self.has_chat_template)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True) if ids else ""


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
