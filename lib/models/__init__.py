"""The model store: every question about weight files is answered here, and only here.

- ``catalog``: the networks (classifier, thigh and leg segmenters), their regions and the name of
  their weight files;
- ``store``: which file a network uses: the live file published by training in the model folder,
  else the shipped one in ``weights/`` (MONAI Label's pretrained/published pair), or a kept
  version when a run asks for one (``live``, ``shipped``, ``vN``, ``NETWORK:vN``);
- ``registry``: the published versions of a network, publishing and rollback;
- ``cache``: the inference copy of a network, loaded once per file and reloaded when the file
  changes, so a published model is served without a restart.

Configs, tasks, training, evaluation and commands ask the store; none of them builds a path to
a weight file itself.
"""
