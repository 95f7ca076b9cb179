"""The study's report: ``<out>/README.md``, ``<out>/results.json`` and ``<out>/plots/*.png``.

Everything is read back from the study manifest (``manifest.json``) and the run
store, so the report can be rewritten at any time (``study --report-only``) and
shows a partial study as partial. Plots use matplotlib's object API with the
Agg canvas (no pyplot, no display, no global state).

Sections: commands, hardware, data and budget, steps with wall times, the
backbone check, per task the test table in the layout of the paper's Tables
6-11 with the learned prompts, validation next to test, and validation curves;
the ablations (Tables 12-13, Fig. 3, Fig. 4 with Table 3's time per round); and
"Differences from the paper", generated from the numbers.

Modules, one job each: ``format`` (labels, the paper's numbers, text helpers),
``study_data`` (reading manifest and store once), ``tables`` (markdown tables),
``plots`` (PNG figures), ``claims`` ("Differences from the paper") and
``document`` (the README, section by section).
"""

from __future__ import annotations

from .document import write_report

__all__ = ["write_report"]
