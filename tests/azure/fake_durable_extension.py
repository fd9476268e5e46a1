"""The Durable Functions extension's HTTP side, as the Python client talks to it (rpcBaseUrl webhooks)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SYSTEM_KEY = "system-key"


class FakeDurableExtension:
    def __init__(self):
        self.instances: dict[str, dict] = {}
        self.requests: list[tuple[str, str, object]] = []
        extension = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, payload=None):
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if isinstance(body, str):  # the Python client sends its JSON as a JSON string
                    body = json.loads(body)
                extension.requests.append(("POST", self.path, body))
                status, payload = extension.post(self.path.split("?")[0], body)
                self._answer(status, payload)

            def do_GET(self):
                extension.requests.append(("GET", self.path, None))
                status, payload = extension.get(self.path.split("?")[0])
                self._answer(status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def binding(self) -> str:
        """The client binding JSON the Functions host hands a `durable_client_input` parameter."""
        query = f"taskHub=MultilineHub&connection=Storage&code={SYSTEM_KEY}"
        instance = f"{self.base}/runtime/webhooks/durabletask/instances/INSTANCEID"
        return json.dumps(
            {
                "taskHubName": "MultilineHub",
                "creationUrls": {
                    "createNewInstancePostUri": f"{self.base}/runtime/webhooks/durabletask/orchestrators/{{functionName}}[/{{instanceId}}]?{query}",
                },
                "managementUrls": {
                    "id": "INSTANCEID",
                    "statusQueryGetUri": f"{instance}?{query}",
                    "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
                    "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
                    "purgeHistoryDeleteUri": f"{instance}?{query}",
                },
                "baseUrl": f"{self.base}/runtime/webhooks/durabletask",
                "requiredQueryStringParameters": f"code={SYSTEM_KEY}",
                "rpcBaseUrl": f"{self.base}/durabletask/",
            }
        )

    def post(self, path: str, body):
        match = re.fullmatch(r"/durabletask/orchestrators/([^/]+)/([^/]+)", path)
        if match:
            name, instance_id = match.groups()
            current = self.instances.get(instance_id)
            if current and current["runtimeStatus"] in ("Pending", "Running"):
                return 500, {"Message": f"An instance with ID '{instance_id}' already exists."}
            self.instances[instance_id] = {
                "name": name,
                "runtimeStatus": "Pending",
                "input": body,
                "events": [],
                "customStatus": None,
            }
            return 202, {"id": instance_id}
        match = re.fullmatch(r"/durabletask/instances/([^/]+)/raiseEvent/([^/]+)", path)
        if match:
            instance_id, event = match.groups()
            current = self.instances.get(instance_id)
            if current is None:
                return 404, None
            if current["runtimeStatus"] not in ("Pending", "Running"):
                return 410, None
            current["events"].append((event, body))
            return 202, None
        return 404, None

    def get(self, path: str):
        match = re.fullmatch(r"/durabletask/instances/([^/]+)", path)
        current = self.instances.get(match.group(1)) if match else None
        if current is None:
            return 404, None
        return 200 if current["runtimeStatus"] == "Completed" else 202, {
            "name": current["name"],
            "instanceId": match.group(1),
            "runtimeStatus": current["runtimeStatus"],
            "input": current["input"],
            "customStatus": current["customStatus"],
            "output": current.get("output"),
            "createdTime": "2026-12-03T12:00:00Z",
            "lastUpdatedTime": "2026-12-03T12:01:00Z",
        }
