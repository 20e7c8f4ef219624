"""Grading: what a run of checks did and what it is worth.

`labfixtures.grading.steps`: a recorder of named steps (title, outcome, evidence), usable
from any test.

Points and feedback (`labctl grade`, the plugin's `--lab-grade-out`): `model` (checks,
outcomes, findings, a student's grade.json), `markers` (points, after, hidden), `messages`
(the English and French catalogue a teacher extends), `probes` (probes that record
evidence and fail with a finding), `feedback` (feedback.md/.html), `gradescope`
(results.json), `evidence` (evidence.json), `outputs` (a student's folder), `roster` and
`classrun` (a class in parallel, grades.csv, shards and merge).
"""
