"""Supervised learning for the ES-vs-SGD study (issue 14): IDX data, node-shared datasets, CNN/MLP
classifiers over a flat theta with an exact backward pass, the Adam baseline and the study tools."""
