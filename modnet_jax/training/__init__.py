"""The training loop, its logging, and initialisation from pretrained variables."""
