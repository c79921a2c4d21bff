"""Slow given cells show a progress bar: course.generation.generate (and evaluate_exact_match) move the course's
stdout bar once per generated token, without changing what is generated."""

import course.generation as G
from course.loading import load_base, load_tokenizer


def test_token_progress_bar_leaves_generations_unchanged(monkeypatch, capsys):
    tok, model = load_tokenizer("tiny"), load_base("tiny")
    capsys.readouterr()                 # loading's own output (transformers' weight-loading bar) is not generation's
    prompts = [G.chat_prompt(tok, q) for q in ("What is the capital of France?", "Plural of cat?", "2 + 3 =")]
    plain = G.generate(model, tok, prompts, max_new_tokens=4, batch_size=2, progress=False)
    assert capsys.readouterr().out == ""
    assert G.generate(model, tok, prompts, max_new_tokens=4, batch_size=2) == plain   # default: no bar outside a notebook
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(G, "BAR_DELAY", 0)
    assert G.generate(model, tok, prompts, max_new_tokens=4, batch_size=2, progress="answering") == plain
    out = capsys.readouterr()
    assert "answering" in out.out and "8/8" in out.out and out.err == ""          # 2 batches × 4 tokens, on stdout
    monkeypatch.setattr(G, "_in_notebook", lambda: True)
    G.generate(model, tok, prompts, max_new_tokens=4, batch_size=2)
    assert "generating" in capsys.readouterr().out                               # in a notebook: on by default
