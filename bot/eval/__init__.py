"""`fixloop eval`: compare agent workflows (models, providers, prompts, tools, limits) on real tasks, with
hidden grading, and say whether the difference is significant (`suite`, `run`, `report`, `stats`)."""
