"""Chat templates of the tiny world: ChatML (the default), Alpaca and a Llama-3-style format.

Assistant turns are wrapped in ``{% generation %}…{% endgeneration %}`` so that
``apply_chat_template(..., return_assistant_tokens_mask=True)`` and trl's ``assistant_only_loss``
can find them. The exact strings each template renders are documented (and tested) in
``RENDERED_EXAMPLE`` below.
"""

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)

CHATML = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

ALPACA = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{{ messages[0]['content'] + '\\n\\n' }}{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{{ '" + ALPACA_PREAMBLE + "\\n\\n' }}{%- set turns = messages -%}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '### Response:\\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\\n\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Response:\\n' }}{%- endif -%}"
)

LLAMA3 = (
    "{{ '<|begin_of_text|>' }}"
    "{%- for message in messages -%}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] + '<|eot_id|>' }}{% endgeneration %}"
    "{%- else -%}"
    "{{ message['content'] + '<|eot_id|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)

TEMPLATES = {"chatml": CHATML, "alpaca": ALPACA, "llama3": LLAMA3}
DEFAULT_TEMPLATE = "chatml"

# The end-of-turn token of each format: generation stops there, and a template that forgets it is a bug.
END_OF_TURN = {"chatml": "<|im_end|>", "alpaca": "</s>", "llama3": "<|eot_id|>"}

EXAMPLE_MESSAGES = [
    {"role": "user", "content": "What is the capital of Peru?"},
    {"role": "assistant", "content": "The capital of Peru is Lima."},
]

# What each template renders for EXAMPLE_MESSAGES (tests check these strings exactly).
RENDERED_EXAMPLE = {
    "chatml": (
        "<|im_start|>user\nWhat is the capital of Peru?<|im_end|>\n"
        "<|im_start|>assistant\nThe capital of Peru is Lima.<|im_end|>\n"
    ),
    "alpaca": (
        ALPACA_PREAMBLE + "\n\n"
        "### Instruction:\nWhat is the capital of Peru?\n\n"
        "### Response:\nThe capital of Peru is Lima.</s>\n\n"
    ),
    "llama3": (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of Peru?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nThe capital of Peru is Lima.<|eot_id|>"
    ),
}
