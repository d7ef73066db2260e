"""The interactive grounding page (Gradio; the only module of the package that imports it).

    page = build_page(service, tiny=True, examples=write_examples(folder))
    launch(page, Launch(host="127.0.0.1", port=7860))

Inputs: **Image** (a PNG / JPEG / TIFF / GeoTIFF upload), **Expression**, the **Ground** button and
an "Advanced" section (fidelity, inversion mode and steps, K / tau / alpha, the refiner). Outputs:
**Overlay**, **Box**, **Answer**, the stage maps, the per-stage timings and the downloads. A
request's progress shows each stage and stage 2's steps; a failed request shows its message and
the page keeps serving. The labels are what the browser test finds the components by.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported
import gradio as gr  # noqa: E402

from ..cli import user_errors  # noqa: E402
from .service import (FIDELITIES, INVERSIONS, MAX_K, MAX_STEPS, SCENE_OVERVIEW, STAGE_NAMES,  # noqa: E402
                      GroundingService, Settings, prompt_modes, refiner_keys)

log = logging.getLogger(__name__)

TITLE = "RSVG-ZeroOV: training-free visual grounding in remote-sensing images"
TINY_BANNER = ("**Tiny stand-in models.** This page runs the offline random-weight stand-ins (`--tiny`): "
               "the maps, masks and answers are noise. They show that every stage runs, not what the "
               "method finds; start the app with the real models (`--vlm`, `--sd`, `--refiner`) for that.")
UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff"]
# The share of the progress bar each stage takes (stage 2 is the longest by far); a scene beyond
# the budget runs its overview first, then the three stages once per focus window.
SPANS = {"overview": (0.0, 0.25), "focus": (0.25, 0.92), "evolve": (0.92, 1.0), SCENE_OVERVIEW: (0.0, 0.25)}
# System fonts only: the default theme would fetch its fonts from the internet.
THEME = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


@dataclass(frozen=True)
class Launch:
    """How the page is served: ``host`` (127.0.0.1 = this machine only), ``port`` (None: Gradio's
    first free from 7860), ``share`` (a public Gradio link), ``max_bytes`` (upload limit the server
    enforces), ``queue`` (requests that may wait; more are refused), ``allowed_paths`` (folders
    whose files the page may serve besides the current folder and the system's temporary one:
    the service's workdir, where the downloads are written; Gradio refuses to serve a file
    elsewhere)."""

    host: str = "127.0.0.1"
    port: int | None = None
    share: bool = False
    max_bytes: int | None = None
    queue: int = 16
    allowed_paths: tuple[str, ...] = ()


def progress_text(p) -> tuple[float, str]:
    """(fraction of the whole request, description) of a :class:`~rsvg_zeroov.pipeline.StageProgress`."""
    lo, hi = SPANS[p.stage]
    text = f"{STAGE_NAMES[p.stage]}: {p.detail}"
    if p.total:
        text += f" ({p.step}/{p.total})"
    return lo + (hi - lo) * (p.fraction or 0.0), text


def _message(exc: BaseException, upload) -> str:
    """The error's message with the upload's server-side path shortened to its file name."""
    text = str(exc).strip() or type(exc).__name__
    if upload:
        text = text.replace(str(upload), Path(str(upload)).name)
    return text


def make_handler(service: GroundingService):
    """The Ground button's function: inputs in the page's order, the outputs' values back."""
    def ground(upload, text, fidelity, inversion, steps, k, tau, alpha, refine, refiner, prompt,
               progress=gr.Progress()):
        settings = Settings(fidelity=fidelity, inversion=inversion, steps=int(steps), k=int(k), tau=float(tau),
                            alpha=float(alpha), refine=bool(refine), refiner=refiner, prompt=prompt or None)

        def report(p):
            fraction, desc = progress_text(p)
            progress(fraction, desc=desc)

        try:
            out = service.run(upload, text, settings, progress=report)
        except user_errors() as exc:
            raise gr.Error(_message(exc, upload), duration=None, print_exception=False) from None
        except Exception as exc:  # a bug or an out-of-memory error: say so, keep serving
            log.exception("request failed")
            raise gr.Error(f"the request failed ({type(exc).__name__}: {_message(exc, upload)}); "
                           "the page keeps serving", duration=None, print_exception=False) from None
        return (out.status, out.overlay, out.box, out.answer, out.files, out.maps,
                [list(row) for row in out.timings])
    return ground


def build_page(service: GroundingService, *, tiny: bool = False, examples=()) -> gr.Blocks:
    """The page for ``service`` (its launch settings are the Advanced section's defaults).
    ``examples``: ``(file, expression, caption)`` of the example scenes (:mod:`.examples`)."""
    s = service.settings
    modes = prompt_modes()
    with gr.Blocks(title="RSVG-ZeroOV grounding", analytics_enabled=False, delete_cache=(1800, 3600)) as page:
        gr.Markdown(f"## {TITLE}\nUpload an image, type what to find, press **Ground**.")
        if tiny:
            gr.Markdown(TINY_BANNER, elem_id="tiny-banner")
        with gr.Row():
            with gr.Column(scale=2):
                image = gr.File(label="Image", file_types=UPLOAD_TYPES, type="filepath", elem_id="image")
                expression = gr.Textbox(label="Expression", placeholder="the storage tank left of the road",
                                        elem_id="expression")
                button = gr.Button("Ground", variant="primary", elem_id="ground")
                with gr.Accordion("Advanced", open=False):
                    fidelity = gr.Radio(list(FIDELITIES), value=s.fidelity, label="Fidelity")
                    inversion = gr.Radio(list(INVERSIONS), value=s.inversion, label="Inversion mode")
                    steps = gr.Slider(1, MAX_STEPS, value=s.steps, step=1, label="Inversion steps")
                    k = gr.Slider(1, MAX_K, value=s.k, step=1, label="K (seed values)")
                    tau = gr.Slider(0.0, 1.0, value=s.tau, step=0.01, label="tau (region growing threshold)")
                    alpha = gr.Slider(0.0, 1.0, value=s.alpha, step=0.01, label="alpha (mask threshold)")
                    refine = gr.Checkbox(value=s.refine, label="Refine the mask")
                    refiner = gr.Dropdown(refiner_keys(), value=s.refiner, label="Refiner")
                    prompt = gr.Dropdown(list(modes or ()), value=s.prompt if modes else None,
                                         label="Refiner prompt", visible=modes is not None)
                if examples:
                    gr.Examples([[f, e] for f, e, _ in examples], inputs=[image, expression],
                                example_labels=[c for _, _, c in examples],
                                label="Example scenes (synthetic, generated by rsvg_zeroov.synthetic; "
                                      "not real imagery)")
            with gr.Column(scale=3):
                status = gr.Markdown("Results appear here.", elem_id="status")
                overlay = gr.Image(label="Overlay", type="numpy", format="png", interactive=False, height=420,
                                   elem_id="overlay")
                with gr.Row():
                    box = gr.Textbox(label="Box", interactive=False, elem_id="box")
                    answer = gr.Textbox(label="Answer", interactive=False, elem_id="answer")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        maps = gr.Gallery(label="Stage maps", columns=5, format="png", object_fit="contain", elem_id="maps")
        timings = gr.Dataframe(headers=["stage", "seconds"], label="Timings", interactive=False, elem_id="timings")
        inputs = [image, expression, fidelity, inversion, steps, k, tau, alpha, refine, refiner, prompt]
        outputs = [status, overlay, box, answer, files, maps, timings]
        handler = make_handler(service)
        button.click(handler, inputs, outputs, concurrency_limit=1, concurrency_id="ground")
        expression.submit(handler, inputs, outputs, concurrency_limit=1, concurrency_id="ground")
    return page


def launch(page: gr.Blocks, how: Launch) -> None:
    """Serve ``page`` until interrupted: one request at a time; no analytics, no server-side
    rendering, no MCP server, no run history kept in the browser."""
    page.queue(default_concurrency_limit=1, max_size=how.queue)
    page.launch(server_name=how.host, server_port=how.port, share=how.share, max_file_size=how.max_bytes,
                allowed_paths=list(how.allowed_paths), show_error=False, ssr_mode=False, mcp_server=False,
                enable_monitoring=False, run_history=False, footer_links=["api", "gradio"],
                theme=gr.themes.Default(**THEME))
