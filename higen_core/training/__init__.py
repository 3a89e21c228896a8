# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen's image-video joint training: the pieces `higen_core.train` is built from (data loading is `.data`)."""
