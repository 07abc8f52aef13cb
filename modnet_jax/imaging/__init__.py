"""Images, mattes, videos and dataset layouts: the one place that reads and combines them.

Training data (`modnet_jax.data`), inference (`modnet_jax.inference`, `predict`) and
evaluation (`evaluate`, `metrics`) all use these modules, so a file that one of them accepts
the others accept too, and read it the same way.

Modules:
  files        extensions, loop-free folder walks and patterns, listing by stem,
               `UnusableFile`, once-only conversion notes
  signatures   what a file is by its content (the extension is a hint)
  checks       refusals every reader shares: content vs extension, truncation, bomb headers,
               NaN/infinity
  raw          raw .npy images, memory-mapped
  output       result files written whole or not at all (temporary name + rename)
  decode       PNG/JPEG header probes (imagesize), RGB and matte
               decoding (8/16-bit, grey, RGB, RGBA, raw .npy), reduced-size JPEG decoding
  video        frame counts and single-frame reads
  layouts      dataset layout names (ppm100, p3m10k, am2k, ...) and their folders
  trimap       trimaps from mattes (one foreground threshold for training and evaluation)
  compositing  image = fg * a + bg * (1 - a), and foreground estimation from image + matte
"""
