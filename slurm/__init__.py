"""asymptote.slurm"""
