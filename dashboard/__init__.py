"""CAHP Studio's Streamlit dashboard: shared UI code (pages live in the top-level pages/)."""
