"""The pipeline machinery: what a stage declares and is given (stage.py), the stage registry (registry.py), the
pipeline file's schema (sections.py, schema.py), manifests (manifest.py) and the runner (runner.py)."""
