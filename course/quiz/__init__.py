"""The interview bank: schema, loader (with computed numeric answers), grading, history, FSRS, stats, Anki."""
