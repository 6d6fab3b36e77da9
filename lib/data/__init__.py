"""The data the app reads, writes and makes, by concern.

- ``phantoms``: synthetic thigh and leg MRI with their labels, the one real labelled slice, and
  the embedded default datastore ``studies/``;
- ``datastore``: the local datastore MONAI Label serves (checked labels, crash-safe writes,
  recovery at start-up);
- ``dicom``: DICOM series in and out, and the DICOMweb PACS as a datastore;
- ``io``: NIfTI reading and writing.

What label values and names mean is ``lib.labels`` and ``lib.annotations``; turning corrected
labels into training slices is ``lib.training.corrections``.
"""
