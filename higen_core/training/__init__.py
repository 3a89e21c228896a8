# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen's image-video joint training: the pieces `higen_core.train` is built from. `config` (the fields), `models`
(what a run starts from), `data` (decoding, with bad files skipped and counted), `streams` (resumable batches),
`latents` (the model's inputs and the latent cache), `objective` (the loss, and who trains on what), `checkpoint`
(atomic saves), `outputs` (samples, the final pipeline, logs) and `lock` (one run at a time in an output folder)."""
