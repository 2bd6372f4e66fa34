"""Model catalogue (one YAML per model) and label maps, shipped as package data."""
