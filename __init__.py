"""asymptote: data-constrained pre-training research on HPC schedulers.

The repository root is this package; its subpackages are

- ``asymptote.launch``: Hydra apps, the training loop and one module per job type;
- ``asymptote.models``: Megatron-Core model presets, parallel state, the CPU compatibility layer;
- ``asymptote.data``: corpora, tokenizers, indexed datasets, seed-token budgets and epochs;
- ``asymptote.evals``: validation losses, log-prob stores, the lm-eval adapter;
- ``asymptote.analysis``: TensorBoard ingest and scaling-law fits (never imports torch);
- ``asymptote.slurm``: everything scheduler specific.
"""

__version__ = "0.1.0"
