"""The Faust topics the agents consume, and the project's codec registered with Faust.

Values on every topic are ``Envelope`` records (``chat.codec``): Faust decodes them
into ``Decoded`` through the codec registered here.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from chat.codec import default_codec
from chat.events import event_key
from streams.app import app, settings

CODEC_NAME = "chat_avro"


class AvroEnvelopeCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, (bytes, bytearray)):
            return bytes(obj)
        return default_codec().encode(obj, key=event_key(obj))

    def _loads(self, data: bytes) -> Any:
        return default_codec().decode(data)


codecs.register(CODEC_NAME, AvroEnvelopeCodec())


def _topic(name: str, partitions: int | None) -> Any:
    return app.topic(name, key_type=bytes, key_serializer="raw", value_serializer=CODEC_NAME,
                     partitions=partitions, internal=False)


commands_topic = _topic(settings.commands_topic, settings.partitions)
events_topic = _topic(settings.events_topic, settings.partitions)

presence_signals_topic = _topic(settings.presence_signals_topic, settings.partitions)
presence_topic = _topic(settings.presence_topic, settings.partitions)

media_topic = _topic(settings.media_topic, settings.partitions)
push_topic = _topic(settings.push_topic, settings.partitions)
profiles_topic = _topic(settings.profiles_topic, settings.partitions)
