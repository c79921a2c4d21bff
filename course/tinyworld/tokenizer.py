"""A byte-level BPE tokenizer trained on the tiny corpus, wrapped as ``PreTrainedTokenizerFast``."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .templates import DEFAULT_TEMPLATE, TEMPLATES

VOCAB_SIZE = 2048
PAD, BOS, EOS = "<pad>", "<s>", "</s>"
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *CHAT_TOKENS]


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on ``texts``; add the chat templates; return a transformers tokenizer.

    The chat questions ("What is ...?") are included in training so their words get merges too;
    the special tokens of the chat formats are in the vocabulary but never in the corpus.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=CHAT_TOKENS, model_max_length=256, padding_side="right",
    )
    fast.chat_template = {"default": TEMPLATES[DEFAULT_TEMPLATE], **TEMPLATES}
    return fast
