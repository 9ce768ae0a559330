"""Code more than one stage uses (no stage imports another stage)."""
