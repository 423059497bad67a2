"""Pictures in jpegPhoto: normalised on the way in, thumbnails cached by version."""

from __future__ import annotations

from collections.abc import Hashable

from app.directory.schema import (
    values,
)
from app.domain import (
    NotFound,
    User,
    is_valid_username,
)
from app.pictures import Picture
from app.service.base import ServiceBase, reads, writes


class Photos(ServiceBase):
    # --- pictures (jpegPhoto) ----------------------------------------------
    # Decoding runs on its own small pool (Pillow: memory and CPU), the
    # directory work on the directory's: a burst of uploads waits for the
    # decoder, not for LDAP threads, and never holds one while decoding.

    async def set_picture(self, username: str, raw: bytes) -> None:
        """Normalise an upload (InvalidPicture otherwise) and store it."""
        await self._store_picture(username, await self.pools.pictures.run(
            self.pictures.normalise, raw))

    @writes
    def _store_picture(self, username: str, jpeg: bytes) -> None:
        self.directory.people.set_photo(self._person(username).dn, jpeg)

    @writes
    def delete_picture(self, username: str) -> None:
        self.directory.people.set_photo(self._person(username).dn, None)

    @reads
    def picture(self, username: str) -> Picture:
        return self.pictures.original(self.directory.people.photo(self._person(username).dn))

    async def thumbnail(self, username: str) -> Picture:
        """The entry's entryCSN says whether it changed since its thumbnail was
        made: an unchanged entry costs one small read, not its picture."""
        found = await self._thumbnail_source(username)
        if isinstance(found, Picture):
            return found
        stored, version = found
        return await self.pools.pictures.run(self.pictures.thumbnail, stored, version)

    @reads
    def _thumbnail_source(self, username: str) -> Picture | tuple[bytes | None, Hashable]:
        """The cached thumbnail, or the stored picture and its version."""
        if not is_valid_username(username):
            raise NotFound("user not found")
        person = self.directory.people.find("uid", username, ["entryCSN"])
        if person is None:
            raise NotFound("user not found")
        version = (person.dn, *values(person.entry, "entryCSN"))
        cached = self.pictures.cached_thumbnail(version)
        return cached or (self.directory.people.photo(person.dn), version)

    async def with_pictures(self, users: list[User]) -> set[str]:
        """The uuids of those users who have a usable picture (a jpegPhoto
        that is a JPEG: what the picture routes serve). An entry's version
        (entryCSN) changes with every write to it, so what was learnt of an
        entry holds while its version does: only the others are looked up,
        in one search, and none at all when every answer is known."""
        known = {u.uuid: self.pictured.get((u.uuid, u.version)) for u in users if u.version}
        unknown = [u.uuid for u in users if known.get(u.uuid) is None]
        found = await self._with_photo(unknown) if unknown else set()
        for user in users:
            if user.version and user.uuid in unknown:
                self.pictured.put((user.uuid, user.version), user.uuid in found)
        return {u.uuid for u in users if u.uuid in found or known.get(u.uuid)}

    @reads
    def _with_photo(self, uuids: list[str]) -> set[str]:
        photos = self.directory.people.photos(uuids)
        return {uuid for uuid, stored in photos.items() if self.pictures.usable(stored)}
