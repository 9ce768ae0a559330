"""Where corpora come from: one module per data source (speech_commands, synthetic, folder) with its config keys
and its fetch, and the registry that picks one by `download.source`."""
