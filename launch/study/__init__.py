"""asymptote.launch.study: the seed paper's whole method as one study (docs/study.md).

- spec.py: the study YAML schema, presets (presets/*.yaml) and loading with clear errors;
- grid.py: the certificate-driven extension of the regularized sweep (pure, over results);
- stages.py: a study turned into ordered stages of job-type points;
- place.py: those points composed into run folders (content-addressed, launch/run_dir.py);
- state.py: each point's state from its run.json or output files;
- cli.py: `asymptote study check | plan | status`.
"""
