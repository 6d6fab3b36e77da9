"""The inference engine: what turns an image and the live weights into labels and scores.

- ``pipeline``: one volume through the networks, step by step (pre-processing, routing,
  segmentation, post-processing, the label file), for infer requests and evaluation alike;
- ``regions``: the region of each slice (the classifier smoothed along z) and the routing;
- ``batching``: the networks over a volume's slices in batches, and the request's device;
- ``measurements``: per-muscle volumes, areas and intensities of an answer;
- ``uncertainty`` and ``ranking``: per-slice uncertainty of the live model, and which slices
  to correct next.

MONAI Label's tasks (``lib.tasks``), the evaluation, the benchmarks and the command line call
the engine; it asks the model store (``lib.models``) for networks and knows no server.
"""
