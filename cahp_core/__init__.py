"""CAHP Studio: Complementary Attention Head Pruning for BERT-family encoders."""

__version__ = "0.1.0"
