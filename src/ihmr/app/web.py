"""The page of ``ihmr serve`` (Gradio): upload photos or pick the bundled examples, choose the
refiner, contact handling, focal length and a box, and get what ``ihmr demo`` writes for them (the
job runs through :class:`ihmr.app.jobs.Workspace`, so the files are ``ihmr demo``'s own), shown as
the overlay, the before/after views, a 3D viewer of ``hands.glb`` / ``hands_before.glb`` (penetrating
regions red), the per-pair table and the downloads.

The models are loaded once per (refiner, contact) setting and reused; jobs run one at a time
from Gradio's queue (a second user waits and sees the queue position). Nothing leaves the machine:
Gradio's analytics are off, the theme uses the system's fonts, and the server binds to
``127.0.0.1`` unless told otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from ihmr.app.jobs import ImageResult, Limits, Workspace, pair_rows  # noqa: E402
from ihmr.errors import IhmrError, InputError, one_line  # noqa: E402
from ihmr.pipeline import Reconstructor  # noqa: E402
from ihmr.pipeline.batch import BatchOptions, bundled_examples, parse_box  # noqa: E402

__all__ = ["ServeConfig", "App", "PAIR_HEADERS"]

PAIR_HEADERS = ["pair", "AVE-P before (mm)", "MAX-P before (mm)", "AVE-P after (mm)", "MAX-P after (mm)", "accepted factors"]
_REFINERS = {"OPT (optimisation)": "opt", "MLP (learned)": "mlp", "none": "none"}
_STATES = ("after refinement", "before refinement")


@dataclass(frozen=True)
class ServeConfig:
    """``host``/``port`` to bind, the hand ``model`` ('open' or a MANO folder), the upload ``limits``
    and the number of finished jobs kept on disk (``keep``)."""

    host: str = "127.0.0.1"
    port: int = 7860
    model: str = "open"
    limits: Limits = Limits()
    keep: int = 8


def _viewer_label(state: str) -> str:
    name = "hands.glb" if state == _STATES[0] else "hands_before.glb"
    return f"{name}, {state} (drag to turn, scroll to zoom, red: penetrating)"


class App:
    """The Gradio page over one :class:`Workspace`; :meth:`launch` serves it, :meth:`close` stops
    it and removes the workspace."""

    def __init__(self, config: ServeConfig = ServeConfig()) -> None:
        self.config = config
        self.workspace = Workspace(keep=config.keep, limits=config.limits)
        self._recs: dict[tuple[str, bool], Reconstructor] = {}
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.blocks = self._build()

    # -- the pipeline ---------------------------------------------------------------------------
    def reconstructor(self, refine: str, contact: bool) -> Reconstructor:
        """One :class:`Reconstructor` per setting, built at first use; all share one detector."""
        with self._lock:
            key = (refine, contact)
            if key not in self._recs:
                rec = Reconstructor(self.config.model, refine=refine, contact=contact)
                if self._recs:
                    rec.detector = next(iter(self._recs.values())).detector
                self._recs[key] = rec
            return self._recs[key]

    def options(self, refine: str, contact: bool, focal: str, box: str) -> BatchOptions:
        """The :class:`BatchOptions` ``ihmr demo`` would use for the page's settings: ``focal`` and
        ``box`` as typed (empty: none; InputError on a bad one)."""
        text = (focal or "").strip()
        try:
            f = float(text) if text else None
        except ValueError:
            f = math.nan
        if f is not None and not (0 < f < math.inf):
            raise InputError(f"focal length: must be a number of pixels > 0 (or empty), got {text!r}")
        b = parse_box(box) if box and box.strip() else None
        model = self.config.model if self.config.model == "open" else str(Path(self.config.model).resolve())
        return BatchOptions(focal=f, box=None if b is None else tuple(b), refine=refine,
                            refiner="default" if refine == "mlp" else None, model=model, contact=contact)

    def run(self, uploads: list[tuple[Path, str]], refine: str, contact: bool, focal: str = "", box: str = ""):
        """Run one job; returns the :class:`~ihmr.app.jobs.JobResult` (IhmrError: nothing usable)."""
        options = self.options(refine, contact, focal, box)
        rec = self.reconstructor(refine, contact)
        with self._run_lock:  # one job at a time whoever calls (the detector's interpreters are not thread-safe)
            return self.workspace.run(rec, uploads, options, hand_model=options.model, progress=True)

    def warm_up(self) -> float:
        """Reconstruct a bundled example once with the default settings (models loaded, the GL
        context and the refiner's first pass done), so that the first user's job runs warm;
        returns the seconds it took. The job folder is removed."""
        t0 = time.perf_counter()
        photo = next(p for p in bundled_examples() if p.with_suffix(".json").is_file())
        job = self.run([(photo, photo.name), (photo.with_suffix(".json"), photo.with_suffix(".json").name)], "opt", True)
        shutil.rmtree(job.folder, ignore_errors=True)
        return time.perf_counter() - t0

    # -- the page -------------------------------------------------------------------------------
    @staticmethod
    def _show(item: dict, state: str) -> tuple:
        """overlay, views, GLB, table, downloads for one photo of a job (``item``: see _index)."""
        if item.get("folder") is None:
            return None, None, None, [], None
        folder = Path(item["folder"])
        glb = folder / ("hands.glb" if state == _STATES[0] else "hands_before.glb")
        return (str(folder / "overlay.png"), str(folder / "views.png"), str(glb), item["rows"],
                [str(p) for p in item["downloads"]])

    @staticmethod
    def _index(images: list[ImageResult]) -> dict:
        out = {}
        for r in images:
            key = r.name if r.name not in out else f"{r.name} ({len(out) + 1})"
            out[key] = {"folder": None if r.folder is None else str(r.folder), "status": r.status,
                        "rows": pair_rows(r.doc), "downloads": [str(p) for p in r.downloads()],
                        "notes": r.doc.get("notes", [])}
        return out

    @staticmethod
    def _message(index: dict, problems: list[str]) -> str:
        lines = [f"**{name}**: {item['status']}" + "".join(f"<br>- {n}" for n in item["notes"]) for name, item in index.items()]
        lines += [f"**problem**: {p}" for p in problems]
        return "\n\n".join(lines)

    def _reconstruct(self, files, refiner_label, contact, focal, box, progress=gr.Progress(track_tqdm=True)):
        uploads = [(Path(f), Path(f).name) for f in (files or [])]
        return self._job(uploads, refiner_label, contact, focal, box)

    def _examples(self, refiner_label, contact, focal, box, progress=gr.Progress(track_tqdm=True)):
        uploads = []
        for p in bundled_examples():
            uploads.append((p, p.name))
            if p.with_suffix(".json").is_file():
                uploads.append((p.with_suffix(".json"), p.with_suffix(".json").name))
        return self._job(uploads, refiner_label, contact, focal, box)

    def _job(self, uploads, refiner_label, contact, focal, box) -> tuple:
        try:
            job = self.run(uploads, _REFINERS.get(refiner_label, "opt"), bool(contact), focal, box)
        except IhmrError as e:
            raise gr.Error(one_line(e), print_exception=False) from None
        index = self._index(job.images)
        shown = next((k for k, v in index.items() if v["folder"] is not None), None)
        if shown is None:
            lines = job.problems or [f"{k}: {v['status']}" for k, v in index.items()]
            raise gr.Error("; ".join(lines), print_exception=False)
        return (gr.update(choices=list(index), value=shown), *self._show(index[shown], _STATES[0]),
                gr.update(value=_STATES[0]), self._message(index, job.problems), index)

    def _pick(self, name, state, index):
        item = (index or {}).get(name)
        if item is None:
            return None, None, None, [], None
        return self._show(item, state)

    def _toggle(self, name, state, index):
        item = (index or {}).get(name)
        glb = None if item is None or item.get("folder") is None else self._show(item, state)[2]
        return gr.update(value=glb, label=_viewer_label(state))

    def _build(self) -> gr.Blocks:
        lim = self.config.limits
        # delete_cache: Gradio's copies of uploads and results older than 2 h go hourly, all at shutdown
        with gr.Blocks(title="ihmr: two interacting hands in 3D", analytics_enabled=False, delete_cache=(3600, 7200)) as demo:
            gr.Markdown("## ihmr: two interacting 3D hands from one photo\n"
                        f"Drop photos (up to {lim.max_files}, {lim.max_bytes / 2**20:.0f} MB and "
                        f"{lim.max_pixels / 1e6:.0f} megapixels each; a `.json` sidecar with the same name may give "
                        "`focal` and `boxes`, as for `ihmr demo`) or run the bundled examples. "
                        "Drag the 3D view to turn the hands; red marks penetrating regions.")
            index = gr.State({})
            with gr.Row():
                with gr.Column(scale=1):
                    files = gr.File(file_count="multiple", file_types=["image", ".json"], label="photos", elem_id="upload")
                    refiner = gr.Radio(list(_REFINERS), value=next(iter(_REFINERS)), label="refinement", elem_id="refiner")
                    contact = gr.Checkbox(value=True, label="contact: place overlapping hands together and close evidenced gaps",
                                          elem_id="contact")
                    focal = gr.Textbox(value="", label="focal length in pixels (empty: the sidecar's, else 1.2 x the longer side)",
                                       elem_id="focal")
                    box = gr.Textbox(value="", label="box around the hands: x,y,w,h pixels (optional)", elem_id="box")
                    with gr.Row():
                        go = gr.Button("Reconstruct", variant="primary", elem_id="run")
                        ex = gr.Button("Run the bundled examples", elem_id="examples")
                    message = gr.Markdown(elem_id="message")
                with gr.Column(scale=2):
                    photo = gr.Dropdown(choices=[], value=None, label="photo", allow_custom_value=True, elem_id="photo")
                    with gr.Row():
                        overlay = gr.Image(type="filepath", label="overlay", interactive=False, elem_id="overlay")
                        views = gr.Image(type="filepath", label="views: before (top) / after (bottom) refinement",
                                         interactive=False, elem_id="views")
                    which = gr.Radio(list(_STATES), value=_STATES[0], label="3D view", elem_id="which")
                    viewer = gr.Model3D(label=_viewer_label(_STATES[0]), clear_color=(1.0, 1.0, 1.0, 1.0),
                                        height=420, elem_id="viewer")
                    table = gr.Dataframe(headers=PAIR_HEADERS, value=[], label="pairs", interactive=False, elem_id="pairs")
                    downloads = gr.File(label="downloads (as ihmr demo writes them)", interactive=False, elem_id="downloads")
            outs = [photo, overlay, views, viewer, table, downloads, which, message, index]
            settings = [refiner, contact, focal, box]
            # both buttons share one queue slot: jobs run one after another, the others wait in the queue
            go.click(self._reconstruct, [files, *settings], outs, concurrency_limit=1, concurrency_id="job")
            ex.click(self._examples, settings, outs, concurrency_limit=1, concurrency_id="job")
            photo.input(self._pick, [photo, which, index], [overlay, views, viewer, table, downloads])
            which.input(self._toggle, [photo, which, index], [viewer])
        return demo

    def launch(self, block: bool = True) -> None:
        """Serve the page (``block=False``: return once it is up)."""
        theme = gr.themes.Default(font=[gr.themes.Font("system-ui"), gr.themes.Font("sans-serif")],
                                  font_mono=[gr.themes.Font("monospace")])
        self.blocks.queue(default_concurrency_limit=1, max_size=32)
        self.blocks.launch(server_name=self.config.host, server_port=self.config.port, prevent_thread_lock=not block,
                           max_file_size=self.config.limits.max_bytes, show_error=True, quiet=False, ssr_mode=False,
                           theme=theme, footer_links=[], inbrowser=False, share=False)

    def close(self) -> None:
        """Stop the server and remove the workspace."""
        try:
            self.blocks.close()
        finally:
            self.workspace.close()
