# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Day 7 · 1 — Mock interview drills, and when to fine-tune
#
# Sunday in the seed's cadence: *mock interview the 12 questions; whiteboard LoRA*. This notebook has two parts.
#
# 1. **Drill** from the course's interview bank (`quizzes/`, the same questions as `course quiz`, `course drill`
#    and `course review` in a terminal): multiple choice, numeric answers computed by the course's own memory
#    calculator, and open questions graded against the key points an interviewer listens for.
# 2. **Decide**: seed §6 — when to fine-tune, when to use retrieval (RAG), when prompting is enough. You will
#    write the decision rule as code, with the *reason* for each choice, and it is autograded on the seed's
#    table and on new scenarios.

# %% tags=["parameters"]
PROFILE = "tiny"

# %%
from course.notebook import setup

profile = setup(PROFILE)

# %%
from collections import Counter

from course.quiz.loader import load_bank

bank = load_bank()
by_topic = Counter(q.topic for q in bank.questions)
by_type = Counter(q.type for q in bank.questions)
print(f"{len(bank)} questions in {len(by_topic)} topics")
for topic, n in sorted(by_topic.items()):
    print(f"  {topic:<20} {n:>3}")
print("types:", dict(sorted(by_type.items())))

# %% [markdown]
# ## 1. The twelve questions of the mock interview
#
# The seed ends with twelve questions (§7). They are in the bank, tagged `seed-12`, each with a full model
# answer and its key points. Practise them **aloud**, timed: about two minutes each, then compare with the key
# points. In a terminal: `course drill --tag seed-12 --minutes 30`.

# %%
seed12 = bank.select(tags=["seed-12"])
for i, q in enumerate(seed12, 1):
    print(f"{i:>2}. [{q.topic}, day {q.day}] {q.prompt}")
print(f"\n{len(seed12)} questions · {sum(len(q.key_points) for q in seed12)} key points in all")

# %% [markdown]
# One of them with its rubric — this is what "interview-grade" means here: the answer states the mechanism, the
# numbers, and the trade-off, and the key points are the checklist an interviewer ticks.

# %%
q = bank.by_id["lora-derive"]
print(q.prompt, "\n")
print("Key points:")
for k in q.key_points:
    print("  -", k)
print("\nFollow-ups an interviewer may ask:")
for f in q.follow_ups:
    print("  -", f.ask)
    print("    model answer:", f.answer)

# %% [markdown]
# ## 2. Numbers come from the calculator, not from memory
#
# Every numeric question in the bank names the function that computes its answer (`compute:` in the YAML), and
# the loader calls it. The seed's loose figures are replaced by exact ones — here they are, computed now:

# %%
for qid in ("mem-mistral-lora-r16", "mem-mistral-adapter-mib", "mem-70b-adam-moments", "ql-double-quant-bits",
            "lora-compression-4096"):
    nq = bank.by_id[qid]
    print(f"{qid:<26} {nq.answer_text():>18}   ← {nq.compute.fn}")

# %% [markdown]
# ## 3. A drill card
#
# Run the next cell and answer in the widget: *Check* grades, *Next* moves on, *Skip* moves on without scoring.
# The choices are shuffled every time a question is shown, so position and length give nothing away. Open
# questions take a typed answer (or say it aloud); *Check* then shows it beside the model answer with a
# checklist: tick the key points you actually said, and *Check* again. Change `TOPICS` to drill your weak spots
# (`course quiz stats` shows them). Set `record=True` to add your answers to the same history `course review`
# schedules from.

# %%
from course.quiz.widgets import drill_widget

TOPICS = ["lora", "qlora", "dpo", "when_to_finetune"]
drill_widget(bank.select(TOPICS), seed=7, count=8, record=False)

# %% [markdown]
# ## 4. When to fine-tune, use RAG, or just prompt (seed §6)
#
# | Need | Best tool |
# |---|---|
# | Add new factual knowledge | RAG (most cases); fine-tune for very narrow, large, stable domains |
# | Change output format / style | Fine-tune (small SFT) |
# | Improve general capability | Fine-tune (DPO on preferences) |
# | Adapt to a new language | Fine-tune (continued pretraining + SFT) |
# | Per-tenant customization | LoRA adapters per tenant; hot-swap at serving |
# | Personalization | Usually prompt + retrieval; rarely fine-tune |
# | Compliance / safety | Fine-tune (RLHF/DPO with refusal data) |
#
# *A common mistake: trying to fine-tune in facts that change weekly. Use RAG.*
#
# The table hides one more rule every practitioner applies first: **with only a handful of examples of the
# behaviour you want, you cannot fine-tune well — prompt-engineer first**, and collect the examples (they become
# your evaluation set and, later, your training set).
#
# A scenario is described by a few facts. A decision is a tool *and the reason for it* — in an interview the
# reason is what is graded.

# %% nbgrader={"grade": false, "grade_id": "scenario_types", "locked": true, "schema_version": 3, "solution": false, "task": false}
from dataclasses import dataclass

NEEDS = ("knowledge", "format_style", "capability", "language", "per_tenant", "personalization", "safety")
TOOLS = ("rag", "fine-tune", "lora-adapters", "prompt+retrieval", "prompt")
REASONS = {
    "knowledge_changes": "facts that change, or must be cited, belong in retrieval: update the index, not the model",
    "stable_narrow_knowledge": "a very narrow, large and stable domain can be trained into the weights",
    "behaviour": "format and style are behaviour: a small SFT teaches them reliably",
    "preferences": "general quality is easier to judge than to write: preference tuning (DPO)",
    "new_language": "a new language needs continued pretraining on raw text, then SFT",
    "tenant_isolation": "one small adapter per tenant on a shared base, hot-swapped at serving",
    "per_user_context": "per-user data is small, private and changing: put it in the prompt via retrieval",
    "trained_refusals": "robust refusals must be trained with preference data (RLHF/DPO); prompts are brittle",
    "too_little_data": "a handful of examples cannot train a model: prompt-engineer first, collect data",
}
MIN_EXAMPLES = 50          # fewer labelled examples of the desired behaviour than this: do not fine-tune yet


@dataclass(frozen=True)
class Scenario:
    """One product need. ``n_examples`` counts labelled examples of the desired behaviour (None: plenty)."""

    name: str
    need: str                            # one of NEEDS
    changes_often: bool = False          # the facts change weekly or faster
    narrow_stable_domain: bool = False   # knowledge of a very narrow, large, stable domain
    n_examples: int | None = None

    def __post_init__(self):
        assert self.need in NEEDS, f"need must be one of {NEEDS}"


print(len(NEEDS), "needs ·", len(TOOLS), "tools ·", len(REASONS), "reasons")

# %% [markdown]
# ### Exercise — the decision rule
# Write `choose_tool(s)` returning `(tool, reason)` with `tool` in `TOOLS` and `reason` a key of `REASONS`:
#
# - **knowledge**: fine-tune only for a very narrow, large, stable domain whose facts do *not* change often
#   (`stable_narrow_knowledge`); otherwise RAG (`knowledge_changes`).
# - **per_tenant**: LoRA adapters per tenant (`tenant_isolation`); **personalization**: prompt + retrieval
#   (`per_user_context`). Neither is blocked by a lack of examples.
# - every other need is a fine-tune (`behaviour`, `preferences`, `new_language`, `trained_refusals`) — unless
#   fewer than `MIN_EXAMPLES` labelled examples exist, in which case `("prompt", "too_little_data")`.

# %% nbgrader={"grade": false, "grade_id": "choose_tool", "locked": false, "schema_version": 3, "solution": true, "task": false}
def choose_tool(s):
    """Scenario -> (tool, reason): tool in TOOLS, reason a key of REASONS (seed §6)."""
    ### BEGIN SOLUTION
    if s.need == "knowledge":
        if s.narrow_stable_domain and not s.changes_often:
            return "fine-tune", "stable_narrow_knowledge"
        return "rag", "knowledge_changes"
    if s.need == "per_tenant":
        return "lora-adapters", "tenant_isolation"
    if s.need == "personalization":
        return "prompt+retrieval", "per_user_context"
    if s.n_examples is not None and s.n_examples < MIN_EXAMPLES:
        return "prompt", "too_little_data"
    reason = {"format_style": "behaviour", "capability": "preferences", "language": "new_language",
              "safety": "trained_refusals"}[s.need]
    return "fine-tune", reason
    ### END SOLUTION


# %%
SEED_TABLE = [
    Scenario("add product documentation the support bot should know", "knowledge"),
    Scenario("always answer in the house JSON format and tone", "format_style"),
    Scenario("be more helpful across the board", "capability"),
    Scenario("serve users in Icelandic, barely seen in pretraining", "language"),
    Scenario("300 enterprise customers, each with their own conventions", "per_tenant"),
    Scenario("remember each user's preferences and history", "personalization"),
    Scenario("refuse disallowed requests robustly", "safety"),
]
for s in SEED_TABLE:
    tool, reason = choose_tool(s)
    print(f"{s.need:<16} → {tool:<17} because {REASONS[reason]}")

# %% nbgrader={"grade": true, "grade_id": "choose_tool__seed_table", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
expected = {"knowledge": ("rag", "knowledge_changes"), "format_style": ("fine-tune", "behaviour"),
            "capability": ("fine-tune", "preferences"), "language": ("fine-tune", "new_language"),
            "per_tenant": ("lora-adapters", "tenant_isolation"),
            "personalization": ("prompt+retrieval", "per_user_context"),
            "safety": ("fine-tune", "trained_refusals")}
for s in SEED_TABLE:
    got = choose_tool(s)
    assert type(got) is tuple and len(got) == 2 and all(type(x) is str for x in got), \
        f"return a plain (tool, reason) tuple of two str, got {got!r}"
    assert got == expected[s.need], f"{s.name!r} ({s.need}): expected {expected[s.need]}, got {got} — see seed §6"
### BEGIN HIDDEN TESTS
for need, want in expected.items():
    got = choose_tool(Scenario("hidden " + need, need))
    assert type(got) is tuple and all(type(x) is str for x in got) and got == want, need
    # the narrow-stable flag belongs to knowledge alone: on any other need it changes nothing
    for often in (False, True):
        got = choose_tool(Scenario("narrow " + need, need, narrow_stable_domain=True, changes_often=often))
        if need != "knowledge":
            assert type(got) is tuple and got == want, ("narrow_stable_domain/changes_often only matter for knowledge", need)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "choose_tool__knowledge_nuance", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
weekly_prices = Scenario("this week's prices in the support bot", "knowledge", changes_often=True)
assert choose_tool(weekly_prices) == ("rag", "knowledge_changes"), \
    "facts that change weekly are the classic mistake to fine-tune: use retrieval"
statutes = Scenario("a large, stable body of tax statutes for a narrow assistant", "knowledge",
                    narrow_stable_domain=True)
assert choose_tool(statutes) == ("fine-tune", "stable_narrow_knowledge"), \
    "a very narrow, large, stable domain is the seed's exception where knowledge is fine-tuned in"
### BEGIN HIDDEN TESTS
assert choose_tool(Scenario("narrow but daily-changing regulations", "knowledge", changes_often=True,
                            narrow_stable_domain=True)) == ("rag", "knowledge_changes")
assert choose_tool(Scenario("few documents", "knowledge", n_examples=3)) == ("rag", "knowledge_changes")
# knowledge is not blocked by a lack of examples, even in the fine-tuning case
got = choose_tool(Scenario("a few statutes", "knowledge", narrow_stable_domain=True, n_examples=3))
assert type(got) is tuple and all(type(x) is str for x in got) and got == ("fine-tune", "stable_narrow_knowledge")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "choose_tool__new_scenarios", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
twenty_examples = Scenario("a new report format, 20 examples so far", "format_style", n_examples=20)
assert choose_tool(twenty_examples) == ("prompt", "too_little_data"), \
    "20 examples cannot train a model: prompt-engineer first and keep collecting"
assert choose_tool(Scenario("the same format, 2,000 reviewed examples", "format_style", n_examples=2000)) == \
    ("fine-tune", "behaviour"), "with enough examples, format is learned by a small SFT"
### BEGIN HIDDEN TESTS
assert choose_tool(Scenario("tenants with tiny data", "per_tenant", n_examples=5)) == ("lora-adapters", "tenant_isolation")
assert choose_tool(Scenario("users with no data", "personalization", n_examples=0)) == ("prompt+retrieval", "per_user_context")
assert choose_tool(Scenario("refusals, 10 pairs", "safety", n_examples=10)) == ("prompt", "too_little_data")
assert choose_tool(Scenario("refusals, exactly the minimum", "safety", n_examples=MIN_EXAMPLES)) == \
    ("fine-tune", "trained_refusals")
assert choose_tool(Scenario("new language, raw text only", "language")) == ("fine-tune", "new_language")
# the data rule covers every fine-tuning need, zero examples included (0 is not "plenty")
for need, reason in (("format_style", "behaviour"), ("capability", "preferences"), ("language", "new_language"),
                     ("safety", "trained_refusals")):
    for n in (0, 1, MIN_EXAMPLES - 1):
        got = choose_tool(Scenario(f"{n} examples", need, n_examples=n))
        assert type(got) is tuple and all(type(x) is str for x in got) and got == ("prompt", "too_little_data"), (need, n)
    assert choose_tool(Scenario("plenty", need, n_examples=10 * MIN_EXAMPLES)) == ("fine-tune", reason), need
# the threshold is MIN_EXAMPLES, whatever its value (not a hard-coded 50)
_saved_min = MIN_EXAMPLES
try:
    for MIN_EXAMPLES in (5, 500):
        assert choose_tool(Scenario("at the threshold", "capability", n_examples=MIN_EXAMPLES)) == \
            ("fine-tune", "preferences"), MIN_EXAMPLES
        assert choose_tool(Scenario("one short", "capability", n_examples=MIN_EXAMPLES - 1)) == \
            ("prompt", "too_little_data"), MIN_EXAMPLES
finally:
    MIN_EXAMPLES = _saved_min
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Say it like an interviewer wants to hear it
#
# The bank's open question on this decision, and the key points a good answer hits. Answer it aloud, then tick
# them off — or drill it with `course drill --topics when_to_finetune`.

# %%
q = bank.by_id["wtf-finetune-vs-rag"]
print(q.prompt, "\n")
for i, k in enumerate(q.key_points, 1):
    print(f"{i}. {k}")

# %% [markdown]
# ### What to do next
# - `course review` every day: FSRS schedules each question for when you are about to forget it.
# - `course drill --minutes 20` before an interview: random questions weighted toward the topics you answer
#   worst, with follow-ups and a score report.
# - `course quiz export-anki deck.apkg` to take the bank to your phone.
