#!/usr/bin/env python3
"""Checks of the deployment artefacts that schemas cannot make.

Run by scripts/validate-deploy.sh, on docker-compose.yml as resolved by
`docker-compose config` and on each Kustomize rendering of k8s/ (`NAME=FILE`,
NAME being base, cpu or gpu):

  deploy_checks.py invariants --compose RESOLVED.yml --k8s cpu=cpu.yaml ...
      Probes, security context, advertised addresses, the ingest and edge
      Services, references between objects, GPU only where it belongs.
  deploy_checks.py roles --bin FERROCAST --compose RESOLVED.yml --k8s ...
      Starts every Ferrocast role of every deployment, with the environment,
      arguments and config file its manifest gives it, against a scratch
      redis-server; each must print its ready line, answer /healthz and
      /readyz, and pass its compose health check. Unknown FERROCAST_*
      variables and config keys are start-up errors, so this is what proves
      the manifests' settings are accepted. Addresses are moved to
      127.0.0.1 and free ports (flags, which win over the environment and
      the file).

  deploy_checks.py topology --compose RESOLVED.yml --scratch DIR --redis-port N
      How to run the compose file's services here as processes that reach
      each other (JSON), for the test that plays a stream through them
      (services/ferrocast/tests/compose.rs).

Prints one line on success; every problem found, and exit status 1, on
failure.
"""

import argparse
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "ferrocast.toml"
ROLES = ("ingest", "transcode", "package", "edge")
# The port each role advertises to the others (cluster.advertise): the
# media bus of ingest and transcode (cluster.bus_listen's default), the HTTP
# origin of package (http_listen's default). The edge advertises nothing.
ADVERTISED_PORT = {"ingest": 7000, "transcode": 7000, "package": 8080}
HTTP_PORT = 8080  # http_listen's default: /healthz, /readyz
MIN_TRANSCODE_GRACE_S = 30  # a transcoder's handover drain on SIGTERM
GPU = "nvidia.com/gpu"


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
    ports = set()
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            ports.add((int(p["target"]), p.get("protocol", "tcp")))
        else:
            target, _, protocol = str(p).rpartition(":")[2].partition("/")
            ports.add((int(target), protocol or "tcp"))
    return ports


def check_k8s(problems, variant, objects):
    where0 = f"k8s {variant}"
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    pods = [(d["metadata"]["name"], d["spec"]["template"]) for d in deployments(objects)]
    # The generated ConfigMap (its name ends in a hash of its content).
    configs = [
        cm for n, cm in by_kind.get("ConfigMap", {}).items() if n.startswith("ferrocast-config")
    ]

    # Probes on every container; Ferrocast's on /readyz and /healthz.
    for dep in deployments(objects):
        for c in dep["spec"]["template"]["spec"]["containers"]:
            where = f"{where0}: Deployment {dep['metadata']['name']} container {c['name']}"
            problems.check(
                "readinessProbe" in c and "livenessProbe" in c,
                where,
                "needs a readinessProbe and a livenessProbe",
            )
        problems.check(
            dep["spec"]["template"]["spec"].get("enableServiceLinks") is False,
            f"{where0}: Deployment {dep['metadata']['name']}",
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
        if role == "transcode" and variant == "gpu":
            problems.check(int(str(limits.get(GPU, 0))) >= 1, where, f"must ask for {GPU}")
            problems.check(nvenc == "require", where, "FERROCAST_TRANSCODE__NVENC must be require")
        else:
            problems.check(
                GPU not in limits and GPU not in (c.get("resources") or {}).get("requests", {}),
                where,
                f"must not ask for {GPU}",
            )
        if role == "transcode" and variant == "cpu":
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
                "selector must match exactly one Deployment's pods",
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
                f"{where0}: Deployment {dep_name}",
                f"{kind} {name} does not exist",
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
    check_compose(problems, args.compose)
    sets = k8s_sets(args.k8s)
    for variant, objects in sets.items():
        check_k8s(problems, variant, objects)
    if problems:
        sys.exit("invariants failed:\n  " + "\n  ".join(problems))
    print(
        f"ok: invariants (probes, security, advertised addresses, Services, references, GPU) "
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
}


def k8s_env(objects, container):
    """The container's environment as the kubelet makes it (envFrom, then
    env with $(VAR) expanded), with the pod's IP 127.0.0.1."""
    data = {}
    for o in objects:
        if o["kind"] == "ConfigMap":
            data[("ConfigMap", o["metadata"]["name"])] = dict(o.get("data") or {})
        if o["kind"] == "Secret":
            values = {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
            values.update(o.get("stringData") or {})
            data[("Secret", o["metadata"]["name"])] = values
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


def prepare(variant, name, role, args, env, files, scratch, redis_port, health=None):
    """The command line and environment to start one role here, and the
    health check command of a compose service."""
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


def compose_runs(compose, scratch, redis_port):
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
        runs.append(prepare("compose", name, role, command, env, files, scratch, redis_port, health))
    return runs


def topology(args):
    """The compose file's services as local processes that reach each
    other: like `roles`, every listener on loopback, and each advertised
    address (a compose service name, which resolves only inside the compose
    network) replaced by the loopback address and a free port that the
    advertised listener is moved to. Prints JSON, in the compose file's
    order: [{"service", "role", "argv", "env", "cwd"}]."""
    import json

    out = []
    for label, argv, env, home, _health in compose_runs(args.compose, args.scratch, args.redis_port):
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


def roles(args):
    binary = str(Path(args.bin).resolve())
    runs = []
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
            runs += compose_runs(args.compose, scratch, redis_port)
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
                        )
                    )
            # Processes of one deployment at a time (compose names its nodes).
            failures = []
            for variant in dict.fromkeys(label.split("/")[0] for label, *_ in runs):
                batch = [r for r in runs if r[0].startswith(variant + "/")]
                with ThreadPoolExecutor(len(batch)) as pool:
                    results = pool.map(lambda r: start_role(binary, *r), batch)
                    failures += [f for f in results if f]
        finally:
            redis.terminate()
            redis.wait()
    if failures:
        sys.exit("roles failed:\n  " + "\n  ".join(failures))
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"ok: roles: {len(runs)} processes ({version}) started with their compose and k8s "
        f"environment, config and arguments, answered /healthz and /readyz, and passed "
        f"their compose health checks"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    topo = sub.add_parser("topology")
    topo.add_argument("--compose", required=True, help="output of `docker-compose config`")
    topo.add_argument("--scratch", required=True, help="a directory for the config files")
    topo.add_argument("--redis-port", required=True, type=int, help="the local redis-server")
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
