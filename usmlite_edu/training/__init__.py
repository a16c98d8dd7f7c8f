"""Compression-aware fine-tuning: the trainer, compile-only memory plans, the
reduced-scale reproduction of the paper's tables and the claims it makes from them."""
