"""The training loop assembled from parts."""
