"""Regression runs on kernel and QEMU upgrades: what a run ran on (`versions`), its results
file (`results`, written by `pytest --lab-results FILE.json`), and two runs compared
(`compare`: newly failing, fixed, flaky, lab errors, metrics beyond the noise)."""
