"""Model surgery: finding heads, masking and removing them, loading, fine-tuning, saving and exporting models (no CAHP method, no run folders)."""
