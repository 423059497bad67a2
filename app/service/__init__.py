"""Every user operation, once; every dialect calls these.

Each public method is a coroutine whose body runs, whole, on the directory's
small thread pool (ldap3 blocks and costs ~1 ms of CPU per operation), so the
event loop never waits on LDAP.
"""

from __future__ import annotations

from app.service.crops import PictureCrops
from app.service.groups import Groups
from app.service.invitations import Invitations
from app.service.memberships import Memberships
from app.service.photos import Photos
from app.service.signup import EmailVerification

__all__ = ["UserService"]


class UserService(Groups, Photos, EmailVerification, Invitations, PictureCrops, Memberships):
    """The whole service: users (with sign-up), groups and pictures. Each part
    lives in its own module; they share ServiceBase (app/service/base.py)."""
