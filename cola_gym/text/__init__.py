"""Text pieces shared by envs, tasks and training: chat rendering, the answer protocol, numbers, JSON lines.

- :mod:`~cola_gym.text.chat`: :class:`~cola_gym.text.chat.TextCodec` and the one chat renderer;
- :mod:`~cola_gym.text.answers`: the ``<think>``/``<answer>`` protocol as one value
  (:class:`~cola_gym.text.answers.AnswerProtocol`) and answer extractors;
- :mod:`~cola_gym.text.numbers`: reading numbers out of text;
- :mod:`~cola_gym.text.jsonl`: reading untrusted JSON-lines files row by row.
"""
