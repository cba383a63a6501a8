"""Settings: the schema of params.yaml (schema) and its checked loading (load)."""
