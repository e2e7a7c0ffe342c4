"""Push notifications: provider request builders (``webhook``, FCM HTTP v1, APNs, Web Push),
the sender with retries and a dead-letter topic (``sender.py``)."""
