"""Hand-written Azure REST responses behind a real azure-core transport, and small in-process fakes.

`FakeAzure` is a `requests.Session` that answers from registered routes; wrapped in azure-core's
`RequestsTransport`, the real SDKs build, send and parse real HTTP requests through it.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from requests.structures import CaseInsensitiveDict

from shared.ports import BlobInfo, NotFound, PreconditionFailed

SUBSCRIPTION, GROUP, WORKSPACE = "00000000-0000-0000-0000-000000000001", "rg-multiline", "mlw-multiline"
ARM = "https://management.azure.com"
WORKSPACE_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)


def _segment(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


class FakeCredential:
    """Issues unsigned JWTs with the audience asked for (azure-ai-ml reads `aud` and `tid`)."""

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        audience = scopes[0].removesuffix("/.default") if scopes else ""
        claims = {"aud": audience, "tid": "tenant", "oid": "object", "exp": 4102444800}
        return AccessToken(f"{_segment({'alg': 'none'})}.{_segment(claims)}.{_segment({'s': 1})}", 4102444800)


@dataclass
class Call:
    method: str
    url: str
    body: bytes | None
    headers: dict

    def json(self):
        return json.loads(self.body)

    @property
    def path(self) -> str:
        return self.url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]


Handler = Callable[[Call], tuple]


class FakeAzure(requests.Session):
    def __init__(self):
        super().__init__()
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.calls: list[Call] = []

    def on(self, method: str, pattern: str, handler: Handler | tuple | list) -> FakeAzure:
        """Answer `method` URLs matching `pattern`; a list of answers is served in order (the last repeats)."""
        if isinstance(handler, list):
            answers = list(handler)

            def handler(call, answers=answers):
                return answers.pop(0) if len(answers) > 1 else answers[0]

        elif isinstance(handler, tuple):
            answer = handler

            def handler(call, answer=answer):
                return answer

        self.routes.insert(0, (method, re.compile(pattern), handler))
        return self

    def transport(self) -> RequestsTransport:
        return RequestsTransport(session=self, session_owner=False)

    def request(self, method, url, data=None, headers=None, **kwargs):
        body = data.read() if hasattr(data, "read") else data
        if isinstance(body, str):
            body = body.encode()
        call = Call(method, url, body, dict(headers or {}))
        self.calls.append(call)
        for route_method, pattern, handler in self.routes:
            if route_method == method and pattern.search(url):
                answer = handler(call)
                break
        else:
            answer = (404, {"error": {"code": "NotFound", "message": f"no fake route for {method} {url}"}})
        status, payload, *rest = answer
        response_headers = rest[0] if rest else {}
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response = requests.Response()
        response.status_code = status
        response.url = url
        response.reason = "fake"
        response.headers = CaseInsensitiveDict(
            {
                "Content-Type": "application/json",
                "x-ms-request-id": "fake",
                "Content-Length": str(len(content)),
                **response_headers,
            }
        )
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(content), status=status, preload_content=False, headers=response.headers
        )
        response.request = requests.Request(method, url).prepare()
        return response

    def matching(self, method: str, fragment: str) -> list[Call]:
        return [call for call in self.calls if call.method == method and fragment in call.url]


def arm_error(status: int, code: str, message: str) -> tuple:
    return status, {"error": {"code": code, "message": message}}


@dataclass
class MemoryStorage:
    """The Storage port in memory, for adapters whose storage side is not under test."""

    blobs: dict = field(default_factory=dict)
    counter: int = 0

    def read(self, container, name):
        try:
            data, etag, _, _ = self.blobs[(container, name)]
        except KeyError:
            raise NotFound(f"{container}/{name}") from None
        return data, etag

    def write(self, container, name, data, *, if_match=None, if_none_match=None, metadata=None):
        current = self.blobs.get((container, name))
        if if_none_match == "*" and current is not None or if_match and (current is None or current[1] != if_match):
            raise PreconditionFailed(f"{container}/{name}")
        self.counter += 1
        etag = f'"0x{self.counter}"'
        self.blobs[(container, name)] = (bytes(data), etag, datetime.now(timezone.utc), dict(metadata or {}))
        return etag

    def list(self, container, prefix=""):
        for (blob_container, name), (data, etag, modified, metadata) in sorted(self.blobs.items()):
            if blob_container == container and name.startswith(prefix):
                yield BlobInfo(name, len(data), etag, modified, metadata)

    def info(self, container, name):
        data, etag, modified, metadata = self.blobs[(container, name)]
        return BlobInfo(name, len(data), etag, modified, metadata)

    def set_metadata(self, container, name, metadata, drop=()):
        data, etag, modified, current = self.blobs[(container, name)]
        merged = {key: value for key, value in {**current, **metadata}.items() if key not in drop}
        self.blobs[(container, name)] = (data, etag, modified, merged)

    def list_prefixes(self, container):
        return sorted(
            {name.split("/", 1)[0] for blob_container, name in self.blobs if blob_container == container and "/" in name}
        )
