"""The two fidelities every stage knows (docs/method.md, "Fidelity").

``released`` (the default everywhere) reproduces the authors' released pipeline, quirks and
arithmetic included, because it produced the published numbers; ``corrected`` fixes each known
quirk. Each stage's config documents what the switch changes in that stage.
"""
FIDELITIES = ("released", "corrected")
