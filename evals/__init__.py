"""asymptote.evals"""
