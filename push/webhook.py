"""``webhook``: an HTTP POST of a JSON payload to the device's ``push_token``, an https URL
(http only where the operator allows it), sent through the egress guard (``push/egress.py``).

Headers: ``Idempotency-Key`` (message id and device: a receiver can drop a retried duplicate)
and ``X-Chat-Push-Attempt``. The payload carries no body when the conversation is private.
"""

from __future__ import annotations

import httpx

from chat.events import PushRequested
from push.egress import EgressPolicy
from push.providers import PushHttpRequest, data_fields, json_body


class WebhookProvider:
    platform = "webhook"

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    async def request(self, job: PushRequested, client: httpx.AsyncClient) -> PushHttpRequest:
        self.policy.check_url(job.push_token)  # registered before the rule, or the rule changed
        payload = {**data_fields(job), "seq": job.seq, "sender_id": job.sender_id, "user_id": job.user_id,
                   "device_id": job.device_id, "title": job.title, "body": job.body,
                   "collapse_key": job.collapse_key, "sent_at": job.sent_at}
        return PushHttpRequest(job.push_token, {
            "Content-Type": "application/json", "Idempotency-Key": f"{job.message_id}:{job.device_id}",
            "X-Chat-Push-Attempt": str(job.attempt)}, json_body(payload), client_chosen=True)
