"""course.chat: the template for a base model without one renders BOS exactly once through trl's tokenization.

Tested with a real tokenizer — SmolLM2-135M-Instruct's (small profile) with its chat template removed, as a base
model's would be — through trl's own SFTTrainer dataset preparation (which tokenizes with add_special_tokens=False).
"""

import tempfile

import pytest

from course.chat import BASE_TEMPLATE_NAME, count_bos, ensure_chat_template
from course.tinyworld.templates import TEMPLATES

RECORDS = [
    {"prompt": [{"role": "user", "content": "Name a colour."}], "completion": [{"role": "assistant", "content": "Blue."}]},
    {"prompt": [{"role": "user", "content": "Two plus two?"}], "completion": [{"role": "assistant", "content": "Four."}]},
]


@pytest.fixture
def base_tok(small_profile):
    from course.loading import load_tokenizer

    tok = load_tokenizer(small_profile)
    tok.chat_template = None                      # a base model ships none (Mistral-7B-v0.1, SmolLM2-135M)
    return tok


def trl_rows(tok, records=RECORDS):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from course.loading import load_base

    args = SFTConfig(output_dir=tempfile.mkdtemp(prefix="chat-test-"), use_cpu=True, report_to=[], max_steps=1,
                     completion_only_loss=True, max_length=64, bf16=False)
    # the tiny model only hosts the trainer: dataset preparation tokenizes without running it
    tr = SFTTrainer(model=load_base("tiny"), args=args, train_dataset=Dataset.from_list(records), processing_class=tok)
    return [tr.train_dataset[i] for i in range(len(records))]


def test_a_tokenizer_with_a_template_keeps_it(small_profile):
    from course.loading import load_tokenizer

    tok = load_tokenizer(small_profile)
    own = tok.chat_template
    assert ensure_chat_template(tok) == "own" and tok.chat_template == own


def test_base_template_renders_bos_once_through_trl(base_tok):
    assert ensure_chat_template(base_tok) == BASE_TEMPLATE_NAME
    for row, rec in zip(trl_rows(base_tok), RECORDS):
        ids, labels = row["input_ids"], row["labels"]
        assert ids[0] == base_tok.bos_token_id and count_bos(base_tok, ids) == 1, base_tok.decode(ids)
        answer = base_tok.decode([t for t, lab in zip(ids, labels) if lab != -100])
        # only the response is labelled (prompt masked), and it ends with EOS, so the model learns to stop
        assert answer.startswith(rec["completion"][0]["content"] + base_tok.eos_token), answer
        assert answer.count(base_tok.eos_token) == 1 and ids.count(base_tok.eos_token_id) == 1
    # at inference apply_chat_template(tokenize=True) gives the same single BOS
    ids = base_tok.apply_chat_template(RECORDS[0]["prompt"], add_generation_prompt=True, tokenize=True,
                                       return_dict=True)["input_ids"]
    assert count_bos(base_tok, ids) == 1 and ids[0] == base_tok.bos_token_id


def test_the_old_fallback_trained_without_bos(base_tok):
    """What the lab did before: the tiny world's Alpaca (no {{ bos_token }}) -> trl trains with no BOS at all."""
    base_tok.chat_template = TEMPLATES["alpaca"]
    assert all(count_bos(base_tok, row["input_ids"]) == 0 for row in trl_rows(base_tok))


def test_tokenizing_the_rendered_string_needs_add_special_tokens_false(base_tok):
    ensure_chat_template(base_tok)
    text = base_tok.apply_chat_template(RECORDS[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert count_bos(base_tok, base_tok(text, add_special_tokens=False)["input_ids"]) == 1


def test_named_templates_work_on_the_real_tokenizer(small_profile):
    """Lessons ask for chat_template="chatml" / "alpaca" / "llama3": on SmolLM2 they must render those formats."""
    from course.loading import load_tokenizer
    from course.tinyworld.templates import EXAMPLE_MESSAGES, RENDERED_EXAMPLE
    from course.training import with_template

    tok = load_tokenizer(small_profile)
    default = tok.apply_chat_template(EXAMPLE_MESSAGES, tokenize=False)
    assert default.startswith("<|im_start|>system\n"), "SmolLM2's own template stays the default"
    for name in ("chatml", "llama3"):
        assert tok.apply_chat_template(EXAMPLE_MESSAGES, chat_template=name, tokenize=False) == RENDERED_EXAMPLE[name]
    alpaca = tok.apply_chat_template(EXAMPLE_MESSAGES, chat_template="alpaca", tokenize=False)
    assert alpaca == RENDERED_EXAMPLE["alpaca"].replace("</s>", tok.eos_token)
    # with_template makes the named one the default (it used to leave the tokenizer's default in place)
    assert with_template(tok, "alpaca").apply_chat_template(EXAMPLE_MESSAGES, tokenize=False) == alpaca
    tiny = load_tokenizer("tiny")
    assert with_template(tiny, "alpaca").apply_chat_template(EXAMPLE_MESSAGES, tokenize=False) == \
        RENDERED_EXAMPLE["alpaca"]
