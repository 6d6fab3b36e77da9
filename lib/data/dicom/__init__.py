"""DICOM in and out: MR series read into volumes, volumes written as series, and a DICOMweb PACS.

``series`` picks the first echo's magnitude of a multi-echo series, ``export`` writes a NIfTI
volume as an MR series, ``dicomweb`` talks to the PACS (login, search, upload), and
``dicomweb_datastore`` is MONAI Label's DICOMweb datastore with this app's label checks and
muscle-named DICOM SEG.
"""
