"""The search: from a stored search to a ranked leaderboard and its scale-up stage.

Modules by job (import the one you need; this package imports nothing, so reading searches does not load Optuna):

- :mod:`~brainsearch.search.submission`: submitting and reading searches (create, stored space, run options,
  progress, delete) - what the API and the dashboard use; no Optuna, no torch;
- :mod:`~brainsearch.search.documents`: the documents a user reads (a search, its progress, a leaderboard row, a
  trial, the scale-up report), built once for the API, the dashboard and the CLI;
- :mod:`~brainsearch.search.standings`: the one rule for a search's reference baseline and for the ranking of its
  trials;
- :mod:`~brainsearch.search.driver`: the one loop that runs a search's stages on an executor;
  :mod:`~brainsearch.search.stages`: the stages (baselines, trials, re-evaluation, scale-up), one job generator
  each; :mod:`~brainsearch.search.study`: the bridge to the search's Optuna study (public Optuna API only);
- :mod:`~brainsearch.search.executor`: the executor protocol; :mod:`~brainsearch.search.local` (worker processes)
  and :mod:`~brainsearch.search.ray_executor` (Ray actors) implement it;
- :mod:`~brainsearch.search.jobs`: what an executor runs (trial and scale-up jobs, resources, outcomes);
- :mod:`~brainsearch.search.runner`: what a worker runs - one job, trained and recorded;
- :mod:`~brainsearch.search.pruning`: the pruning judge (step-time constraint, quarter-budget rule, Optuna pruners);
- :mod:`~brainsearch.search.samplers` and :mod:`~brainsearch.search.evolution`: Optuna samplers by name, with the
  paper's regularized evolution; :mod:`~brainsearch.space.baselines`: the GLaM and dense reference blocks;
- :mod:`~brainsearch.search.scaleup` (which runs the scale-up stage trains), :mod:`~brainsearch.search.scaleup_report`
  (what it reports) and :mod:`~brainsearch.search.scaling` (scaling-law fits).

Optuna's storage, with the repository's retries, is in :mod:`brainsearch.storage.optuna_storage`.
"""
