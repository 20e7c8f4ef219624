"""Grading: what a run of checks did and what it is worth.

`labfixtures.grading.steps`: a recorder of named steps (title, outcome, evidence), usable
from any test.
"""
