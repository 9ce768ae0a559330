"""Audio: clip reading and validation (wav.py), the feature front end (frontend.py; its settings in config.py),
training augmentation (augment.py) and generated background noises (noise.py)."""
