"""Data sources: synthetic fingerprints (images with ground truth) and dataset helpers."""
