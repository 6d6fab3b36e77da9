"""The DICOMweb datastore's cache index: a reload never shows a relative path.

No PACS is needed: nothing here is fetched (``tests/viewers/test_orthanc.py`` serves series from
a real Orthanc); the client points at a closed port.
"""

import os
from pathlib import Path

from dicomweb_client.api import DICOMwebClient
from monailabel.datastore.local import LocalDatastoreModel

from lib.data.dicom.dicomweb_datastore import MuscleDicomWebDatastore


def cache_store(tmp_path) -> MuscleDicomWebDatastore:
    client = DICOMwebClient(url="http://127.0.0.1:9/dicom-web")
    return MuscleDicomWebDatastore(client, search_filter={"Modality": "MR"}, cache_path=str(tmp_path / "cache"))


def test_a_reloaded_index_keeps_the_cache_folder_as_its_base(tmp_path):
    """MONAI Label's reload assigns the re-read index and sets its base path a line later. A
    request in between read a relative image path, and a whole series was downloaded into the
    server's working folder. The assignment itself now completes the index."""
    store = cache_store(tmp_path)
    try:
        root = store._datastore.image_path()
        assert os.path.isabs(root) and Path(root).is_relative_to(tmp_path / "cache")
        text = store._datastore.model_dump_json(exclude={"base_path"})  # as MONAI Label writes it
        store._datastore = LocalDatastoreModel.model_validate_json(text)  # the reload's first step
        assert store._datastore.image_path() == root
        assert store._datastore.label_path("final").startswith(str(tmp_path / "cache"))

        # the whole reload, after another process rewrote the index
        Path(store._datastore_config_path).write_text(text)
        os.utime(store._datastore_config_path, ns=(0, 10**18))
        store._init_from_datastore_file(throw_exception=True)
        assert store._datastore.image_path() == root
    finally:
        observer = getattr(store, "_observer", None)
        if observer is not None:
            observer.stop()
