"""A fake of the Google Cloud REST endpoints Hakobune's Cloud Run backend uses,
on 127.0.0.1 only, for tests that drive the real client libraries.

It implements just enough, the way Google answers:
- Cloud Run v2: services get/create/patch/delete, revisions list, IAM
  getIamPolicy/setIamPolicy, long-running operations that answer done=false
  `polls_before_done` times before done=true with the result (or an error).
  A patch whose template did not change makes no new revision; traffic
  LATEST follows the newest revision. An image whose name contains
  "crashes" makes a revision that never becomes ready; one containing
  "missing" ends the operation with Cloud Run's image-not-found error.
- Cloud Build v1: builds create (an operation with BuildOperationMetadata)
  and get; the operation moves QUEUED → WORKING → SUCCESS (or FAILURE when
  `build_outcome` says so) over the polls, writing the build's log into the
  logs bucket on the Cloud Storage emulator in two parts, the way Cloud Build
  grows log-<id>.txt (into `log_entries` with CLOUD_LOGGING_ONLY); results
  name the pushed image with a digest. A build with its own `serviceAccount`
  is refused, as Cloud Build refuses it, unless it keeps its log in a bucket
  or in Cloud Logging only.
- Service accounts: Cloud Run and Cloud Build refuse to run as an account
  not in `service_accounts` (None: every account exists) or not in `acts_as`
  (None: Hakobune may act as each), with IAM's actAs error; IAM v1
  serviceAccounts get and testIamPermissions answer from the same sets.
- Cloud Logging v2 entries:list, Cloud Monitoring v3 timeSeries.list,
  Artifact Registry v1 repositories get (those in `repositories`) and packages
  delete (an operation), Cloud Build builds list.
- Secret Manager as Cloud Run sees it: an env var that references a secret
  not in `secrets`, or one whose `readable` is False, ends the rollout with
  Cloud Run's error for it.
- OAuth 2.0 token endpoint (POST /token) for service-account keys whose
  token_uri points here: it checks the JWT assertion's signature against the
  public keys in `trusted_keys` (email: PEM) and hands out a bearer token;
  each request records the token it carried (`Recorded.bearer`), and
  `issued_tokens` says whose each token is.
Every request is recorded in `requests`; `fail(...)` makes the next matching
request answer with a Google error body."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import requests

RUN_SERVICE = "type.googleapis.com/google.cloud.run.v2.Service"
BUILD = "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
BUILD_METADATA = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    body: dict | None
    bearer: str = ""


class FakeGCP:
    def __init__(self, *, storage_url: str = "", polls_before_done: int = 1):
        self.storage_url = storage_url.rstrip("/")
        self.polls_before_done = polls_before_done
        self.requests: list[Recorded] = []
        self.services: dict[str, dict] = {}
        self.revisions: dict[str, dict] = {}
        self.policies: dict[str, dict] = {}
        self.operations: dict[str, dict] = {}
        self.builds: dict[str, dict] = {}
        self.build_outcome = "SUCCESS"
        self.build_log = ["Step #0: Step 1/6 : FROM python:3.12-slim", "Step #0: Successfully built 0123abcd",
                          "PUSH", "DONE"]
        self.log_entries: list[dict] = []
        self.secrets: dict[str, dict] = {}
        self.service_accounts: set[str] | None = None
        self.acts_as: set[str] | None = None
        self.repositories = {"apps"}
        self.project_number = "123456789012"
        self.trusted_keys: dict[str, str] = {}
        self.issued_tokens: dict[str, str] = {}
        self.time_series: dict[str, list[dict]] = {}
        self._failures: list[dict] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- lifecycle ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeGCP:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests set and read ------------------------------------------------

    def fail(self, method: str, path_pattern: str, status: int, message: str, *, details=None, times: int = 1):
        """The next `times` requests matching answer with this error."""
        self._failures.append({"method": method.upper(), "pattern": re.compile(path_pattern), "status": status,
                               "message": message, "details": details or [], "times": times})

    def crash(self, service_id: str, message: str, at: str = "2026-11-30T08:00:00Z", *,
              condition: str = "ContainerHealthy") -> str:
        """Cloud Run saying the service's serving revision failed after it was
        ready (its container crashed, or ran out of memory): a condition of the
        revision turns CONDITION_FAILED with Cloud Run's message. Returns the
        revision's name."""
        with self._lock:
            [service] = [s for name, s in self.services.items() if name.endswith(f"/services/{service_id}")]
            revision = self.revisions[service["latestReadyRevision"]]
            revision["conditions"] = [c for c in revision["conditions"] if c["type"] != condition] + [
                {"type": condition, "state": "CONDITION_FAILED", "message": message, "lastTransitionTime": at}]
            return revision["name"].rsplit("/", 1)[-1]

    def calls(self, method: str | None = None, pattern: str = "") -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method.upper()) and re.search(pattern, r.path)]

    # -- the HTTP side ------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
                    body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                else:
                    body = json.loads(raw) if raw.strip() else None
                bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                with fake._lock:
                    fake.requests.append(Recorded(self.command, path, query, body, bearer))
                    status, payload = fake._dispatch(self.command, path, query, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        return Handler

    def _dispatch(self, method, path, query, body):
        for failure in self._failures:
            if failure["times"] and failure["method"] == method and failure["pattern"].search(path):
                failure["times"] -= 1
                return failure["status"], error_body(failure["status"], failure["message"], failure["details"])
        for verb, pattern, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return handler(match, query, body or {})
        return 404, error_body(404, f"fake_gcp has no {method} {path}")

    def _routes(self):
        loc = r"projects/[^/]+/locations/[^/]+"
        return [
            ("GET", rf"/v2/({loc}/operations/[^/]+)", self._get_operation),
            ("GET", rf"/v2/({loc}/services/[^/:]+):getIamPolicy", self._get_policy),
            ("POST", rf"/v2/({loc}/services/[^/:]+):setIamPolicy", self._set_policy),
            ("GET", rf"/v2/({loc}/services/[^/]+)/revisions", self._list_revisions),
            ("GET", rf"/v2/({loc}/services/[^/:]+)", self._get_service),
            ("GET", rf"/v2/({loc})/services", self._list_services),
            ("POST", r"/token", self._token),
            ("POST", rf"/v2/({loc})/services", self._create_service),
            ("PATCH", rf"/v2/({loc}/services/[^/:]+)", self._update_service),
            ("DELETE", rf"/v2/({loc}/services/[^/:]+)", self._delete_service),
            ("POST", r"/v1/projects/([^/]+)/builds", self._create_build),
            ("GET", r"/v1/projects/([^/]+)/builds/([^/:]+)", self._get_build),
            ("GET", r"/v1/(operations/.+)", self._get_operation),
            ("POST", r"/v2/entries:list", self._list_entries),
            ("GET", r"/v3/projects/([^/]+)/timeSeries", self._list_time_series),
            ("DELETE", rf"/v1/({loc}/repositories/[^/]+/packages/.+)", self._delete_package),
            ("GET", rf"/v1/({loc})/repositories/([^/]+)", self._get_repository),
            ("GET", r"/v1/projects/([^/]+)/builds", self._list_builds),
            ("GET", rf"/v1/({loc}/operations/[^/]+)", self._get_operation),
            ("GET", r"/v1/projects/([^/]+)/serviceAccounts/([^/:]+)", self._get_account),
            ("POST", r"/v1/projects/([^/]+)/serviceAccounts/([^/:]+):testIamPermissions", self._test_account),
        ]

    # -- operations -----------------------------------------------------------------

    def _operation(self, name: str, *, finish, metadata=None, on_poll=None) -> dict:
        """`finish()` returns (response, error) when the operation ends."""
        self.operations[name] = {"polls": 0, "finish": finish, "metadata": metadata, "on_poll": on_poll, "done": None}
        op = {"name": name, "done": False}
        if metadata is not None:
            op["metadata"] = metadata
        return op

    def _get_operation(self, match, query, body):
        name = match.group(1)
        entry = self.operations.get(name)
        if entry is None:
            return 404, error_body(404, f"operation {name} not found")
        if entry["done"] is None:
            entry["polls"] += 1
            if entry["on_poll"]:
                entry["on_poll"](entry["polls"])
            if entry["polls"] > self.polls_before_done:
                entry["done"] = entry["finish"]()
        op = {"name": name, "done": entry["done"] is not None}
        metadata = entry["metadata"]() if callable(entry["metadata"]) else entry["metadata"]
        if metadata is not None:
            op["metadata"] = metadata
        if entry["done"] is not None:
            response, error = entry["done"]
            if error:
                op["error"] = error
            elif response is not None:
                op["response"] = response
        return 200, op

    def _new_op_name(self, parent: str) -> str:
        return f"{parent}/operations/op-{next(self._ids)}"

    # -- service accounts (IAM) -----------------------------------------------------------

    def account_refusal(self, account: str) -> tuple[int, dict] | None:
        """IAM's answer when the caller may not act as `account` (or it does
        not exist: Google says both the same way)."""
        exists = self.service_accounts is None or account in self.service_accounts
        allowed = self.acts_as is None or account in self.acts_as
        if account and not (exists and allowed):
            return 403, error_body(403, f"Permission 'iam.serviceaccounts.actAs' denied on service account {account} "
                                        "(or it may not exist).")
        return None

    def _get_account(self, match, query, body):
        email = match.group(2)
        if self.service_accounts is not None and email not in self.service_accounts:
            return 404, error_body(404, "Unknown service account")
        project = email.partition("@")[2].removesuffix(".iam.gserviceaccount.com")
        return 200, {"name": f"projects/{project}/serviceAccounts/{email}", "email": email, "projectId": project,
                     "uniqueId": str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16))}

    def _test_account(self, match, query, body):
        email = match.group(2)
        allowed = self.acts_as is None or email in self.acts_as
        return 200, {"permissions": list(body.get("permissions", [])) if allowed else []}

    # -- Cloud Run: services ----------------------------------------------------------

    def _get_service(self, match, query, body):
        service = self.services.get(match.group(1))
        if service is None:
            return 404, error_body(404, f"Resource '{match.group(1).rsplit('/', 1)[-1]}' of kind 'SERVICE' does not exist.")
        return 200, service

    def _list_services(self, match, query, body):
        prefix = match.group(1) + "/services/"
        return 200, {"services": [s for name, s in self.services.items() if name.startswith(prefix)]}

    def _create_service(self, match, query, body):
        parent = match.group(1)
        refused = self.account_refusal(body.get("template", {}).get("serviceAccount", ""))
        if refused:
            return refused
        name = f"{parent}/services/{query['serviceId']}"
        if name in self.services:
            return 409, error_body(409, f"Resource '{query['serviceId']}' already exists.")
        service = copy.deepcopy(body)
        service.update(name=name, uid=hashlib.md5(name.encode()).hexdigest(), generation="1",
                       uri=f"https://{query['serviceId']}-fake.a.run.app", etag='"e1"')
        return 200, self._rollout(parent, name, service, new=True)

    def _update_service(self, match, query, body):
        name = match.group(1)
        current = self.services.get(name)
        if current is None:
            return 404, error_body(404, f"Resource '{name}' of kind 'SERVICE' does not exist.")
        refused = self.account_refusal(body.get("template", {}).get("serviceAccount", ""))
        if refused:
            return refused
        service = {**current, **copy.deepcopy(body), "name": name, "uri": current["uri"]}
        service["generation"] = str(int(current.get("generation", "1")) + 1)
        service["etag"] = f'"e{service["generation"]}"'
        return 200, self._rollout(name.rsplit("/services/", 1)[0], name, service, new=False)

    def _rollout(self, parent, name, service, *, new):
        previous = self.services.get(name)
        image = service["template"]["containers"][0]["image"]
        if "missing" in image:
            error = {"code": 5, "message": f"Revision '{service['name'].rsplit('/', 1)[-1]}-00001' is not ready and "
                                           f"cannot serve traffic. Image '{image}' not found."}
            return self._operation(self._new_op_name(parent), finish=lambda: (None, error))
        refused = self._secret_refusal(service)
        if refused:
            return self._operation(self._new_op_name(parent), finish=lambda: (None, {"code": 9, "message": refused}))
        template_changed = previous is None or previous.get("template") != service.get("template")
        if template_changed:
            count = sum(1 for r in self.revisions if r.startswith(name + "/")) + 1
            revision_id = service["template"].get("revision") or f"{name.rsplit('/', 1)[-1]}-{count:05d}-f{count}k"
            ready = "crashes" not in image
            revision = {
                "name": f"{name}/revisions/{revision_id}",
                "labels": service["template"].get("labels", {}),
                "containers": service["template"]["containers"],
                "scaling": service["template"].get("scaling", {}),
                "serviceAccount": service["template"].get("serviceAccount")
                or f"{self.project_number}-compute@developer.gserviceaccount.com",
                "conditions": [{"type": "Ready", "state": "CONDITION_SUCCEEDED" if ready else "CONDITION_FAILED",
                                "message": "" if ready else "The user-provided container failed to start and listen "
                                "on the port defined provided by the PORT=8080 environment variable."}],
            }
            self.revisions[revision["name"]] = revision
            service["latestCreatedRevision"] = revision["name"]
            if ready:
                service["latestReadyRevision"] = revision["name"]
            service["terminalCondition"] = {"type": "Ready", **{k: revision["conditions"][0][k] for k in ("state", "message")}}
        else:
            for key in ("latestCreatedRevision", "latestReadyRevision", "terminalCondition"):
                if previous and key in previous:
                    service[key] = previous[key]
        statuses = []
        for target in service.get("traffic", []):
            revision = target.get("revision") or service.get("latestReadyRevision", "").rsplit("/", 1)[-1]
            statuses.append({"type": target.get("type", ""), "revision": revision, "percent": target.get("percent", 0)})
        service["trafficStatuses"] = statuses
        self.services[name] = service
        result = {"@type": RUN_SERVICE, **service}
        return self._operation(self._new_op_name(parent), finish=lambda: (result, None))

    def _secret_refusal(self, service) -> str:
        """Cloud Run's error for the first env var whose secret it cannot read."""
        runs_as = service["template"].get("serviceAccount") or f"{self.project_number}-compute@developer.gserviceaccount.com"
        for index, var in enumerate(service["template"]["containers"][0].get("env", [])):
            ref = var.get("valueSource", {}).get("secretKeyRef")
            if not ref:
                continue
            name = ref["secret"].rsplit("/", 1)[-1]
            path = f"projects/{self.project_number}/secrets/{name}/versions/{ref.get('version', 'latest')}"
            secret = self.secrets.get(name)
            version = ref.get("version", "latest")
            if secret is None or (version != "latest" and version not in secret.get("versions", {"1"})):
                return (f"spec.template.spec.containers[0].env[{index}].value_from.secret_key_ref.name: "
                        f"Secret {path} was not found")
            if not secret.get("readable", True):
                return (f"Permission denied on secret: {path} for Revision service account {runs_as}. The service "
                        "account used must be granted the 'Secret Manager Secret Accessor' role "
                        "(roles/secretmanager.secretAccessor) at the secret, project or higher level.")
        return ""

    def _token(self, match, query, body):
        from google.auth import jwt

        assertion = body.get("assertion", "")
        try:
            claims = jwt.decode(assertion, verify=False)
            key = self.trusted_keys[claims["iss"]]
            # google-auth signs for Google's token endpoint whatever token_uri says.
            jwt.decode(assertion, certs=key, audience="https://oauth2.googleapis.com/token")
        except (KeyError, ValueError) as exc:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT Signature ({exc})."}
        token = f"ya29.fake-{next(self._ids)}"
        self.issued_tokens[token] = claims["iss"]
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def who(self, bearer: str) -> str | None:
        """Whose credential a request's bearer is: a token this fake issued, or
        a JWT the client signed itself with a trusted key (what Google's client
        libraries send for service-account keys); None for anything else."""
        from google.auth import jwt

        if bearer in self.issued_tokens:
            return self.issued_tokens[bearer]
        try:
            issuer = jwt.decode(bearer, verify=False)["iss"]
            jwt.decode(bearer, certs=self.trusted_keys[issuer], verify=True, audience=None)
        except (KeyError, ValueError):
            return None
        return issuer

    def _delete_service(self, match, query, body):
        name = match.group(1)
        service = self.services.pop(name, None)
        if service is None:
            return 404, error_body(404, f"Resource '{name}' of kind 'SERVICE' does not exist.")
        result = {"@type": RUN_SERVICE, **service}
        return 200, self._operation(self._new_op_name(name.rsplit("/services/", 1)[0]), finish=lambda: (result, None))

    def _list_revisions(self, match, query, body):
        prefix = match.group(1) + "/revisions/"
        return 200, {"revisions": [r for name, r in self.revisions.items() if name.startswith(prefix)]}

    def _get_policy(self, match, query, body):
        return 200, self.policies.get(match.group(1), {"etag": "BwAAAA=="})

    def _set_policy(self, match, query, body):
        policy = dict(body["policy"])
        policy["etag"] = "BwAAAB=="
        self.policies[match.group(1)] = policy
        return 200, policy

    # -- Cloud Build --------------------------------------------------------------------

    def _create_build(self, match, query, body):
        project = match.group(1)
        logging = LOGGING_MODES.get(body.get("options", {}).get("logging", 0), body.get("options", {}).get("logging"))
        account = body.get("serviceAccount", "")
        if account and not (body.get("logsBucket") or logging in ("CLOUD_LOGGING_ONLY", "NONE")
                            or body.get("options", {}).get("defaultLogsBucketBehavior") in (1, "REGIONAL_USER_OWNED_BUCKET")):
            return 400, error_body(400, "generic::invalid_argument: if 'build.service_account' is specified, the build "
                                        "must either (a) specify 'build.logs_bucket', (b) use the REGIONAL_USER_OWNED_BUCKET "
                                        "build.options.default_logs_bucket_behavior option, or (c) use either "
                                        "CLOUD_LOGGING_ONLY / NONE logging options")
        refused = self.account_refusal(account.rpartition("/serviceAccounts/")[2])
        if refused:
            return refused
        build_id = f"b{next(self._ids):04d}-fake"
        build = {**copy.deepcopy(body), "id": build_id, "projectId": project, "status": "QUEUED",
                 "logUrl": f"https://console.cloud.google.com/cloud-build/builds/{build_id}"}
        source = body["source"]["storageSource"]
        build["_source_files"] = self._source_files(source["bucket"], source["object"])
        self.builds[build_id] = build
        lines = list(self.build_log)
        half = len(lines) // 2

        def on_poll(polls):
            if build["status"] == "QUEUED":
                build["status"] = "WORKING"
                self._write_log(build, lines[:half])

        def finish():
            self._write_log(build, lines)
            build["status"] = self.build_outcome
            if self.build_outcome != "SUCCESS":
                build["statusDetail"] = "Build step 0 \"gcr.io/cloud-builders/docker\" failed: step exited with non-zero status: 1"
                return None, {"code": 2, "message": "Build failed; check build logs for details"}
            image = build["images"][0]
            digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
            build["results"] = {"images": [{"name": image, "digest": digest}]}
            return {"@type": BUILD, **public(build)}, None

        name = f"operations/build/{project}/{build_id}"
        op = self._operation(name, finish=finish, on_poll=on_poll,
                             metadata=lambda: {"@type": BUILD_METADATA, "build": public(build)})
        op["metadata"] = {"@type": BUILD_METADATA, "build": public(build)}
        return 200, op

    def _get_build(self, match, query, body):
        build = self.builds.get(match.group(2))
        if build is None:
            return 404, error_body(404, "build not found")
        return 200, public(build)

    def _source_files(self, bucket, object_name) -> dict:
        """Downloads the uploaded source from the storage emulator, as Cloud Build does."""
        import io
        import tarfile

        if not self.storage_url:
            return {}
        response = requests.get(f"{self.storage_url}/download/storage/v1/b/{bucket}/o/{requests.utils.quote(object_name, safe='')}",
                                params={"alt": "media"}, timeout=10)
        response.raise_for_status()
        files = {}
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    files[member.name] = tar.extractfile(member).read().decode("utf-8", "replace")
        return files

    def _write_log(self, build, lines):
        logging = build.get("options", {}).get("logging", 0)
        if LOGGING_MODES.get(logging, logging) in ("CLOUD_LOGGING_ONLY", "NONE"):
            if LOGGING_MODES.get(logging, logging) == "CLOUD_LOGGING_ONLY":
                known = {e["insertId"] for e in self.log_entries}
                for index, line in enumerate(lines):
                    entry = {"logName": f"projects/{build['projectId']}/logs/cloudbuild", "insertId": f"{build['id']}-{index}",
                             "resource": {"type": "build", "labels": {"build_id": build["id"]}},
                             "timestamp": f"2026-11-28T10:00:{index:02d}Z", "textPayload": line}
                    if entry["insertId"] not in known:
                        self.log_entries.append(entry)
            return
        if not self.storage_url or not lines:
            return
        bucket, _, prefix = build["logsBucket"].removeprefix("gs://").partition("/")
        name = f"{prefix}/log-{build['id']}.txt" if prefix else f"log-{build['id']}.txt"
        requests.post(f"{self.storage_url}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": name},
                      data="".join(line + "\n" for line in lines).encode(), timeout=10).raise_for_status()

    # -- Logging, Monitoring, Artifact Registry -------------------------------------------

    def _list_entries(self, match, query, body):
        wanted = re.search(r'resource\.labels\.service_name="([^"]+)"', body.get("filter", ""))
        entries = [e for e in self.log_entries
                   if not wanted or e.get("resource", {}).get("labels", {}).get("service_name") == wanted.group(1)]
        if body.get("orderBy", "").endswith("desc"):
            entries = sorted(entries, key=lambda e: e["timestamp"], reverse=True)
        return 200, {"entries": entries[: int(body.get("pageSize") or 1000)]}

    def _list_time_series(self, match, query, body):
        metric = re.search(r'metric\.type="([^"]+)"', query.get("filter", ""))
        reducer = query.get("aggregation.crossSeriesReducer", "")
        series = [s for s in self.time_series.get(metric.group(1) if metric else "", [])
                  if s.get("_reducer", reducer) == reducer]
        return 200, {"timeSeries": [{k: v for k, v in s.items() if not k.startswith("_")} for s in series]}

    def _get_repository(self, match, query, body):
        name = f"{match.group(1)}/repositories/{match.group(2)}"
        if match.group(2) not in self.repositories:
            return 404, error_body(404, f"Requested entity was not found: {name}")
        return 200, {"name": name, "format": "DOCKER"}

    def _list_builds(self, match, query, body):
        builds = [public(b) for b in self.builds.values() if b["projectId"] == match.group(1)]
        return 200, {"builds": builds[: int(query.get("pageSize") or 100)]}

    def _delete_package(self, match, query, body):
        name = match.group(1)
        parent = name.split("/repositories/")[0]
        return 200, self._operation(self._new_op_name(parent), finish=lambda: ({}, None))


# Cloud Build's LoggingMode, which the REST transport sends as numbers.
LOGGING_MODES = {0: "LOGGING_UNSPECIFIED", 1: "LEGACY", 2: "GCS_ONLY", 3: "STACKDRIVER_ONLY", 4: "NONE",
                 5: "CLOUD_LOGGING_ONLY"}


def public(build: dict) -> dict:
    return {k: v for k, v in build.items() if not k.startswith("_")}


def error_body(status: int, message: str, details=None) -> dict:
    return {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN"),
                      "details": details or []}}


def error_info(reason: str, **metadata) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
            "metadata": metadata}
