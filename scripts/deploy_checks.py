#!/usr/bin/env python3
"""Checks of the deployment artefacts that schemas cannot make.

Run by scripts/validate-deploy.sh, on docker-compose.yml as resolved by
`docker-compose config` and on each Kustomize rendering of k8s/ (`NAME=FILE`,
NAME being base or an overlay's directory: cpu, gpu, cpu-recording; the part
before the first `-` says where the transcoders run):

  deploy_checks.py invariants --compose RESOLVED.yml --k8s cpu=cpu.yaml ...
      Probes, security context, advertised addresses, the ingest and edge
      Services, references between objects, one namespace, GPU only where
      it belongs; the database URL of ingest and control (the same
      PostgreSQL, its password the database's own, from the Secret on
      Kubernetes, never a literal), the control plane's edge keys (the
      edge's) and data directory; recording ([recording] as
      FERROCAST_RECORDING__* variables): the same settings for package,
      edge and control wherever one has them (on Kubernetes from the same
      Secret or ConfigMap), none for ingest and transcode, the packager's
      spool and control's uploads on volumes that hold them, the compose
      file's object store, and no secret access key as a literal value or
      in a ConfigMap.
  deploy_checks.py roles --bin FERROCAST --compose RESOLVED.yml --k8s ...
      Starts every Ferrocast role of every deployment, with the environment,
      arguments and config file its manifest gives it, against a scratch
      redis-server and a scratch PostgreSQL (Debian's initdb and pg_ctl; the
      users and databases the URLs name, made afresh for each deployment);
      each must print its ready line, answer /healthz and /readyz, and pass
      its compose health check, and `control` must write the first admin
      token to its data directory. Unknown FERROCAST_* variables and config
      keys are start-up errors, so this is what proves the manifests'
      settings are accepted. Addresses are moved to 127.0.0.1 and free
      ports (flags, which win over the environment and the file); database
      URLs keep their user, password and database, on the scratch server.

  deploy_checks.py topology --compose RESOLVED.yml --scratch DIR --redis-port N
                            [--database-url URL]
      How to run the compose file's services here as processes that reach
      each other (JSON), for the test that plays a stream through them
      (services/ferrocast/tests/compose.rs). Every FERROCAST_DATABASE_URL
      becomes URL, which the compose file's ingest and control need.

Prints one line on success; every problem found, and exit status 1, on
failure.
"""

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "ferrocast.toml"
ROLES = ("ingest", "transcode", "package", "edge", "control")
# The roles that open the control plane's database (database_url), which
# must be the same PostgreSQL for all of them.
DATABASE_ROLES = ("ingest", "control")
# May read the database too (each stream's own recording policy), with the
# same URL as the others.
DATABASE_OPTIONAL_ROLES = ("package",)
DATABASE_VAR = "FERROCAST_DATABASE_URL"
POSTGRES_PORT = 5432
# The file under data_dir (FERROCAST_DATA_DIR, /data in the image) that
# control writes the first admin token to, against an empty database.
ADMIN_TOKEN_FILE = "admin-token"
# The port each role advertises to the others (cluster.advertise): the
# media bus of ingest and transcode (cluster.bus_listen's default), the HTTP
# origin of package (http_listen's default). The edge advertises nothing.
ADVERTISED_PORT = {"ingest": 7000, "transcode": 7000, "package": 8080}
HTTP_PORT = 8080  # http_listen's default: /healthz, /readyz
MIN_TRANSCODE_GRACE_S = 30  # a transcoder's handover drain on SIGTERM
GPU = "nvidia.com/gpu"
# Recording to S3 ([recording]): the roles that read the section, which
# must all read the same values (package records, edge serves the
# recordings, control takes VOD uploads); ingest and transcode ignore it.
RECORDING_ROLES = ("package", "edge", "control")
RECORDING_PREFIX = "FERROCAST_RECORDING__"
# Any variable of a secret access key (FERROCAST_RECORDING__S3__..., AWS_...).
SECRET_KEY_SUFFIX = "SECRET_ACCESS_KEY"
# The [recording] defaults the volumes are sized against.
SPOOL_MAX_BYTES = 1 << 30  # recording.spool_max_bytes
UPLOAD_MAX_BYTES = 4 << 30  # recording.upload_max_bytes
# Objects without a namespace.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
}


class Problems(list):
    def check(self, ok, where, message):
        if not ok:
            self.append(f"{where}: {message}")
        return ok


def load_all(path):
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def k8s_sets(pairs):
    """`NAME=FILE` arguments to {NAME: [objects]}."""
    sets = {}
    for pair in pairs:
        name, _, path = pair.partition("=")
        sets[name] = load_all(path)
    return sets


def env_list_to_dict(env):
    """Compose's environment: a mapping, or a list of NAME=VALUE."""
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in env or [])


def compose_services(path):
    """(name, role, service) for each Ferrocast service of the compose file."""
    services = yaml.safe_load(Path(path).read_text())["services"]
    for name, service in services.items():
        command = service.get("command") or []
        if isinstance(command, str):
            command = command.split()
        if command and command[0] in ROLES:
            yield name, command[0], service


def deployments(objects):
    return [o for o in objects if o["kind"] == "Deployment"]


def workloads(objects):
    """Deployments and StatefulSets (PostgreSQL)."""
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def ferrocast_containers(objects):
    """(deployment, pod spec, container, role) for each Ferrocast container."""
    for dep in deployments(objects):
        pod = dep["spec"]["template"]["spec"]
        for container in pod["containers"]:
            args = container.get("args") or []
            if args and args[0] in ROLES:
                yield dep, pod, container, args[0]


def env_value(container, name):
    for var in container.get("env") or []:
        if var["name"] == name:
            return var.get("value")
    return None


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    return None


# --- invariants -------------------------------------------------------------


def check_compose(problems, path):
    roles_seen = {role for _, role, _ in compose_services(path)}
    problems.check(
        roles_seen == set(ROLES), "docker-compose.yml", f"roles run: {sorted(roles_seen)}"
    )
    for name, role, service in compose_services(path):
        where = f"docker-compose.yml: service {name}"
        env = env_list_to_dict(service.get("environment"))
        problems.check(
            env.get("FERROCAST_CLUSTER__REDIS_URL", "").startswith("redis://"),
            where,
            "no FERROCAST_CLUSTER__REDIS_URL",
        )
        if role in ADVERTISED_PORT:
            want = f"http://{name}:{ADVERTISED_PORT[role]}"
            problems.check(
                env.get("FERROCAST_CLUSTER__ADVERTISE") == want,
                where,
                f"FERROCAST_CLUSTER__ADVERTISE must be {want}",
            )
        test = (service.get("healthcheck") or {}).get("test") or []
        problems.check(
            test[:3] == ["CMD", "ferrocast", "probe"]
            and len(test) == 4
            and test[3] == f"http://127.0.0.1:{HTTP_PORT}/readyz",
            where,
            "health check must be `ferrocast probe http://127.0.0.1:8080/readyz`",
        )
        published = published_ports(service)
        if role == "ingest":
            problems.check((9000, "udp") in published, where, "SRT (9000/udp) not published")
        if role == "edge":
            problems.check(
                {(8443, "tcp"), (8443, "udp")} <= published,
                where,
                "8443 must be published on TCP and UDP",
            )


def published_ports(service):
    """{(container port, protocol)} of a compose service, from the long
    syntax or the short one (`[IP:]PUBLISHED:TARGET[/PROTOCOL]`)."""
    return {(target, protocol) for _, target, protocol in published_bindings(service)}


def published_bindings(service):
    """[(host IP or "", container port, protocol)] of a compose service."""
    bindings = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            bindings.append((p.get("host_ip", ""), int(p["target"]), p.get("protocol", "tcp")))
        else:
            parts = str(p).split(":")
            target, _, protocol = parts[-1].partition("/")
            host_ip = parts[0] if len(parts) == 3 else ""
            bindings.append((host_ip, int(target), protocol or "tcp"))
    return bindings


def compose_mounts(service):
    """{container path: source} of a compose service's volumes."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = (volume.split(":") + [""])[:2]
        else:
            source, target = volume.get("source"), volume.get("target")
        mounts[target] = source
    return mounts


def database_url_parts(url):
    """(user, password, host, port, database) of a postgres:// URL, or None
    when it is not one."""
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port or POSTGRES_PORT
    except ValueError:
        return None
    if u.scheme not in ("postgres", "postgresql") or not u.hostname:
        return None
    unquote = urllib.parse.unquote
    return (
        unquote(u.username or ""),
        unquote(u.password or ""),
        u.hostname,
        port,
        unquote(u.path.lstrip("/")),
    )


def check_compose_database(problems, path):
    """Ingest and control use the same PostgreSQL, the postgres service,
    with the user, password and database it is made with; control shares
    the edge's keys, keeps its data directory and is on loopback only."""
    services = yaml.safe_load(Path(path).read_text())["services"]
    ferrocast = {name: (role, service) for name, role, service in compose_services(path)}
    urls = {}
    for name, (role, service) in ferrocast.items():
        env = env_list_to_dict(service.get("environment"))
        where = f"docker-compose.yml: service {name}"
        if role not in DATABASE_ROLES + DATABASE_OPTIONAL_ROLES:
            problems.check(
                DATABASE_VAR not in env,
                where,
                f"{DATABASE_VAR} is for {', '.join(DATABASE_ROLES + DATABASE_OPTIONAL_ROLES)} only",
            )
            continue
        url = env.get(DATABASE_VAR)
        if role in DATABASE_OPTIONAL_ROLES and url is None:
            continue
        parts = database_url_parts(url or "")
        if not problems.check(
            parts is not None, where, f"{DATABASE_VAR} must be postgres://USER:PASSWORD@HOST/DB"
        ):
            continue
        urls[name] = url
        user, password, host, port, database = parts
        db = services.get(host)
        if not problems.check(
            db is not None and str(db.get("image", "")).startswith("postgres:"),
            where,
            f"{DATABASE_VAR} must name the postgres service (it names {host})",
        ):
            continue
        db_env = env_list_to_dict(db.get("environment"))
        problems.check(
            (user, password, database, port)
            == (
                db_env.get("POSTGRES_USER", "postgres"),
                db_env.get("POSTGRES_PASSWORD"),
                db_env.get("POSTGRES_DB", db_env.get("POSTGRES_USER", "postgres")),
                POSTGRES_PORT,
            ),
            where,
            f"{DATABASE_VAR} must carry service {host}'s POSTGRES_USER, POSTGRES_PASSWORD "
            f"and POSTGRES_DB, port {POSTGRES_PORT}",
        )
        problems.check(
            ((service.get("depends_on") or {}).get(host) or {}).get("condition")
            == "service_healthy",
            where,
            f"must depend on {host} being healthy (the database is opened at start)",
        )
    problems.check(
        len(set(urls.values())) == 1 and {r for r, _ in ferrocast.values()} >= set(DATABASE_ROLES),
        "docker-compose.yml",
        f"{', '.join(DATABASE_ROLES)} must have one and the same {DATABASE_VAR}",
    )
    for name, service in services.items():
        if not str(service.get("image", "")).startswith("postgres:"):
            continue
        where = f"docker-compose.yml: service {name}"
        test = (service.get("healthcheck") or {}).get("test") or []
        problems.check(
            any("pg_isready" in str(t) for t in test[1:]),
            where,
            "health check must be pg_isready",
        )
        problems.check(
            not str(compose_mounts(service).get("/var/lib/postgresql/data", "/")).startswith(
                ("/", ".")
            ),
            where,
            "/var/lib/postgresql/data must be a named volume",
        )
        problems.check(not service.get("ports"), where, "must not be published")

    # Control: mints viewer JWTs the edges accept, keeps its data
    # directory (the first admin token), on the host's loopback only.
    edges = [s for r, s in ferrocast.values() if r == "edge"]
    data_dir = image_env().get("FERROCAST_DATA_DIR")
    for name, (role, service) in ferrocast.items():
        if role != "control":
            continue
        where = f"docker-compose.yml: service {name}"
        env = env_list_to_dict(service.get("environment"))
        for var in ("FERROCAST_EDGE__JWT__KEYS", "FERROCAST_EDGE__TOKEN__KEYS"):
            problems.check(
                env.get(var)
                and all(env_list_to_dict(e.get("environment")).get(var) == env[var] for e in edges),
                where,
                f"{var} must be the edge's",
            )
        data = env.get("FERROCAST_DATA_DIR", data_dir)
        problems.check(
            data and not str(compose_mounts(service).get(data, "/")).startswith(("/", ".")),
            where,
            f"data_dir ({data}) must be a named volume: the first admin token is written there",
        )
        bindings = published_bindings(service)
        problems.check(
            any(t == HTTP_PORT for _, t, _ in bindings)
            and all(ip in ("127.0.0.1", "::1", "[::1]") for ip, _, _ in bindings),
            where,
            f"the API ({HTTP_PORT}) must be published on the host's loopback only",
        )


def recording_env(env):
    """The FERROCAST_RECORDING__* variables of an environment."""
    return {k: v for k, v in env.items() if k.startswith(RECORDING_PREFIX)}


def config_recording():
    """The [recording] section of deploy/ferrocast.toml, or None."""
    return tomllib.loads(CONFIG.read_text()).get("recording")


def recording_bytes(env, key, default):
    """A [recording] size in bytes: its FERROCAST_RECORDING__ variable, else
    the config file's key, else the default."""
    value = env.get(RECORDING_PREFIX + key.upper())
    if value is None:
        value = (config_recording() or {}).get(key, default)
    try:
        return int(value)
    except ValueError:
        return None


def quantity_bytes(quantity):
    """A Kubernetes quantity (`2Gi`, `500M`, `1073741824`) in bytes, or None."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?", str(quantity))
    if not m:
        return None
    scale = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
    scale.update({f"{p}i": 1 << (10 * (i + 1)) for i, p in enumerate("KMGTPE")})
    return int(float(m.group(1)) * scale[m.group(2) or ""])


def check_config_recording(problems):
    """deploy/ferrocast.toml, shared by every role and in a ConfigMap on
    Kubernetes, holds no recording secret."""
    s3 = (config_recording() or {}).get("s3") or {}
    problems.check(
        "secret_access_key" not in s3,
        "deploy/ferrocast.toml",
        "recording.s3.secret_access_key must not be in the config file (a secret): "
        "FERROCAST_RECORDING__S3__SECRET_ACCESS_KEY",
    )


def check_compose_recording(problems, path):
    """Recording: package, edge and control with the same FERROCAST_RECORDING__*
    variables wherever one has any (ingest and transcode with none); with
    recording on, the package's data_dir (the spool) on a named volume, and
    a store that is a compose service (the endpoint's host) waited for,
    with a health check, a pinned image, the credentials it is made with
    (MinIO) and on the host's loopback only."""
    services = yaml.safe_load(Path(path).read_text())["services"]
    readers = {}
    for name, role, service in compose_services(path):
        where = f"docker-compose.yml: service {name}"
        rec = recording_env(env_list_to_dict(service.get("environment")))
        if role not in RECORDING_ROLES:
            problems.check(
                not rec, where, f"FERROCAST_RECORDING__* is for {', '.join(RECORDING_ROLES)} only"
            )
            continue
        readers[name] = (role, service, rec)
    if not any(rec for _, _, rec in readers.values()) and config_recording() is None:
        return
    recs = [rec for _, _, rec in readers.values()]
    differ = sorted(
        k for k in set().union(*recs) if len({rec.get(k) for rec in recs}) > 1
    )
    problems.check(
        not differ and {role for role, _, _ in readers.values()} >= set(RECORDING_ROLES),
        "docker-compose.yml",
        f"{', '.join(RECORDING_ROLES)} must all have the same FERROCAST_RECORDING__* "
        f"variables (they differ in {', '.join(differ) or 'nothing'}; roles with them: "
        f"{sorted({role for role, _, _ in readers.values()})})",
    )
    data_dir = image_env().get("FERROCAST_DATA_DIR")
    for name, (role, service, _rec) in readers.items():
        if role != "package":
            continue
        data = env_list_to_dict(service.get("environment")).get("FERROCAST_DATA_DIR", data_dir)
        problems.check(
            data and not str(compose_mounts(service).get(data, "/")).startswith(("/", ".")),
            f"docker-compose.yml: service {name}",
            f"data_dir ({data}) must be a named volume: the recording spool "
            "(data_dir/spool) must outlive the container",
        )
    endpoint = recs[0].get(RECORDING_PREFIX + "S3__ENDPOINT") if recs else None
    host = urllib.parse.urlsplit(endpoint).hostname if endpoint else None
    store = services.get(host) if host else None
    if store is None:
        return  # AWS, or a store elsewhere
    where = f"docker-compose.yml: service {host}"
    for name in readers:
        problems.check(
            ((services[name].get("depends_on") or {}).get(host) or {}).get("condition")
            == "service_healthy",
            f"docker-compose.yml: service {name}",
            f"must depend on {host} being healthy (the recordings' store)",
        )
    problems.check(
        bool((store.get("healthcheck") or {}).get("test")), where, "needs a health check"
    )
    image = str(store.get("image", ""))
    repository, _, digest = image.partition("@")
    name_tag = repository.rpartition("/")[2]
    tag = name_tag.partition(":")[2]
    repository = repository[: len(repository) - len(tag) - 1] if tag else repository
    problems.check(
        bool(digest) or (tag and tag != "latest"),
        where,
        f"image must be pinned to a release tag or digest ({image})",
    )
    problems.check(
        all(ip in ("127.0.0.1", "::1", "[::1]") for ip, _, _ in published_bindings(store)),
        where,
        "must be published on the host's loopback only, if at all",
    )
    if repository.rpartition("/")[2] == "minio":
        store_env = env_list_to_dict(store.get("environment"))
        for var, minio in (
            ("S3__ACCESS_KEY_ID", "MINIO_ROOT_USER"),
            ("S3__SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD"),
        ):
            problems.check(
                recs[0].get(RECORDING_PREFIX + var) == store_env.get(minio),
                "docker-compose.yml",
                f"{RECORDING_PREFIX}{var} must be service {host}'s {minio}",
            )


def check_k8s(problems, variant, objects):
    where0 = f"k8s {variant}"
    # Where the transcoders run: cpu, gpu (and base: unset).
    flavour = variant.split("-")[0]
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    pods = [
        (f"{d['kind']} {d['metadata']['name']}", d["spec"]["template"]) for d in workloads(objects)
    ]
    # The generated ConfigMap (its name ends in a hash of its content).
    configs = [
        cm for n, cm in by_kind.get("ConfigMap", {}).items() if n.startswith("ferrocast-config")
    ]

    # Probes on every container; Ferrocast's on /readyz and /healthz.
    for dep in workloads(objects):
        for c in dep["spec"]["template"]["spec"]["containers"]:
            where = f"{where0}: {dep['kind']} {dep['metadata']['name']} container {c['name']}"
            problems.check(
                "readinessProbe" in c and "livenessProbe" in c,
                where,
                "needs a readinessProbe and a livenessProbe",
            )
        problems.check(
            dep["spec"]["template"]["spec"].get("enableServiceLinks") is False,
            f"{where0}: {dep['kind']} {dep['metadata']['name']}",
            "enableServiceLinks must be false",
        )
    roles_seen = set()
    for dep, pod, c, role in ferrocast_containers(objects):
        roles_seen.add(role)
        where = f"{where0}: Deployment {dep['metadata']['name']}"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            problems.check(
                get.get("path") == path and port_number(c, get.get("port")) == HTTP_PORT,
                where,
                f"{probe} must be httpGet {path} on port {HTTP_PORT}",
            )
        sc = pod.get("securityContext") or {}
        problems.check(
            sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 10001,
            where,
            "must run as non-root uid 10001",
        )
        problems.check(
            (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is True,
            where,
            "root filesystem must be read-only",
        )
        problems.check(
            (env_value(c, "FERROCAST_CLUSTER__REDIS_URL") or "").startswith("redis://"),
            where,
            "no FERROCAST_CLUSTER__REDIS_URL",
        )
        if role in ADVERTISED_PORT:
            want = f"http://$(POD_IP):{ADVERTISED_PORT[role]}"
            pod_ip = [v for v in c.get("env") or [] if v["name"] == "POD_IP"]
            problems.check(
                env_value(c, "FERROCAST_CLUSTER__ADVERTISE") == want
                and pod_ip
                and pod_ip[0].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                == "status.podIP",
                where,
                f"FERROCAST_CLUSTER__ADVERTISE must be {want}, POD_IP from status.podIP",
            )
        limits = (c.get("resources") or {}).get("limits") or {}
        nvenc = env_value(c, "FERROCAST_TRANSCODE__NVENC")
        if role == "transcode" and flavour == "gpu":
            problems.check(int(str(limits.get(GPU, 0))) >= 1, where, f"must ask for {GPU}")
            problems.check(nvenc == "require", where, "FERROCAST_TRANSCODE__NVENC must be require")
        else:
            problems.check(
                GPU not in limits and GPU not in (c.get("resources") or {}).get("requests", {}),
                where,
                f"must not ask for {GPU}",
            )
        if role == "transcode" and flavour == "cpu":
            problems.check(nvenc == "off", where, "FERROCAST_TRANSCODE__NVENC must be off")
        if role == "transcode":
            problems.check(
                pod.get("terminationGracePeriodSeconds", 30) > MIN_TRANSCODE_GRACE_S,
                where,
                f"terminationGracePeriodSeconds must exceed {MIN_TRANSCODE_GRACE_S}",
            )
        if role == "edge":
            drain_ms = 10000  # edge.shutdown_drain_ms's default
            for config in configs:
                edge = tomllib.loads(config["data"]["ferrocast.toml"]).get("edge", {})
                drain_ms = edge.get("shutdown_drain_ms", drain_ms)
            pre = (c.get("lifecycle") or {}).get("preStop") or {}
            command = (pre.get("exec") or {}).get("command") or []
            pause = (
                int(command[1])
                if command[:1] == ["sleep"]
                else (pre.get("sleep") or {}).get("seconds", 0)
            )
            problems.check(pause > 0, where, "needs a preStop pause")
            problems.check(
                pod.get("terminationGracePeriodSeconds", 30) > pause + drain_ms / 1000,
                where,
                "terminationGracePeriodSeconds must exceed preStop + edge.shutdown_drain_ms",
            )
    problems.check(roles_seen == set(ROLES), where0, f"roles deployed: {sorted(roles_seen)}")

    # Every workload, Ferrocast's or not (Redis, PostgreSQL): non-root,
    # read-only root filesystem, no privilege escalation, no capabilities.
    for w in workloads(objects):
        pod = w["spec"]["template"]["spec"]
        where = f"{where0}: {w['kind']} {w['metadata']['name']}"
        problems.check(
            (pod.get("securityContext") or {}).get("runAsNonRoot") is True,
            where,
            "runAsNonRoot must be true",
        )
        for c in pod["containers"]:
            sc = c.get("securityContext") or {}
            problems.check(
                sc.get("readOnlyRootFilesystem") is True
                and sc.get("allowPrivilegeEscalation") is False
                and (sc.get("capabilities") or {}).get("drop") == ["ALL"],
                f"{where} container {c['name']}",
                "needs readOnlyRootFilesystem, no privilege escalation, capabilities dropped",
            )
    check_k8s_database(problems, where0, objects, by_kind)
    check_k8s_control(problems, where0, objects, by_kind)
    check_k8s_recording(problems, where0, objects, by_kind)

    # One namespace for every namespaced object: a resource added outside
    # the base (an overlay's, a component's) does not get the base's.
    namespaces = [o["metadata"]["name"] for o in by_kind.get("Namespace", {}).values()]
    if problems.check(len(namespaces) == 1, where0, f"one Namespace, found {namespaces}"):
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                problems.check(
                    o["metadata"].get("namespace") == namespaces[0],
                    f"{where0}: {o['kind']} {o['metadata']['name']}",
                    f"must be in namespace {namespaces[0]} "
                    f"(it is in {o['metadata'].get('namespace') or 'none'})",
                )

    # The ConfigMap is deploy/ferrocast.toml, unchanged.
    problems.check(
        len(configs) == 1 and configs[0]["data"].get("ferrocast.toml") == CONFIG.read_text(),
        where0,
        "ConfigMap ferrocast-config must hold deploy/ferrocast.toml unchanged "
        "(k8s/base/ferrocast.toml differs)",
    )

    # The ingest Service: SRT over UDP, source addresses kept.
    ingest = by_kind.get("Service", {}).get("ingest")
    if problems.check(ingest is not None, where0, "no Service ingest"):
        spec = ingest["spec"]
        problems.check(
            spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local",
            where0,
            "Service ingest must be a LoadBalancer with externalTrafficPolicy Local",
        )
        problems.check(
            any(p.get("protocol") == "UDP" and p["port"] == 9000 for p in spec["ports"]),
            where0,
            "Service ingest must carry UDP 9000",
        )
    edge = by_kind.get("Service", {}).get("edge")
    if problems.check(edge is not None, where0, "no Service edge"):
        protocols = {p.get("protocol", "TCP") for p in edge["spec"]["ports"] if p["port"] == 8443}
        problems.check(
            protocols == {"TCP", "UDP"}, where0, "Service edge must carry 8443 on TCP and UDP"
        )

    # References: selectors, the HPA's target, ConfigMaps and Secrets.
    def selects(selector):
        return [
            n
            for n, t in pods
            if selector
            and all(t["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]

    for kind, get in (
        ("Service", lambda o: o["spec"].get("selector")),
        ("PodDisruptionBudget", lambda o: o["spec"]["selector"].get("matchLabels")),
    ):
        for name, o in by_kind.get(kind, {}).items():
            problems.check(
                len(selects(get(o))) == 1,
                f"{where0}: {kind} {name}",
                "selector must match exactly one workload's pods",
            )
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = hpa["spec"]["scaleTargetRef"]
        problems.check(
            target["name"] in by_kind.get(target["kind"], {}),
            f"{where0}: HPA {name}",
            f"target {target['kind']} {target['name']} does not exist",
        )
    for dep_name, template in pods:
        spec = template["spec"]
        refs = [
            ("ConfigMap", v["configMap"]["name"])
            for v in spec.get("volumes") or []
            if "configMap" in v
        ]
        refs += [
            ("Secret", v["secret"]["secretName"])
            for v in spec.get("volumes") or []
            if "secret" in v
        ]
        refs += [
            ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
            for v in spec.get("volumes") or []
            if "persistentVolumeClaim" in v
        ]
        for c in spec["containers"]:
            for source in c.get("envFrom") or []:
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in source:
                        refs.append((kind, source[key]["name"]))
            for var in c.get("env") or []:
                for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if key in var.get("valueFrom", {}):
                        refs.append((kind, var["valueFrom"][key]["name"]))
        for kind, name in refs:
            problems.check(
                name in by_kind.get(kind, {}),
                f"{where0}: {dep_name}",
                f"{kind} {name} does not exist",
            )


def env_source(container, name):
    """How `name` is set in a container: ("value", VALUE),
    ("secretKeyRef", (SECRET, KEY)), another valueFrom kind, or None."""
    for var in container.get("env") or []:
        if var["name"] == name:
            if "value" in var:
                return ("value", var["value"])
            for kind, ref in (var.get("valueFrom") or {}).items():
                if kind in ("secretKeyRef", "configMapKeyRef"):
                    return (kind, (ref["name"], ref["key"]))
                return (kind, None)
    return None


def check_k8s_database(problems, where0, objects, by_kind):
    """The database URL of ingest and control: one key of one Secret,
    never a literal; it names Service postgres's port, and the user,
    database and password (the same Secret's) of the PostgreSQL behind it."""
    data = k8s_data(objects)
    # No literal database URL anywhere in a pod spec or in the config file.
    for w in workloads(objects):
        for c in w["spec"]["template"]["spec"]["containers"]:
            for var in c.get("env") or []:
                problems.check(
                    not (var["name"] == DATABASE_VAR and "value" in var)
                    and not re.search(r"postgres(ql)?://", str(var.get("value", ""))),
                    f"{where0}: {w['kind']} {w['metadata']['name']}",
                    f"{var['name']}: a database URL must come from a Secret (secretKeyRef)",
                )
    for (kind, name), values in data.items():
        if kind == "ConfigMap" and name.startswith("ferrocast-config"):
            problems.check(
                "database_url" not in tomllib.loads(values.get("ferrocast.toml", "")),
                where0,
                "database_url must not be in the ConfigMap (a secret)",
            )
    sources = set()
    for dep, _pod, c, role in ferrocast_containers(objects):
        where = f"{where0}: Deployment {dep['metadata']['name']}"
        source = env_source(c, DATABASE_VAR)
        if role not in DATABASE_ROLES + DATABASE_OPTIONAL_ROLES:
            problems.check(
                source is None,
                where,
                f"{DATABASE_VAR} is for {', '.join(DATABASE_ROLES + DATABASE_OPTIONAL_ROLES)} only",
            )
            continue
        if role in DATABASE_OPTIONAL_ROLES and source is None:
            continue
        if problems.check(
            source is not None and source[0] == "secretKeyRef",
            where,
            f"{DATABASE_VAR} must come from a Secret (secretKeyRef)",
        ):
            sources.add(source[1])
    if not problems.check(
        len(sources) == 1,
        where0,
        f"{', '.join(DATABASE_ROLES)} must read {DATABASE_VAR} from one and the same Secret key",
    ):
        return
    secret, key = next(iter(sources))
    url = data.get(("Secret", secret), {}).get(key)
    if not problems.check(url is not None, where0, f"Secret {secret} has no key {key}"):
        return
    parts = database_url_parts(url)
    if not problems.check(
        parts is not None,
        where0,
        f"Secret {secret} key {key} must be postgres://USER:PASSWORD@HOST:PORT/DB",
    ):
        return
    user, password, host, port, database = parts
    service = by_kind.get("Service", {}).get(host)
    if not problems.check(
        service is not None
        and any(p["port"] == port for p in service["spec"].get("ports") or []),
        where0,
        f"Secret {secret} key {key}: no Service {host} with port {port}",
    ):
        return
    selector = service["spec"].get("selector") or {}
    backends = [
        w
        for w in workloads(objects)
        if selector
        and all(
            w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
            for k, v in selector.items()
        )
    ]
    if not problems.check(len(backends) == 1, where0, f"Service {host} must select one workload"):
        return
    db = backends[0]
    where = f"{where0}: {db['kind']} {db['metadata']['name']}"
    container = db["spec"]["template"]["spec"]["containers"][0]

    def literal(name, default):
        source = env_source(container, name)
        return source[1] if source and source[0] == "value" else default

    pw = env_source(container, "POSTGRES_PASSWORD")
    problems.check(
        pw is not None
        and pw[0] == "secretKeyRef"
        and pw[1][0] == secret
        and data.get(("Secret", secret), {}).get(pw[1][1]) == password,
        where,
        f"POSTGRES_PASSWORD must come from Secret {secret}, the password in key {key}",
    )
    db_user = literal("POSTGRES_USER", "postgres")
    problems.check(
        (user, database) == (db_user, literal("POSTGRES_DB", db_user)),
        where,
        f"POSTGRES_USER and POSTGRES_DB must be the user and database of Secret {secret} "
        f"key {key} ({user}, {database})",
    )
    if db["kind"] == "StatefulSet":
        claims = {t["metadata"]["name"] for t in db["spec"].get("volumeClaimTemplates") or []}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
        pgdata = literal("PGDATA", "/var/lib/postgresql/data")
        problems.check(
            any(pgdata.startswith(path) and name in claims for path, name in mounts.items()),
            where,
            f"PGDATA ({pgdata}) must be on a volumeClaimTemplate",
        )


def check_k8s_control(problems, where0, objects, by_kind):
    """Control mints viewer JWTs the edges accept, writes its data
    directory (the first admin token) on a volume, and its Service stays
    inside the cluster."""
    edges = [
        k8s_env(objects, c) for _d, _p, c, role in ferrocast_containers(objects) if role == "edge"
    ]
    data_dir = image_env().get("FERROCAST_DATA_DIR")
    for dep, _pod, c, role in ferrocast_containers(objects):
        if role != "control":
            continue
        where = f"{where0}: Deployment {dep['metadata']['name']}"
        env = k8s_env(objects, c)
        for var in ("FERROCAST_EDGE__JWT__KEYS", "FERROCAST_EDGE__TOKEN__KEYS"):
            problems.check(
                env.get(var) and all(e.get(var) == env[var] for e in edges),
                where,
                f"{var} must be the edge's",
            )
        data = env.get("FERROCAST_DATA_DIR", data_dir)
        problems.check(
            any(
                m["mountPath"] == data and not m.get("readOnly")
                for m in c.get("volumeMounts") or []
            ),
            where,
            f"data_dir ({data}) needs a writable volume: the first admin token is written there",
        )
    for name, service in by_kind.get("Service", {}).items():
        if (service["spec"].get("selector") or {}).get("app.kubernetes.io/component") == "control":
            problems.check(
                service["spec"].get("type", "ClusterIP") == "ClusterIP",
                f"{where0}: Service {name}",
                "the API must stay inside the cluster (ClusterIP)",
            )


def recording_sources(objects, container):
    """Where a container's FERROCAST_RECORDING__* variables come from: each
    envFrom source that holds one, ("envFrom", KIND, NAME, PREFIX), and
    each env entry that sets one, ("env", NAME, how)."""
    data = k8s_data(objects)
    found = set()
    for source in container.get("envFrom") or []:
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key in source:
                prefix = source.get("prefix", "")
                keys = data.get((kind, source[key]["name"]), {})
                if any((prefix + k).startswith(RECORDING_PREFIX) for k in keys):
                    found.add(("envFrom", kind, source[key]["name"], prefix))
    for var in container.get("env") or []:
        if var["name"].startswith(RECORDING_PREFIX):
            found.add(("env", var["name"], repr(env_source(container, var["name"]))))
    return frozenset(found)


def check_k8s_recording(problems, where0, objects, by_kind):
    """Recording: no secret access key as a literal or in a ConfigMap;
    package, edge and control read the same FERROCAST_RECORDING__* sources
    (the same Secret) and values wherever one has any, ingest and transcode
    none; with recording on, the packager's data_dir (the spool) and
    control's (the uploads) on writable volumes, an emptyDir's sizeLimit
    above spool_max_bytes and upload_max_bytes."""
    data = k8s_data(objects)
    for w in workloads(objects):
        pod = w["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            for var in c.get("env") or []:
                problems.check(
                    not (var["name"].endswith(SECRET_KEY_SUFFIX) and "value" in var),
                    f"{where0}: {w['kind']} {w['metadata']['name']}",
                    f"{var['name']}: a secret access key must come from a Secret "
                    "(envFrom secretRef or secretKeyRef), not a literal value",
                )
    for (kind, name), values in data.items():
        if kind != "ConfigMap":
            continue
        problems.check(
            not any(k.endswith(SECRET_KEY_SUFFIX) for k in values),
            f"{where0}: ConfigMap {name}",
            "a secret access key must be in a Secret, not a ConfigMap",
        )
        if name.startswith("ferrocast-config"):
            s3 = (tomllib.loads(values.get("ferrocast.toml", "")).get("recording") or {}).get(
                "s3"
            ) or {}
            problems.check(
                "secret_access_key" not in s3,
                f"{where0}: ConfigMap {name}",
                "recording.s3.secret_access_key must not be in the config file (a secret)",
            )
    readers = {}
    for dep, pod, c, role in ferrocast_containers(objects):
        where = f"{where0}: Deployment {dep['metadata']['name']}"
        sources = recording_sources(objects, c)
        if role not in RECORDING_ROLES:
            problems.check(
                not sources,
                where,
                f"FERROCAST_RECORDING__* is for {', '.join(RECORDING_ROLES)} only",
            )
            continue
        readers[dep["metadata"]["name"]] = (role, pod, c, sources)
    in_config = any(
        "recording" in tomllib.loads(values.get("ferrocast.toml", ""))
        for (kind, name), values in data.items()
        if kind == "ConfigMap" and name.startswith("ferrocast-config")
    )
    if not in_config and not any(sources for *_, sources in readers.values()):
        return
    roles_with = sorted({role for role, *_ in readers.values()})
    if not problems.check(
        len({sources for *_, sources in readers.values()}) == 1
        and set(roles_with) >= set(RECORDING_ROLES),
        where0,
        f"{', '.join(RECORDING_ROLES)} must read FERROCAST_RECORDING__* from the same "
        f"sources (the same Secret, envFrom): "
        + "; ".join(
            f"{name}: {sorted(s[:3] for s in sources) or 'none'}"
            for name, (_r, _p, _c, sources) in readers.items()
        ),
    ):
        return
    values = {name: recording_env(k8s_env(objects, c)) for name, (_r, _p, c, _s) in readers.items()}
    problems.check(
        len({tuple(sorted(v.items())) for v in values.values()}) == 1,
        where0,
        f"{', '.join(RECORDING_ROLES)} must have the same FERROCAST_RECORDING__* values",
    )
    data_dir = image_env().get("FERROCAST_DATA_DIR")
    for name, (role, pod, c, _sources) in readers.items():
        if role == "package":
            need, what = recording_bytes(values[name], "spool_max_bytes", SPOOL_MAX_BYTES), (
                "the recording spool (recording.spool_max_bytes)"
            )
        elif role == "control":
            need, what = recording_bytes(values[name], "upload_max_bytes", UPLOAD_MAX_BYTES), (
                "a VOD upload (recording.upload_max_bytes)"
            )
        else:
            continue
        where = f"{where0}: Deployment {name}"
        data = k8s_env(objects, c).get("FERROCAST_DATA_DIR", data_dir)
        mounts = [
            m
            for m in c.get("volumeMounts") or []
            if m["mountPath"] == data and not m.get("readOnly")
        ]
        if not problems.check(
            bool(mounts),
            where,
            f"data_dir ({data}) needs a writable volume: {what} is written there",
        ):
            continue
        volume = {v["name"]: v for v in pod.get("volumes") or []}.get(mounts[0]["name"], {})
        limit = (volume.get("emptyDir") or {}).get("sizeLimit")
        if limit is not None:
            size = quantity_bytes(limit)
            problems.check(
                size is not None and need is not None and size > need,
                where,
                f"the emptyDir on data_dir ({data}) must be larger than {what}, {need} bytes "
                f"(sizeLimit {limit}): past its sizeLimit the pod is evicted",
            )


def check_dockerfile(problems):
    """The build stage installs BUILD_PACKAGES of scripts/deps.sh."""
    deps = (ROOT / "scripts" / "deps.sh").read_text()
    wanted = set(re.search(r"BUILD_PACKAGES=\(([^)]*)\)", deps).group(1).split())
    build_stage = (ROOT / "Dockerfile").read_text().split("\nFROM ")[1]
    installs = re.search(r"apt-get install ([^&]*)", build_stage.replace("\\\n", " ")).group(1)
    installed = {w for w in installs.split() if not w.startswith("-")}
    problems.check(
        installed == wanted,
        "Dockerfile",
        f"build stage packages differ from BUILD_PACKAGES (scripts/deps.sh): "
        f"{sorted(installed ^ wanted)}",
    )


def invariants(args):
    problems = Problems()
    check_dockerfile(problems)
    check_config_recording(problems)
    check_compose(problems, args.compose)
    check_compose_database(problems, args.compose)
    check_compose_recording(problems, args.compose)
    sets = k8s_sets(args.k8s)
    for variant, objects in sets.items():
        check_k8s(problems, variant, objects)
    if problems:
        sys.exit("invariants failed:\n  " + "\n  ".join(problems))
    print(
        f"ok: invariants (probes, security, advertised addresses, Services, references, "
        f"namespace, GPU, the database URL and its Secret, the control plane's keys and data, "
        f"recording settings, their Secret and volumes) "
        f"of docker-compose.yml, k8s {', '.join(sets)} and the Dockerfile's build packages"
    )


# --- roles --------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Flags that move every listener to a free loopback port. They win over the
# environment and the config file, whose addresses are the deployment's.
LOOPBACK = "127.0.0.1:0"
LISTEN_FLAGS = {
    "ingest": ["--srt-listen", LOOPBACK, "--bus-listen", LOOPBACK, "--http-listen", LOOPBACK],
    "transcode": ["--bus-listen", LOOPBACK, "--http-listen", LOOPBACK],
    "package": ["--http-listen", LOOPBACK],
    "edge": ["--https-listen", LOOPBACK, "--http-listen", LOOPBACK],
    "control": ["--http-listen", LOOPBACK],
}


def k8s_data(objects):
    """{(kind, name): {key: value}} of the ConfigMaps and Secrets."""
    data = {}
    for o in objects:
        if o["kind"] == "ConfigMap":
            data[("ConfigMap", o["metadata"]["name"])] = dict(o.get("data") or {})
        if o["kind"] == "Secret":
            values = {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
            values.update(o.get("stringData") or {})
            data[("Secret", o["metadata"]["name"])] = values
    return data


def k8s_env(objects, container):
    """The container's environment as the kubelet makes it (envFrom, then
    env with $(VAR) expanded), with the pod's IP 127.0.0.1."""
    data = k8s_data(objects)
    env = {}
    for source in container.get("envFrom") or []:
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key in source:
                for k, v in data[(kind, source[key]["name"])].items():
                    env[source.get("prefix", "") + k] = v
    for var in container.get("env") or []:
        if "value" in var:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
        elif "fieldRef" in var.get("valueFrom", {}):
            field = var["valueFrom"]["fieldRef"]["fieldPath"]
            value = {
                "status.podIP": "127.0.0.1",
                "metadata.name": "check-pod",
                "metadata.namespace": "ferrocast",
                "spec.nodeName": "check-node",
            }[field]
        else:
            ref = var["valueFrom"].get("configMapKeyRef") or var["valueFrom"]["secretKeyRef"]
            kind = "ConfigMap" if "configMapKeyRef" in var["valueFrom"] else "Secret"
            value = data[(kind, ref["name"])][ref["key"]]
        env[var["name"]] = value
    return env


def image_env():
    """FERROCAST_* variables the Dockerfile sets (ENV), which every container
    has; data_dir is moved to a scratch directory below."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if line.strip().startswith("ENV "):
            found.update(re.findall(r"(FERROCAST_\w+)=(\S+)", line))
    return found


def prepare(variant, name, role, args, env, files, scratch, redis_port, health=None, database=None):
    """The command line and environment to start one role here, and the
    health check command of a compose service. `database` maps the
    manifest's database URL to the one to use here."""
    home = Path(scratch) / variant / name
    home.mkdir(parents=True)
    argv = []
    for arg in args:
        for mount, content in files.items():
            if arg == mount:
                local = home / Path(mount).name
                local.write_text(content)
                arg = str(local)
        argv.append(arg)
    env = dict(env)
    for key, value in list(env.items()):
        # Every Redis the manifests name is the scratch one.
        env[key] = re.sub(r"^redis://[^/]*", f"redis://127.0.0.1:{redis_port}", value)
    if DATABASE_VAR in env:
        if database is None:
            sys.exit(
                f"{variant}/{name} sets {DATABASE_VAR}: no local database to point it at "
                "(topology: pass --database-url URL)"
            )
        env[DATABASE_VAR] = database(env[DATABASE_VAR])
    env.update({k: v for k, v in image_env().items() if k not in env})
    if "FERROCAST_DATA_DIR" in env:
        env["FERROCAST_DATA_DIR"] = str(home / "data")
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FERROCAST_LOG": "warn"}
    return f"{variant}/{name}", argv + LISTEN_FLAGS[role], {**base, **env}, home, health


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace").strip()
    except OSError as e:
        return None, str(e)


def start_role(binary, label, argv, env, home, health, deadline_s=30):
    """Start one role; None when it got ready and answers its probes (and
    its compose health check, `health`, passes), else what went wrong."""
    stderr = open(home / "stderr.txt", "w+")
    proc = subprocess.Popen(
        [binary, *argv], env=env, cwd=home, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    # A process that hangs before its ready line is killed, which ends the
    # read below.
    timer = threading.Timer(deadline_s, proc.kill)
    timer.start()
    try:
        # `ferrocast ROLE ready ...`, or `ferrocast ROLE not-ready ...
        # reason=...` from a process that started but takes no work (a
        # transcoder whose required NVENC did not open): both mean that the
        # settings were accepted.
        started = re.compile(r"ferrocast \w+ (ready|not-ready) ")
        line = "-"
        while line and not started.match(line):
            line = proc.stdout.readline()
        timer.cancel()
        if not started.match(line):
            proc.kill()
            proc.wait()
            stderr.seek(0)
            tail = "\n      ".join(stderr.read().strip().splitlines()[-8:])
            return f"{label}: no ready line ({' '.join(argv)}):\n      {tail}"
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        http = fields.get("http") or fields.get("metrics")
        status, body = get(f"http://{http}/healthz")
        if status != 200:
            return f"{label}: /healthz answered {status}: {body}"
        # Ready (200, or 503 until the first heartbeat reached Redis), or
        # not ready for good (503 with the reason): either way the route the
        # readinessProbe uses exists.
        status, body = get(f"http://{http}/readyz")
        if status not in ((503,) if started.match(line).group(1) == "not-ready" else (200, 503)):
            return f"{label}: /readyz answered {status}: {body}"
        if health:
            return run_health_check(binary, label, health, http, env)
        return None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stderr.close()


def run_health_check(binary, label, test, http, env):
    """Run a compose health check (`CMD ferrocast ...` form) against the
    role's real address until it passes (the first heartbeat may take a
    moment), for up to 15 s."""
    if test[:2] != ["CMD", "ferrocast"]:
        return f"{label}: health check is not `CMD ferrocast ...`: {test}"
    argv = [binary] + [a.replace(f"127.0.0.1:{HTTP_PORT}", http) for a in test[2:]]
    end = time.monotonic() + 15
    while True:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
        if done.returncode == 0:
            return None
        if time.monotonic() > end:
            why = (done.stderr.strip().splitlines() or ["no message"])[0]
            return f"{label}: health check {test[1:]} failed: {why}"
        time.sleep(0.5)


def compose_runs(compose, scratch, redis_port, database=None):
    """How to start each Ferrocast service of a resolved compose file here:
    (label, argv, env, home, health) as `prepare` makes them, the mounted
    config file written under `scratch`."""
    runs = []
    for name, role, service in compose_services(compose):
        files = {}
        for volume in service.get("volumes") or []:
            if isinstance(volume, str):
                source, target = volume.split(":")[:2]
            else:
                source, target = volume.get("source"), volume.get("target")
            if source and Path(source).is_file():
                files[target] = Path(source).read_text()
        command = service["command"]
        command = command.split() if isinstance(command, str) else command
        env = env_list_to_dict(service.get("environment"))
        health = (service.get("healthcheck") or {}).get("test")
        runs.append(
            prepare(
                "compose", name, role, command, env, files, scratch, redis_port, health, database
            )
        )
    return runs


def topology(args):
    """The compose file's services as local processes that reach each
    other: like `roles`, every listener on loopback, and each advertised
    address (a compose service name, which resolves only inside the compose
    network) replaced by the loopback address and a free port that the
    advertised listener is moved to; every database URL (the postgres
    service) is `--database-url`. Prints JSON, in the resolved compose
    file's order: [{"service", "role", "argv", "env", "cwd"}]."""
    import json

    out = []
    database = None
    if args.database_url:
        # Every database URL of the compose file (the postgres service,
        # which resolves only inside the compose network) is this one.
        database = lambda _url: args.database_url  # noqa: E731
    runs = compose_runs(args.compose, args.scratch, args.redis_port, database)
    for label, argv, env, home, _health in runs:
        name = label.split("/", 1)[1]
        role = argv[0]
        advertise = env.get("FERROCAST_CLUSTER__ADVERTISE")
        if advertise:
            port = free_port()
            flag = "--http-listen" if ADVERTISED_PORT[role] == HTTP_PORT else "--bus-listen"
            at = argv.index(flag, 1)
            argv = argv[: at + 1] + [f"127.0.0.1:{port}"] + argv[at + 2 :]
            env["FERROCAST_CLUSTER__ADVERTISE"] = re.sub(
                r"//[^/]+", f"//127.0.0.1:{port}", advertise, count=1
            )
        out.append({"service": name, "role": role, "argv": argv, "env": env, "cwd": str(home)})
    json.dump(out, sys.stdout, indent=1)


class ScratchPostgres:
    """A PostgreSQL server of its own, as the Rust tests' testkit::Postgres
    makes one: Debian's initdb and pg_ctl in a temporary directory,
    listening on 127.0.0.1 and a free port (and a socket in that directory
    only), no fsync; run as the `postgres` user when this runs as root
    (PostgreSQL refuses root). Local (socket) connections are trusted, TCP
    ones need a password: the users and databases that the manifests' URLs
    name are made with their passwords by `provide`."""

    def __init__(self):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            sys.exit(
                "roles: PostgreSQL is not installed (Debian's postgresql: initdb and pg_ctl "
                "under /usr/lib/postgresql/VERSION/bin)"
            )
        self.bin = bins[-1].parent
        self.as_postgres = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="ferrocast-roles-pg-"))
        self.port = None
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.run(
            "initdb",
            *("-D", self.data, "-U", "postgres", "-E", "UTF8", "--no-sync"),
            *("--auth-local=trust", "--auth-host=scram-sha-256"),
        )
        # A free port can be taken between the probe and the server's bind.
        for _ in range(5):
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                "-c fsync=off -c full_page_writes=off"
            )
            started = self.command(
                "pg_ctl",
                *("-D", self.data, "-l", self.dir / "server.log", "-o", options),
                *("-w", "-t", "30", "start"),
            )
            if subprocess.run(started, capture_output=True).returncode == 0:
                return
        log = (self.dir / "server.log").read_text(errors="replace") if self.data.exists() else ""
        self.close()
        sys.exit(f"roles: PostgreSQL did not start on a free port:\n{log}")

    def command(self, program, *args):
        argv = [str(self.bin / program), *map(str, args)]
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_postgres else argv

    def run(self, program, *args):
        done = subprocess.run(
            self.command(program, *args), capture_output=True, text=True, cwd=self.dir
        )
        if done.returncode != 0:
            self.close()
            sys.exit(f"roles: {program} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def sql(self, statement):
        return self.run(
            "psql",
            *("-h", self.dir, "-p", self.port, "-U", "postgres", "-d", "postgres"),
            *("-v", "ON_ERROR_STOP=1", "-X", "-q", "-t", "-A", "-c", statement),
        )

    def provide(self, urls):
        """Makes each URL's user (with its password) and database, the
        database afresh (empty, as a new deployment's)."""
        users = {}
        for url in urls:
            parts = database_url_parts(url)
            if parts is None:
                sys.exit(f"roles: {DATABASE_VAR} is not a postgres:// URL")
            user, password, _host, _port, database = parts
            if users.setdefault(user, password) != password:
                sys.exit(f"roles: two passwords for database user {user} in one deployment")
            role = '"' + user.replace('"', '""') + '"'
            secret = "'" + password.replace("'", "''") + "'"
            literal = "'" + user.replace("'", "''") + "'"
            exists = self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = {literal}").strip()
            verb = "ALTER" if exists else "CREATE"
            self.sql(f"{verb} ROLE {role} LOGIN PASSWORD {secret}")
            name = '"' + database.replace('"', '""') + '"'
            if database != "postgres":
                self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                self.sql(f"CREATE DATABASE {name} OWNER {role}")

    def here(self, url):
        """A manifest's database URL on this server: the same user,
        password, database and parameters."""
        u = urllib.parse.urlsplit(url)
        userinfo = u.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urllib.parse.urlunsplit(u._replace(netloc=netloc))

    def close(self):
        if self.port is not None and self.data.exists():
            subprocess.run(
                self.command("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"),
                capture_output=True,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


def admin_token_problem(runs):
    """Of one deployment's runs, started against an empty database: the
    control process wrote the first admin token, readable by its user only."""
    controls = [r for r in runs if r[1][0] == "control"]
    if not controls:
        return None
    written = []
    for label, _argv, env, _home, _health in controls:
        token = Path(env.get("FERROCAST_DATA_DIR", "data")) / ADMIN_TOKEN_FILE
        if token.exists():
            if token.stat().st_mode & 0o077:
                return f"{label}: {token} is readable by others"
            written.append(label)
    if len(written) != 1:
        return (
            f"{', '.join(r[0] for r in controls)}: against an empty database, one admin token "
            f"file ({ADMIN_TOKEN_FILE} in data_dir) must be written, found {len(written)}"
        )
    return None


def roles(args):
    binary = str(Path(args.bin).resolve())
    runs = []
    postgres = ScratchPostgres()
    with tempfile.TemporaryDirectory(prefix="ferrocast-roles-") as scratch:
        redis_port = free_port()
        redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                scratch,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                sys.exit("roles: redis-server did not start")
            runs += compose_runs(args.compose, scratch, redis_port, postgres.here)
            # Kubernetes: ConfigMap volumes become files.
            for variant, objects in k8s_sets(args.k8s).items():
                maps = {
                    o["metadata"]["name"]: o.get("data") or {}
                    for o in objects
                    if o["kind"] == "ConfigMap"
                }
                for dep, pod, c, role in ferrocast_containers(objects):
                    volumes = {v["name"]: v for v in pod.get("volumes") or []}
                    files = {}
                    for mount in c.get("volumeMounts") or []:
                        volume = volumes[mount["name"]]
                        if "configMap" in volume:
                            for key, content in maps[volume["configMap"]["name"]].items():
                                files[f"{mount['mountPath'].rstrip('/')}/{key}"] = content
                    runs.append(
                        prepare(
                            variant,
                            dep["metadata"]["name"],
                            role,
                            c["args"],
                            k8s_env(objects, c),
                            files,
                            scratch,
                            redis_port,
                            database=postgres.here,
                        )
                    )
            # Processes of one deployment at a time (compose names its nodes).
            failures = []
            for variant in dict.fromkeys(label.split("/")[0] for label, *_ in runs):
                batch = [r for r in runs if r[0].startswith(variant + "/")]
                # Each deployment starts on an empty database, as a new one.
                postgres.provide([r[2][DATABASE_VAR] for r in batch if DATABASE_VAR in r[2]])
                with ThreadPoolExecutor(len(batch)) as pool:
                    results = list(pool.map(lambda r: start_role(binary, *r), batch))
                    failures += [f for f in results if f]
                if not any(results):
                    failures += [f for f in [admin_token_problem(batch)] if f]
        finally:
            redis.terminate()
            redis.wait()
            postgres.close()
    if failures:
        sys.exit("roles failed:\n  " + "\n  ".join(failures))
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"ok: roles: {len(runs)} processes ({version}) started with their compose and k8s "
        f"environment, config and arguments (against scratch Redis and PostgreSQL), answered "
        f"/healthz and /readyz, passed their compose health checks; in each deployment "
        f"control wrote the first admin token"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    topo = sub.add_parser("topology")
    topo.add_argument("--compose", required=True, help="output of `docker-compose config`")
    topo.add_argument("--scratch", required=True, help="a directory for the config files")
    topo.add_argument("--redis-port", required=True, type=int, help="the local redis-server")
    topo.add_argument(
        "--database-url",
        help="a local PostgreSQL database (postgres://USER:PASSWORD@127.0.0.1:PORT/DB) "
        f"for every {DATABASE_VAR}; needed when the compose file sets one",
    )
    for name in ("invariants", "roles"):
        p = sub.add_parser(name)
        p.add_argument("--compose", required=True, help="output of `docker-compose config`")
        p.add_argument(
            "--k8s", action="append", default=[], metavar="NAME=FILE", help="a Kustomize rendering"
        )
        if name == "roles":
            p.add_argument("--bin", required=True, help="the ferrocast binary")
    args = parser.parse_args()
    {"invariants": invariants, "roles": roles, "topology": topology}[args.command](args)


if __name__ == "__main__":
    main()
