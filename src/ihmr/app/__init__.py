"""``ihmr serve``: the browser app over ``ihmr demo``'s pipeline (:mod:`ihmr.app.jobs`: uploads and
job folders, framework-free; the Gradio page follows)."""
