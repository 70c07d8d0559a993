"""Prompt schemes: how a (context, response) pair becomes text the model reads.

A scheme renders the prompt (everything up to where the answer starts) and the text put before
the response. Prompt and response are tokenised separately and concatenated, so the boundary
between context (masked out of the loss) and response (trained) is exact, and generation
sees exactly the prompt tokens training saw.

- ``chat`` (default for ``part4_sft.sft``): the reserved role tokens, ``<|user|>ctx<|assistant|>``.
  The pretraining corpus never contains them: the pretrained model has to be taught the format.
- ``qa``: ``Question: ctx\\nAnswer: response`` (the experiment grid's Q/A scheme).
- ``instruction``: ``### Instruction:\\nctx\\n### Response:\\nresponse``.

A conversation (``encode_conversation``) is each user turn in the scheme's prompt and each
assistant turn as its response followed by EOS, in order; a system message comes first as plain
text (``System: ...\\n``; in ``chat``, the text itself before the first ``<|user|>``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from part3_pretrain.tokenizer import ASSISTANT, SPECIAL_RE, USER, RetailTokenizer


def _split_specials(template_part: str) -> list[str]:
    """A template fragment split into ordinary text and special-token pieces."""
    return [p for p in re.split(f"({SPECIAL_RE.pattern})", template_part) if p]


@dataclass(frozen=True)
class PromptScheme:
    name: str
    template: str  # contains "{context}"
    response_prefix: str = ""  # put before the response (e.g. the space after "Answer:")
    system_template: str = "System: {system}\n"  # a conversation's system message, before its first turn

    def prompt(self, context: str) -> str:
        return self.template.format(context=context)

    def encode_prompt(self, tok: RetailTokenizer, context: str) -> list[int]:
        """Prompt ids: the template's role tokens become their special ids; the context, and the
        ordinary template text joined to it, is encoded as text (a literal ``<|assistant|>``
        typed by a customer stays characters)."""
        before, after = self.template.split("{context}")
        ids: list[int] = []
        text = ""
        for piece in [*_split_specials(before), None, *_split_specials(after)]:
            if piece is None:
                text += context
            elif SPECIAL_RE.fullmatch(piece):
                ids += tok.encode(text) + [tok.special_id(piece)]
                text = ""
            else:
                text += piece
        return ids + tok.encode(text)

    def response(self, response: str) -> str:
        return self.response_prefix + response

    def encode_response(self, tok: RetailTokenizer, response: str) -> list[int]:
        """A reply's ids as trained: the response text, then EOS."""
        return tok.encode(self.response(response)) + [tok.eos_id]

    def encode_conversation(self, tok: RetailTokenizer, turns: Sequence[dict]) -> list[tuple[str, list[int]]]:
        """``(role, ids)`` per message of a conversation: a system message as plain text
        (``system_template``), each user turn as this scheme's prompt, each assistant turn as its
        response + EOS. A single-turn conversation gives exactly a pair's prompt and reply ids."""
        chunks = []
        for turn in turns:
            if turn["role"] == "system":
                ids = tok.encode(self.system_template.format(system=turn["content"]))
            elif turn["role"] == "user":
                ids = self.encode_prompt(tok, turn["content"])
            else:
                ids = self.encode_response(tok, turn["content"])
            chunks.append((turn["role"], ids))
        return chunks


SCHEMES: dict[str, PromptScheme] = {
    "chat": PromptScheme("chat", USER + "{context}" + ASSISTANT, system_template="{system}"),
    # The space belongs to the response: byte-level BPE glues a leading space to the next word.
    "dialogue": PromptScheme("dialogue", "Customer: {context}\nAgent:", " "),
    "qa": PromptScheme("qa", "Question: {context}\nAnswer:", " "),
    "instruction": PromptScheme("instruction", "### Instruction:\n{context}\n### Response:\n"),
}


def get_scheme(name: str) -> PromptScheme:
    if name not in SCHEMES:
        raise ValueError(f"unknown prompt scheme {name!r}; choose from {sorted(SCHEMES)}")
    return SCHEMES[name]
