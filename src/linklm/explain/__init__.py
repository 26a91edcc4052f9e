"""Step E: what the classifiers look at, and how much of their decision the KGEs carry.

    linklm explain --run runs/default [--samples 200]

- attention.py: mean attention from each segment to each segment (CLS, SEP, user, movie, user KGE,
  movie KGE), per model and layer, as heatmaps;
- shapley.py:   exact Shapley values of the user / movie / user-KGE / movie-KGE token groups on the
  log-odds, by masking groups;
- hidden.py:    PCA of the final [CLS] and KGE-slot hidden states, coloured by label and popularity;
- run.py:       loads a run's trained models (never trains), computes all three on a sample of test
  pairs, writes `<run>/explain/*.png` and `explain.json`, and rebuilds the report.
"""
