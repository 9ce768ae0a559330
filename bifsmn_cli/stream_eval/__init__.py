"""Streaming evaluation of keyword spotters: long labelled test streams (`streams`), detections scored against
their labels (`scoring`), and DET curves over a threshold sweep (`det`). Engine-agnostic: the detections come
from whatever runs the model (bench runs the C stream)."""
