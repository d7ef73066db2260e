"""The interactive grounding page behind ``python app.py`` (docs in app.py and the README).

Modules: :mod:`.service` one request without the web layer (upload checks, per-request settings,
downloads); :mod:`.maps` the stage maps as pictures (the run panel's drawing code);
:mod:`.examples` the synthetic example scenes; :mod:`.page` the Gradio page, the only module
that imports Gradio. ``import rsvg_zeroov`` does not import this package.
"""
