"""LLM fine-tuning course: the offline tiny world, profiles, data and template helpers, evaluation,
the memory calculator, authoring/grading tools and the interview bank. Infrastructure only: no
lesson's answer lives here."""

__version__ = "0.1.0"
