"""Pictures in jpegPhoto: normalised on the way in, thumbnails cached by version."""

from __future__ import annotations

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

    @writes
    def set_picture(self, username: str, raw: bytes) -> None:
        """Normalise an upload (in this worker thread: Pillow is CPU) and store it."""
        person = self._person(username)
        self.directory.people.set_photo(person.dn, self.pictures.normalise(raw))

    @writes
    def delete_picture(self, username: str) -> None:
        self.directory.people.set_photo(self._person(username).dn, None)

    @reads
    def picture(self, username: str) -> Picture:
        return self.pictures.original(self.directory.people.photo(self._person(username).dn))

    @reads
    def thumbnail(self, username: str) -> Picture:
        """The entry's entryCSN says whether it changed since its thumbnail was
        made: an unchanged entry costs one small read, not its picture."""
        if not is_valid_username(username):
            raise NotFound("user not found")
        person = self.directory.people.find("uid", username, ["entryCSN"])
        if person is None:
            raise NotFound("user not found")
        version = (person.dn, *values(person.entry, "entryCSN"))
        return self.pictures.cached_thumbnail(version) or self.pictures.thumbnail(
            self.directory.people.photo(person.dn), version)

    async def with_pictures(self, users: list[User]) -> set[str]:
        """The uuids of those users who have a picture. An entry's version
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
        return self.directory.people.with_photo(uuids)
