# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen Studio: a Gradio app over HiGenPipeline.

    studio.model.StudioModel    the model object: wraps a pipeline, runs the jobs (all torch lives there)
    studio.preview              a running animation's live preview (torch too; only studio.model uses it)
    studio.sessions             per-browser state: output folders, priors, history, the stop flag
    studio.ui.create_demo       the Blocks app; it takes a StudioModel and imports no torch
    studio.panels               the app's panels, one builder each
    studio.jobs                 the queue: jobs lined up from a page, run one after another
    studio.train_tab            the optional training tab (`python app.py --enable-training`)
    studio.events               what both tabs' events share: queue settings and the StudioError-to-page wrapper
    studio.inputs               the checks every value from the page or an API client passes (text, numbers, flags)
    studio.access               who may reach what: public deployments, the models "Load model" may read, logins

What the controls start at (γm and its range, γa, guidance, steps), the videos' frame rate and the examples shown are
what the loaded model recommends: its `pipe.settings`, recorded in its folder's model_index.json.
"""


class StudioError(Exception):
    """A problem the person using the studio can fix (bad input, out of memory, busy queue). The UI shows its text
    as is; it lives here, not in model.py, so that the UI can catch it without importing torch."""


class JobStopped(StudioError):
    """The session pressed Stop: the job left its loop after the current step. `partial` is what it made so far, for
    the caller to keep (None: nothing worth keeping)."""

    def __init__(self, partial=None):
        super().__init__("Stopped.")
        self.partial = partial
