"""``python -m modnet_jax.serve``: matting in the browser (Gradio page) and over HTTP (FastAPI).

Parts, one job each: ``engine_adapter`` (the only code that calls the inference package),
``worker`` (one thread batching concurrent photos, bounded queue), ``uploads`` (limits and
decoding of uploaded bytes), ``api`` (the /v1 routes), ``live`` (camera sessions through the
engine's video path), ``app`` (the page), ``server`` (puts them together), ``__main__`` (the
command line). Needs the optional extra: ``pip install -e ".[serve]"``.
"""
