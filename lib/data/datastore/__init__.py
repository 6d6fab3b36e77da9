"""The local datastore MONAI Label serves, made safe for a shared server.

``local`` checks ids, uploads and every saved label before storing it; ``safe`` makes MONAI
Label's ``LocalDatastore`` atomic, durable and serialised across processes; ``recovery``
finishes at start-up the saves a kill interrupted.
"""
