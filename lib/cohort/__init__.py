"""Cohort-scale inference without a server: many studies to one table of measurements.

- ``sources``: the studies of a folder, a list file or a DICOMweb query; their ids, Dixon
  pairs, shards and input hashes;
- ``run``: each study through the engine (``lib.inference.pipeline.segment_muscles_in``), its
  label file and its record, skipping studies already done with the same input and model;
- ``tables``: ``measurements.csv``, ``cohort.json`` and ``errors.csv`` from the records, and
  the merge of a sharded run's tables.

``python main.py infer DIR|LIST|URL`` and ``python main.py merge-cohort`` (``lib.commands``)
and the ``cohort`` benchmark call it.
"""
