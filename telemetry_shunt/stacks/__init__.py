"""Deployable stacks: thin wiring of the constructs. Only ``app.py`` knows about context and environments."""
