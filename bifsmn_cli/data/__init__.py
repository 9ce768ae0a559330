"""Data: the Speech Commands layout, splits and tasks (corpus.py), the data sources that fetch a corpus
(sources/), archive download and extraction (archives.py), and the packed arrays featurize writes (packed.py)."""
