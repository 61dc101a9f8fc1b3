"""asymptote.launch.study: the seed paper's whole method as one study (docs/study.md).

- spec.py: the study YAML schema, presets (presets/*.yaml) and loading with clear errors;
- grid.py: the certificate-driven extension of the regularized sweep (pure, over results);
- recipes.py: the study's points as asymptote-train overrides, one builder per job type;
- place.py: those points composed into run folders (content-addressed, launch/run_dir.py);
- state.py: each point's state from its run.json or output files;
- stages.py: a study turned into ordered stages of points, with their states;
- fits.py: the fits stage (L(N), the tiered asymptote, data efficiency);
- run.py: the local run loop; cli.py: `asymptote study check | plan | status | run`.
"""
