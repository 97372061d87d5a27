"""Data: the synthetic interacting-hands benchmark (and, later, InterHand2.6M)."""
