"""Pictures cropped to the square a user chose, normalised like every upload."""

from __future__ import annotations

from app.pictures import Crop
from app.service.base import ServiceBase, writes


class PictureCrops(ServiceBase):
    async def set_cropped_picture(self, username: str, raw: bytes, crop: Crop) -> None:
        """Normalise an upload, keeping only `crop` (InvalidPicture otherwise),
        and store it. Decoding runs on the pictures' pool, as every upload's."""
        jpeg = await self.pools.pictures.run(self.pictures.normalise, raw, crop)
        await self._store_cropped(username, jpeg)

    @writes
    def _store_cropped(self, username: str, jpeg: bytes) -> None:
        self.directory.people.set_photo(self._person(username).dn, jpeg)
