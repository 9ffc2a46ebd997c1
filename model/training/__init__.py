"""Training: the network, its input normalisation, the training loop and its checkpoint."""
