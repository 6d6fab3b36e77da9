"""MONAI Label's authentication (Keycloak/OpenID bearer tokens), made to work with PyJWT 2.

How 0.8.5's auth works: with ``MONAI_LABEL_AUTH_ENABLE=true`` every route depends on
``RBAC(role)``, which reads ``Authorization: Bearer <JWT>``, fetches the realm's RSA public key
from ``MONAI_LABEL_AUTH_REALM_URI`` (Keycloak's realm document, key ``public_key``), verifies
the signature and expiry, and takes the user name and roles from the token's claims
(``preferred_username``, ``realm_access.roles``). Roles: ``monailabel-user`` (infer, info,
next sample), ``-annotator`` (save labels, upload images), ``-admin`` (train, delete).

What is broken there: ``from_token`` calls ``jwt.decode`` without ``algorithms``, which PyJWT 2
(pinned here: 2.15) refuses for *every* token, so with auth on nobody, not even a valid user,
got past 401 (measured). ``install_auth_fix`` replaces that one function with the same logic
plus ``algorithms=ALGORITHMS``; an unreachable identity provider becomes a 503, not a 500.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

ALGORITHMS = ["RS256"]  # Keycloak's default realm signature; never "none" or a symmetric one


def from_token(token: str):
    """``monailabel.endpoints.user.auth.from_token`` with the signature algorithm pinned."""
    import jwt
    import requests
    from fastapi import HTTPException
    from monailabel.config import settings
    from monailabel.endpoints.user import auth

    if not settings.MONAI_LABEL_AUTH_ENABLE:
        return auth.DEFAULT_USER
    try:
        key = auth.get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    except (requests.RequestException, KeyError, ValueError) as exc:
        logger.error(f"identity provider {settings.MONAI_LABEL_AUTH_REALM_URI} unusable: {exc}")
        raise HTTPException(status_code=503, detail="the identity provider (auth realm) cannot be reached") from None
    options = {"verify_signature": True, "verify_aud": False, "verify_exp": True}
    payload = jwt.decode(token, key, algorithms=ALGORITHMS, options=options)  # InvalidTokenError -> 401
    roles = payload
    for part in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):  # "realm_access#roles": nested claim
        roles = roles.get(part) if isinstance(roles, dict) else None
    return auth.User(username=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME),
                     email=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
                     name=payload.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
                     roles=list(roles) if isinstance(roles, (list, tuple)) else [])


def install_auth_fix() -> bool:
    """Use ``from_token`` above in MONAI Label's auth dependency; True when auth is on."""
    try:
        from monailabel.config import settings
        from monailabel.endpoints.user import auth
    except Exception:  # not running inside the server
        return False
    auth.from_token = from_token  # get_current_user looks the name up at each request
    host = bind_host(sys.argv)
    if settings.MONAI_LABEL_AUTH_ENABLE:
        logger.info(f"Authentication on: bearer tokens of realm {settings.MONAI_LABEL_AUTH_REALM_URI}")
    elif host is not None and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(f"Serving on {host} WITHOUT authentication: anyone who reaches this port can read "
                       f"images and overwrite labels (see README, Operating it)")
    return bool(settings.MONAI_LABEL_AUTH_ENABLE)


def bind_host(argv) -> str | None:
    """The ``--host``/``-i`` of ``monailabel start_server`` (whose own default is 0.0.0.0)."""
    argv = list(argv)
    if "start_server" not in argv:
        return None
    for i, arg in enumerate(argv[:-1]):
        if arg in ("--host", "-i"):
            return argv[i + 1]
    return "0.0.0.0"
