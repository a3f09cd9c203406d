"""Training and honest evaluation for the MER workbench (see docs/training.md)."""
