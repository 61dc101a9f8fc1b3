"""`asymptote demo`: the embedded default and its ensemble and split stages."""
