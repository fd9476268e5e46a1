"""Azure ML jobs and ACR Tasks as far as our adapters use them, answering at the HTTP layer and doing the work.

The unit tests in this folder hand-write one REST answer per case. The contract suites need more: a
submitted pipeline must really run, and a scheduled build must really build, so that the Azure
adapters can be held to the same behaviour as the local ones. These simulators read what the real
SDKs sent (the pipeline job JSON with its command components; the uploaded tar.gz and the
DockerBuildRequest) and carry it out the way the service would:

- `SimulatedAzureML` runs the pipeline's steps in dependency order, binding `${{inputs.*}}` and
  `${{outputs.*}}` to folders as Azure ML mounts them, and executes each component's command line
  (`python -m training.steps ...`) in-process; the job's status moves NotStarted -> Running ->
  Completed / Failed / Canceled as the steps do.
- `SimulatedAcrTasks` keeps the uploaded build context, and on `scheduleRun` unpacks it and walks
  the Dockerfile: it checks `ARG`s against the build arguments and `COPY` sources against the
  context, and runs the `RUN` commands that need no network (the image's self-test) with this
  Python; the run succeeds with a digest or fails with the command's output, like a Docker build.
"""

from __future__ import annotations

import hashlib
import io
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import threading
import uuid
from pathlib import Path

from tests.azure.fake_azure import WORKSPACE_PATH, arm_error

BINDING = re.compile(r"\$\{\{(inputs|outputs)\.(\w+)\}\}")
PARENT_OUTPUT = re.compile(r"\$\{\{parent\.jobs\.(\w+)\.outputs\.(\w+)\}\}")
PARENT_INPUT = re.compile(r"\$\{\{parent\.inputs\.(\w+)\}\}")
DATASTORE_URI = re.compile(r"azureml://datastores/([^/]+)/paths/(.+)")


class SimulatedAzureML:
    def __init__(self, fake, storage, registry, datastores: dict[str, str]):
        self.storage = storage
        self.registry = registry
        self.datastores = datastores  # datastore name -> blob container
        self.components: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self._lock = threading.Lock()
        compute = {
            "id": f"{WORKSPACE_PATH}/computes/cpu-cluster",
            "name": "cpu-cluster",
            "properties": {"computeType": "AmlCompute", "properties": {}},
        }
        fake.on("GET", r"/workspaces/[^/]+\?", lambda call: (200, {"id": "/" + call.path, "name": "w", "properties": {}}))
        fake.on("GET", r"/computes/cpu-cluster\?", (200, compute))
        fake.on("PUT", r"/components/", self._put_component)
        fake.on("PUT", r"/jobs/[^/?]+\?", self._put_job)
        fake.on("GET", r"/jobs/[^/?]+\?", self._get_job)
        fake.on("POST", r"/jobs/[^/?]+/cancel\?", self._cancel)

    @staticmethod
    def _name(call) -> str:
        return call.path.split("/jobs/", 1)[1].split("/", 1)[0]

    def _put_component(self, call):
        document = call.json()
        self.components["/" + call.path] = document["properties"]["componentSpec"]
        return 201, {**document, "id": "/" + call.path, "name": call.path.split("/")[-1]}

    def _put_job(self, call):
        name, document = self._name(call), call.json()
        with self._lock:
            if name in self.jobs:
                return arm_error(409, "UserError", f"job {name} exists")
            self.jobs[name] = {"status": "NotStarted", "document": document, "log": []}
        threading.Thread(target=self._run, args=(name,), daemon=True).start()
        return 201, {**document, "id": "/" + call.path, "name": name}

    def _get_job(self, call):
        name = self._name(call)
        job = self.jobs.get(name)
        if job is None:
            return arm_error(404, "UserError", f"job {name} not found")
        properties = {**job["document"]["properties"], "status": job["status"]}
        return 200, {"id": f"{WORKSPACE_PATH}/jobs/{name}", "name": name, "properties": properties}

    def _cancel(self, call):
        job = self.jobs.get(self._name(call))
        if job is None:
            return arm_error(404, "UserError", "not found")
        with self._lock:
            if job["status"] in ("Completed", "Failed", "Canceled"):
                return arm_error(400, "UserError", f"job is {job['status']}")
            job["status"] = "Canceled"
        return 202, b"", {"Content-Type": "text/plain"}

    def _set(self, name: str, status: str) -> bool:
        """Move the job to `status` unless it was canceled meanwhile."""
        with self._lock:
            if self.jobs[name]["status"] == "Canceled":
                return False
            self.jobs[name]["status"] = status
            return True

    def _run(self, name: str) -> None:
        from training import steps

        pipeline = self.jobs[name]["document"]["properties"]
        children = dict(pipeline["jobs"])
        done: set[str] = set()
        with tempfile.TemporaryDirectory(prefix="aml-sim-") as workdir:
            root = Path(workdir)
            parent_inputs = {
                key: self._download(value["uri"], root / "inputs" / key) for key, value in pipeline["inputs"].items()
            }
            if not self._set(name, "Running"):
                return
            while len(done) < len(children):
                ready = [
                    child
                    for child, spec in children.items()
                    if child not in done
                    and all(
                        match.group(1) in done
                        for value in spec["inputs"].values()
                        for match in [PARENT_OUTPUT.fullmatch(str(value.get("value", "")))]
                        if match
                    )
                ]
                if not ready:
                    self._set(name, "Failed")
                    return
                child = ready[0]
                command = self._bind(children[child], parent_inputs, root)
                argv = shlex.split(command)
                if argv[:3] != ["python", "-m", "training.steps"]:
                    self.jobs[name]["log"].append(f"{child}: unexpected command {command}")
                    self._set(name, "Failed")
                    return
                if self.jobs[name]["status"] == "Canceled":
                    return
                code = steps.main(argv[3:], storage=self.storage, registry=self.registry)
                self.jobs[name]["log"].append(f"{child}: exit {code}")
                if code != 0:
                    self._set(name, "Failed")
                    return
                done.add(child)
        self._set(name, "Completed")

    def _download(self, uri: str, path: Path) -> Path:
        datastore, blob = DATASTORE_URI.fullmatch(uri).groups()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.storage.read(self.datastores[datastore], blob)[0])
        return path

    def _bind(self, child: dict, parent_inputs: dict, root: Path) -> str:
        component = self.components[child["componentId"]]
        values = {}
        for key, binding in child["inputs"].items():
            text = str(binding.get("value", ""))
            if match := PARENT_INPUT.fullmatch(text):
                values[("inputs", key)] = parent_inputs[match.group(1)]
            elif match := PARENT_OUTPUT.fullmatch(text):
                values[("inputs", key)] = root / "outputs" / match.group(1) / match.group(2)
        for key in child.get("outputs", {}):
            values[("outputs", key)] = root / "outputs" / child["name"] / key
        return BINDING.sub(lambda match: str(values[(match.group(1), match.group(2))]), component["command"])


class SimulatedAcrTasks:
    REGISTRY = "crmultiline"

    def __init__(self, fake, login_server: str = "crmultiline.azurecr.io"):
        self.login_server = login_server
        self.uploads: dict[str, bytes] = {}
        self.runs: dict[str, dict] = {}
        self._lock = threading.Lock()
        fake.on("POST", rf"/registries/{self.REGISTRY}/listBuildSourceUploadUrl\?", self._upload_url)
        fake.on("PUT", r"acrsource\.blob\.core\.windows\.net", self._upload)
        fake.on("POST", rf"/registries/{self.REGISTRY}/scheduleRun\?", self._schedule)
        fake.on("GET", rf"/registries/{self.REGISTRY}/runs/[^/?]+\?", self._get_run)

    def _upload_url(self, call):
        relative = f"source/{uuid.uuid4().hex}.tar.gz"
        url = f"https://acrsource.blob.core.windows.net/upload/{relative}?sv=2024-11-04&sr=b&sp=cw&sig=s"
        return 200, {"uploadUrl": url, "relativePath": relative}

    def _upload(self, call):
        relative = call.url.split("/upload/", 1)[1].split("?", 1)[0]
        self.uploads[relative] = call.body
        headers = {"ETag": '"0x1"', "Last-Modified": "Thu, 03 Dec 2026 12:00:00 GMT", "x-ms-request-server-encrypted": "true"}
        return 201, b"", headers

    def _document(self, run_id: str) -> dict:
        run = self.runs[run_id]
        properties = {"runId": run_id, "status": run["status"], "provisioningState": "Succeeded"}
        if run.get("image"):
            properties["outputImages"] = [run["image"]]
        if run.get("error"):
            properties["runErrorMessage"] = run["error"]
        if run["status"] in ("Succeeded", "Failed"):
            properties["finishTime"] = "2026-12-03T12:05:00Z"
        path = f"/{self.REGISTRY}/runs/{run_id}"
        return {"id": path, "name": run_id, "type": "Microsoft.ContainerRegistry/registries/runs", "properties": properties}

    def _schedule(self, call):
        request = call.json()
        if request.get("type") != "DockerBuildRequest" or request.get("sourceLocation") not in self.uploads:
            return arm_error(400, "InvalidRequest", "no build context at sourceLocation")
        run_id = f"ca{len(self.runs) + 1}"
        with self._lock:
            self.runs[run_id] = {"status": "Queued", "request": request}
        threading.Thread(target=self._build, args=(run_id,), daemon=True).start()
        return 200, self._document(run_id)

    def _get_run(self, call):
        run_id = call.path.rsplit("/", 1)[1]
        if run_id not in self.runs:
            return arm_error(404, "RunNotFound", run_id)
        return 200, self._document(run_id)

    def _build(self, run_id: str) -> None:
        run = self.runs[run_id]
        request = run["request"]
        run["status"] = "Running"
        context = self.uploads[request["sourceLocation"]]
        arguments = {argument["name"]: argument["value"] for argument in request.get("arguments", [])}
        with tempfile.TemporaryDirectory(prefix="acr-sim-") as folder:
            with tarfile.open(fileobj=io.BytesIO(context), mode="r:gz") as archive:
                archive.extractall(folder, filter="data")
            dockerfile = Path(folder) / request["dockerFilePath"]
            if not dockerfile.is_file():
                return self._fail(run, f"failed to read Dockerfile {request['dockerFilePath']}")
            error = self._walk(dockerfile.read_text(), Path(folder), arguments)
        if error:
            return self._fail(run, error)
        repository, tag = request["imageNames"][0].split(":")
        digest = "sha256:" + hashlib.sha256(context + repr(sorted(arguments.items())).encode()).hexdigest()
        run["image"] = {"registry": self.login_server, "repository": repository, "tag": tag, "digest": digest}
        run["status"] = "Succeeded"

    @staticmethod
    def _fail(run: dict, error: str) -> None:
        run["error"] = error
        run["status"] = "Failed"

    @staticmethod
    def _walk(dockerfile: str, folder: Path, arguments: dict) -> str | None:
        instructions = [line.strip() for line in dockerfile.replace("\\\n", " ").splitlines()]
        declared = set()
        for line in instructions:
            if not line or line.startswith("#"):
                continue
            keyword, _, rest = line.partition(" ")
            keyword = keyword.upper()
            if keyword == "ARG":
                declared.add(rest.split("=", 1)[0].strip())
            elif keyword == "COPY":
                for source in shlex.split(rest)[:-1]:
                    if not (folder / source).exists():
                        return f"COPY failed: {source} not found in the build context"
            elif keyword == "RUN" and not rest.startswith("pip "):  # pip needs a network; the venv has the packages
                argv = shlex.split(rest)
                if argv[0] == "python":
                    argv[0] = sys.executable
                completed = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=300)
                if completed.returncode != 0:
                    output = (completed.stdout + completed.stderr).strip()[-800:]
                    return f"RUN {rest[:80]} returned a non-zero code: {completed.returncode}\n{output}"
        unused = set(arguments) - declared
        if unused:
            return f"build arguments not consumed by the Dockerfile: {sorted(unused)}"
        return None
