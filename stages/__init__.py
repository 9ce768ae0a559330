"""The pipeline's stages, one module each (the registry in pipeline/registry.py lists them in order), and the
pipeline machinery that runs them (pipeline/).

A stage module exports `SPEC: StageSpec` and `run(ctx) -> metrics`. Every spec is read whenever a pipeline file is
(`bifsmn status`), so a stage module imports only torch-free modules at its top and the rest inside `run`.
No stage imports another: a stage reads upstream artifacts through `ctx.input_file(stage, name)`. Code two stages
share lives in shared/.
"""
