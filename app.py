# Copyright 2026 The HiGen Studio authors. Licensed under the Apache License, Version 2.0.
"""HiGen Studio: text-to-video in two steps, in the browser.

    python app.py                                   # the bundled demo model (or the tiny one) on this machine
    python app.py --model path/to/higen-t2v         # a converted pipeline folder (or a hub id)
    python app.py --enable-training --workspace ws  # with the Train tab

Reachable by others (on a Space, with --share, or on a --host other than loopback such as 0.0.0.0), the studio
offers no way to load another model, and trains only on a non-loopback --host with --auth or --auth-file (never on
a Space or with --share). Outputs live as long as the server: SIGTERM and Ctrl-C remove them.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from pathlib import Path

from studio import StudioError
from studio.access import ModelSources, is_loopback, parse_auth

TINY = "tiny"
# The shapes-world model committed beside this file: what `python app.py` runs offline.
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "shapes-model"


def default_model() -> str:
    """$HIGEN_MODEL, else the bundled demo model if it is there, else the untrained tiny model."""
    if os.environ.get("HIGEN_MODEL"):
        return os.environ["HIGEN_MODEL"]
    return str(DEMO_MODEL_DIR) if DEMO_MODEL_DIR.is_dir() else TINY


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # A Space runs `python app.py` with no arguments: its HIGEN_MODEL variable names the model instead.
    parser.add_argument("--model", default=default_model(),
                        help="pipeline folder, hub id or \"tiny\" (default: $HIGEN_MODEL, else assets/shapes-model "
                             "beside app.py if present, else the untrained tiny model)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"),
                        help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1); any address "
                             "but loopback makes the studio public: no model loading, no training without --auth")
    parser.add_argument("--port", type=int, help="port (default: 7860 or the next free one)")
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", help="float16, bfloat16 or float32 (default: float16 on a GPU, else float32)")
    parser.add_argument("--cpu-threads", type=positive_int, metavar="N",
                        help="threads of torch's CPU work (default: one per two cores)")
    parser.add_argument("--enable-training", action="store_true",
                        help="show the Train tab: on loopback, or on another --host with --auth/--auth-file; never "
                             "on a Space or with --share")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="ask every visitor for this login")
    parser.add_argument("--auth-file", metavar="FILE", help="ask every visitor for a login, one USER:PASSWORD a line")
    parser.add_argument("--allow-models", nargs="+", metavar="DIR_OR_HUB_ID",
                        help="what the Model panel may load besides \"tiny\": folders (and what is inside them) "
                             "and hub ids (default: the folder of --model and the cache dir); local use only")
    parser.add_argument("--workspace", default="workspace",
                        help="the Train tab's folder (default: ./workspace); the Model panel may load what it trains")
    parser.add_argument("--cache-dir", help="where converted VGen checkpoints are kept (default: "
                                            "~/.cache/higen-studio or $HIGEN_STUDIO_CACHE)")
    parser.add_argument("--queue-size", type=int, default=16, help="jobs that may wait in line (default: 16)")
    args = parser.parse_args(argv)
    args.on_spaces = bool(os.environ.get("SPACE_ID"))
    args.public = args.on_spaces or args.share or not is_loopback(args.host)
    try:
        args.auth = parse_auth(args.auth, args.auth_file)
    except StudioError as e:
        parser.error(str(e))
    if args.enable_training and (args.on_spaces or args.share):
        parser.error("--enable-training starts programs on this machine: it is refused on a Space and with --share.")
    if args.enable_training and args.public and not args.auth:
        parser.error(f"--enable-training starts programs on this machine: on --host {args.host}, which others can "
                     f"reach, it is refused without --auth or --auth-file.")
    if args.allow_models and args.public:
        parser.error("--allow-models is for local use: a studio others can reach loads no other model.")
    return args


def stop_on_sigterm(signum, frame):
    """SIGTERM ends the server as Ctrl-C does: main's `finally` removes the sessions' outputs on the way out."""
    raise SystemExit(0)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import spaces  # noqa: F401  (on ZeroGPU it has to patch torch before anything imports torch)
    except ImportError:
        pass
    from higen_core import set_cpu_threads
    from studio.model import StudioModel
    from studio.sessions import SessionStore
    from studio.ui import LAUNCH_OPTIONS, create_demo, make_cached_examples

    set_cpu_threads(args.cpu_threads)
    try:
        sources = ModelSources.from_entries(args.allow_models) if args.allow_models else None
        model = StudioModel.load(args.model, args.device, args.dtype, args.cache_dir, sources=sources)
    except StudioError as e:
        print(f"app.py: error: {e}", file=sys.stderr)
        return 2
    training = None
    if args.enable_training:
        from studio.train_tab import TrainingWorkspace

        training = TrainingWorkspace(args.workspace)
        model.sources = model.sources.with_folders(training.root)  # what it trains, the Model panel may load
    store = SessionStore()
    store.start_reaper()
    demo = create_demo(model, store, queue_size=args.queue_size, on_spaces=args.on_spaces,
                       allow_model_loading=not args.public, training=training)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    # Gradio warns of the session endpoints' gr.State input, although they are no MCP tools (studio.events.
    # session_endpoint): the one tool, text_to_video, has none.
    warnings.filterwarnings("ignore", message="This MCP server includes a tool that has a gr.State input")
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=args.auth,
                    prevent_thread_lock=True, **LAUNCH_OPTIONS)
        # Served: now the examples are made, so that a click shows them at once. Not on ZeroGPU, which lends its
        # GPU to requests only (there the first click on an example makes it).
        if not os.environ.get("SPACES_ZERO_GPU"):
            make_cached_examples(demo)
        demo.block_thread()
    finally:
        demo.close()  # the server's shutdown also removes Gradio's copies of the outputs (its cache)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
