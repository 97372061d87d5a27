"""``ihmr serve``: the browser app (:mod:`ihmr.app.web`) on http://HOST:PORT/."""

from __future__ import annotations

import argparse

from ihmr.app.jobs import Limits
from ihmr.cli.demo import positive
from ihmr.errors import InputError

__all__ = ["add_serve_parser"]


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="a local web app: drop photos, turn the two hands in 3D, download the results",
                       description="Serves the page on http://HOST:PORT/ until Ctrl-C. Each upload runs ihmr demo's "
                                   "pipeline (same files, same options); jobs run one at a time from a queue. "
                                   "Binds to 127.0.0.1 (this machine only) unless --host says otherwise; no telemetry.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--model", default="open", help="'open' or a folder with the MANO pickles")
    p.add_argument("--max-upload-mb", type=positive(float), default=20.0, help="largest upload per file in MB (default: 20)")
    p.add_argument("--max-megapixels", type=positive(float), default=40.0, help="largest image in megapixels (default: 40)")
    p.add_argument("--max-files", type=positive(int, "whole number"), default=16, help="most files per upload (default: 16)")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise InputError(f"--port: must be 1-65535, got {args.port}")
    try:
        from ihmr.app.web import App, ServeConfig  # imports gradio (the optional 'app' extra): lazy
    except ImportError as e:
        raise InputError(f"ihmr serve needs gradio (pip install 'ihmr[app]'): {e}") from None
    limits = Limits(max_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6), max_files=args.max_files)
    app = App(ServeConfig(host=args.host, port=args.port, model=args.model, limits=limits))
    print("ihmr serve: loading the models and reconstructing a bundled example once (warm-up)", flush=True)
    secs = app.warm_up()  # a bad --model fails here, in one line, before the server starts
    print(f"ihmr serve: warm in {secs:.1f} s; open http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        app.launch(block=True)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0
