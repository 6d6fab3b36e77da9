"""Synthetic thigh and leg MRI with their muscle labels, the real labelled slice, ``studies/``.

``layout`` places the muscles of each region, ``anatomy`` draws one limb's cross-section,
``phantom`` renders a volume from them, ``real_slice`` reads the real labelled leg slice, and
``embedded`` writes phantom studies (and the embedded default datastore) to disk.
"""
