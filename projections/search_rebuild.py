"""``chat rebuild search``: the search index made again from the events topic.

The index is emptied and filled again in place, by the projector's own code, while the live
projector goes on writing to it: searches find less until the rebuild has passed their
messages. That converges on the live state because every write is idempotent and the rebuild's
catch-up applies, in log order, everything after its marker again (an add never overwrites, an
edit replaces, a deletion removes). Deleted messages come back from the log without a body
(their keys are gone, see ``projections/message_keys.py``) and are removed again by their
deletion.
"""

from __future__ import annotations

from collections.abc import Sequence

from chat.events import Event
from chat.settings import Settings
from projections.search import SearchIndex, make_search_index
from projections.timeline_projection import project_search


class SearchRebuild:
    """A ``projections.rebuild.RebuildTarget`` for the search index, either backend."""

    name = "search"

    def __init__(self, settings: Settings) -> None:
        self.index: SearchIndex = make_search_index(settings)
        self._before = 0

    async def open(self) -> None:
        await self.index.open()
        self._before = await self.index.count()
        await self.index.clear()

    async def apply(self, events: Sequence[Event]) -> None:
        await project_search(self.index, events)

    async def apply_live(self, events: Sequence[Event]) -> None:
        await project_search(self.index, events)

    async def switch(self) -> int:
        return await self.index.count()

    async def size(self) -> int:
        return self._before  # what the index held when the rebuild began

    async def close(self) -> None:
        await self.index.close()
