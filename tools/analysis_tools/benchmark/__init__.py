"""The benchmark harness of ``tools/analysis_tools/benchmark_attention.py``,
``benchmark_report.py`` and ``profile_backbone.py`` (the scripts put this
folder's parent first on ``sys.path`` and import ``benchmark``).

- :mod:`.suites`: the cases of each ``--suite``.
- :mod:`.attention_cases`, :mod:`.backbone_cases`: what a case builds.
- :mod:`.runner`: runs a case in a fresh process and times it
  (``python tools/analysis_tools/benchmark --case JSON`` runs one).
- :mod:`.timers`: wall-clock timing and peak memory.
- :mod:`.step_timing`: one training step's time by autograd node and module.
- :mod:`.report`: a run's JSON as the Markdown tables of docs/benchmarks.md.
"""
