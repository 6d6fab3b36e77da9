"""The server with MONAI Label's authentication on: no token, a forged or an expired token is 401,
a token without the route's role is 403, a valid one passes.

MONAI Label 0.8.5 expects a Keycloak realm. There is no Keycloak on this machine (nor in CI), so
the test runs a stand-in identity provider: a real HTTP server on loopback serving the realm
document Keycloak serves (``{"public_key": <base64 DER RSA key>}``) and tokens signed RS256 with
its private key, carrying Keycloak's claims (``preferred_username``, ``realm_access.roles``).
The MONAI Label server, its auth code and ours are the real ones; only Keycloak is stood in for.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import ROOT, Server, copy_studies

IMAGE = "real_leg_t1"
LABEL = ROOT / "studies" / "labels" / "final" / f"{IMAGE}.nii.gz"


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Realm:
    """A Keycloak-like realm document on loopback, and tokens signed by its key."""

    def __init__(self):
        self.key = rsa_key()
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        document = json.dumps({"realm": "monailabel", "public_key": base64.b64encode(der).decode()}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args):
                pass

        self.http = HTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.http.server_address[1]}/realms/monailabel"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def token(self, roles, expires_in=3600, key=None) -> str:
        claims = {"preferred_username": "ann", "realm_access": {"roles": list(roles)},
                  "exp": int(time.time()) + expires_in}
        return jwt.encode(claims, key or self.key, algorithm="RS256")


@pytest.fixture(scope="module")
def realm():
    realm = Realm()
    yield realm
    realm.http.shutdown()


@pytest.fixture(scope="module")
def srv(realm, tmp_path_factory):
    base = tmp_path_factory.mktemp("auth")
    with pytest.MonkeyPatch.context() as mp:  # the server process inherits MONAI Label's auth settings
        mp.setenv("MONAI_LABEL_AUTH_ENABLE", "true")
        mp.setenv("MONAI_LABEL_AUTH_REALM_URI", realm.uri)
        server = Server(copy_studies(base / "studies"), base / "server.log")
    try:
        wait_until_answering(server)
        yield server
    finally:
        server.stop()


def wait_until_answering(server, timeout=180.0) -> None:
    """``Server.wait_ready`` waits for /info 200; with auth on, a running server answers 401."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert server.process.poll() is None, server.log()
        try:
            if requests.get(f"{server.url}/info/", timeout=5).status_code == 401:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise TimeoutError(server.log())


def calls(srv, headers):
    """infer, save label, upload image, train: the routes that must not run for a stranger."""
    return {
        "infer": lambda: requests.post(f"{srv.url}/infer/classifier", params={"image": IMAGE, "output": "json"},
                                       headers=headers, timeout=300),
        "save_label": lambda: requests.put(f"{srv.url}/datastore/label", params={"image": IMAGE, "tag": "final"},
                                           files={"label": ("l.nii.gz", LABEL.read_bytes())}, headers=headers,
                                           timeout=120),
        "upload": lambda: requests.put(f"{srv.url}/datastore/image", params={"image": "stranger"},
                                       files={"file": ("s.nii.gz", LABEL.read_bytes())}, headers=headers, timeout=120),
        "train": lambda: requests.post(f"{srv.url}/train/segmentation_leg", headers=headers, timeout=60),
        "info": lambda: requests.get(f"{srv.url}/info/", headers=headers, timeout=60),
    }


def test_without_a_valid_token_everything_is_401_and_nothing_changes(srv, realm):
    index = (srv.studies / "datastore_v2.json").read_bytes()
    label = (srv.studies / "labels" / "final" / f"{IMAGE}.nii.gz").read_bytes()
    all_roles = ["monailabel-admin", "monailabel-annotator", "monailabel-user"]
    bad = {"none": {}, "garbage": {"Authorization": "Bearer not.a.token"},
           "forged": {"Authorization": f"Bearer {realm.token(all_roles, key=rsa_key())}"},
           "expired": {"Authorization": f"Bearer {realm.token(all_roles, expires_in=-60)}"}}
    for name, headers in bad.items():
        for route, call in calls(srv, headers).items():
            r = call()
            assert r.status_code == 401, (name, route, r.status_code, r.text)
    assert (srv.studies / "datastore_v2.json").read_bytes() == index
    assert (srv.studies / "labels" / "final" / f"{IMAGE}.nii.gz").read_bytes() == label
    assert not (srv.studies / "stranger.nii.gz").exists()
    r = requests.get(f"{srv.url}/train/", headers={"Authorization": f"Bearer {realm.token(all_roles)}"}, timeout=30)
    assert r.status_code == 404, r.text  # no training was ever submitted


def test_roles_decide_what_a_valid_token_may_do(srv, realm):
    user = {"Authorization": f"Bearer {realm.token(['monailabel-user'])}"}
    annotator = {"Authorization": f"Bearer {realm.token(['monailabel-user', 'monailabel-annotator'])}"}
    as_user = calls(srv, user)
    r = as_user["infer"]()
    assert r.status_code == 200 and r.json()["region"] == "leg", r.text  # valid tokens work (PyJWT 2 fix)
    assert as_user["info"]().status_code == 200
    for route in ("save_label", "upload", "train"):
        r = as_user[route]()
        assert r.status_code == 403 and "is required" in r.json()["detail"], (route, r.text)
    r = calls(srv, annotator)["save_label"]()
    assert r.status_code == 200 and r.json()["label"] == IMAGE, r.text
