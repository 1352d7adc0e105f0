//! Lints the deployment files without running them: CI has no Docker daemon, no Kubernetes
//! cluster and no systemd. Each file is parsed and the facts the README promises are checked,
//! so a rename in one file that the others depend on (a volume, a Service name, a port, a
//! join address) fails here instead of in someone's cluster. Every JSON config these files
//! ship or embed is loaded with the binary's own parser and must produce no warnings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hipache_raft::config::Config;
use serde_yaml_ng::Value;

const DATA_DIR: &str = "/var/lib/hipache-raft";
const CONFIG_PATH: &str = "/etc/hipache-raft/config.json";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (possibly multi-document) YAML file, with `<<` merge keys applied.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v = <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: {e}"));
            v.apply_merge().unwrap_or_else(|e| panic!("{rel}: {e}"));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    docs.remove(0)
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

fn seq<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_else(|| panic!("{what}: expected a list, got {v:?}"))
}

/// Parses a config the way the binary does and insists on zero warnings (a typo in a key
/// would otherwise only show up in a container's log).
fn parse_config(text: &str, origin: &str) -> Config {
    let loaded = Config::from_json(text, Path::new(origin)).unwrap_or_else(|e| panic!("{origin}: {e}"));
    assert!(loaded.warnings.is_empty(), "{origin}: {:?}", loaded.warnings);
    loaded.config
}

fn default_shutdown_timeout() -> Duration {
    parse_config("{}", "<defaults>").server.shutdown_timeout
}

/// "45s", "1m30s", "45" (seconds) → Duration: enough of Compose's duration syntax for us.
fn compose_duration(s: &str) -> Duration {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' => num.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = num.parse().unwrap_or_else(|_| panic!("bad duration {s:?}"));
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                num.clear();
            }
            _ => panic!("bad duration {s:?}"),
        }
    }
    if !num.is_empty() {
        total += num.parse::<u64>().unwrap_or_else(|_| panic!("bad duration {s:?}"));
    }
    Duration::from_secs(total)
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

#[test]
fn compose_runs_three_nodes_with_distinct_ids_volumes_and_a_join_to_node1() {
    let compose = yaml("deploy/docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().map(|k| str_of(k, "service name")).collect();
    assert_eq!(names, ["node1", "node2", "node3"]);
    let declared_volumes: BTreeSet<&str> =
        compose["volumes"].as_mapping().expect("top-level volumes").keys().map(|k| str_of(k, "volume")).collect();
    let shutdown = default_shutdown_timeout();

    let mut ids = BTreeSet::new();
    let mut data_volumes = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for (name, svc) in services {
        let name = str_of(name, "service");
        let ctx = format!("docker-compose.yml services.{name}");

        // Build: the Dockerfile named relative to the context must exist.
        let build = &svc["build"];
        let context = repo().join("deploy").join(str_of(&build["context"], &ctx));
        assert!(context.join(str_of(&build["dockerfile"], &ctx)).is_file(), "{ctx}: dockerfile not found");

        // One named data volume per node, at the data dir; the config file mounted read-only.
        let mut data = None;
        let mut config_file = None;
        for mount in seq(&svc["volumes"], &ctx) {
            let parts: Vec<&str> = str_of(mount, &ctx).split(':').collect();
            match parts.as_slice() {
                [vol, target] if *target == DATA_DIR => data = Some(*vol),
                [file, target, "ro"] if *target == CONFIG_PATH => config_file = Some(*file),
                _ => panic!("{ctx}: unexpected volume {mount:?}"),
            }
        }
        let data = data.unwrap_or_else(|| panic!("{ctx}: no volume at {DATA_DIR}"));
        assert!(declared_volumes.contains(data), "{ctx}: volume {data} not declared");
        assert!(data_volumes.insert(data), "{ctx}: volume {data} shared with another node");

        // The node's own config, parsed like the binary does.
        let rel = format!(
            "deploy/{}",
            config_file.unwrap_or_else(|| panic!("{ctx}: no config mount")).trim_start_matches("./")
        );
        let cfg = parse_config(&read(&rel), &rel);
        assert!(ids.insert(cfg.cluster.node_id), "{rel}: duplicate nodeId {}", cfg.cluster.node_id);
        assert_eq!(cfg.cluster.data_dir, Path::new(DATA_DIR), "{rel}: dataDir");
        assert_eq!(cfg.http.iter().map(|l| l.addr.to_string()).collect::<Vec<_>>(), ["0.0.0.0:8080"], "{rel}: http");

        // A node advertises the address it binds: RESP/gRPC must be the container's static
        // address on the compose network, never 0.0.0.0.
        let ip = str_of(&svc["networks"]["raft"]["ipv4_address"], &ctx);
        assert_eq!(cfg.cluster.grpc.to_string(), format!("{ip}:7380"), "{rel}: grpc");
        assert_eq!(cfg.cluster.resp.to_string(), format!("{ip}:6380"), "{rel}: resp");

        if name == "node1" {
            assert!(cfg.cluster.join.is_empty(), "{rel}: node1 initialises, it must not join");
        } else {
            assert_eq!(cfg.cluster.join, ["node1:7380"], "{rel}: must join node1's gRPC");
            assert!(svc["depends_on"]["node1"].is_mapping(), "{ctx}: must start after node1");
        }

        let health =
            seq(&svc["healthcheck"]["test"], &ctx).iter().map(|v| str_of(v, &ctx)).collect::<Vec<_>>().join(" ");
        assert!(health.contains("Host: __ping__"), "{ctx}: healthcheck {health}");
        let grace = compose_duration(str_of(&svc["stop_grace_period"], &ctx));
        assert!(grace > shutdown, "{ctx}: stop_grace_period {grace:?} must exceed shutdownTimeout {shutdown:?}");

        for p in seq(&svc["ports"], &ctx) {
            let p = str_of(p, &ctx);
            let host = p.rsplit(':').nth(1).unwrap_or_else(|| panic!("{ctx}: port {p}"));
            assert!(host_ports.insert(host.to_owned()), "{ctx}: host port {host} published twice");
        }
    }
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
}

// ---------------------------------------------------------------------------------------------
// Dockerfile (plain text: there is no Dockerfile parser worth a dependency)

#[test]
fn dockerfile_is_multi_stage_non_root_and_copies_files_that_exist() {
    let text = read("deploy/Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let froms: Vec<&str> = lines.iter().filter(|l| l.starts_with("FROM ")).copied().collect();
    assert_eq!(froms, ["FROM rust:1-bookworm AS build", "FROM debian:bookworm-slim"]);
    assert!(lines.contains(&"USER hipache:hipache"), "runtime must not run as root");
    assert!(lines.contains(&"ENTRYPOINT [\"hipache-raft\"]"));
    assert!(lines.contains(&"EXPOSE 8080 6380 7380 9380"));
    assert!(lines.contains(&format!("VOLUME [\"{DATA_DIR}\"]").as_str()));
    // Every COPY from the build context names something that exists (context = repo root).
    for l in lines.iter().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let words: Vec<&str> = l.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(repo().join(src).exists(), "Dockerfile: {l}: {src} missing");
        }
    }
    // cargo refuses to load a workspace whose member manifests are missing, so every member
    // other than the root package must be copied into the build stage.
    let manifest = read("Cargo.toml");
    let members_line = manifest.lines().find(|l| l.trim_start().starts_with("members")).expect("workspace members");
    let members = members_line.split('"').skip(1).step_by(2).filter(|m| *m != ".");
    for m in members {
        assert!(lines.contains(&format!("COPY {m} {m}").as_str()), "Dockerfile must COPY workspace member {m}");
    }
    // The image's default config is a valid single-node config on the volume.
    let cfg = parse_config(&read("deploy/config.json"), "deploy/config.json");
    assert_eq!(cfg.cluster.data_dir, Path::new(DATA_DIR));
    assert!(cfg.cluster.join.is_empty());
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"), ".dockerignore must keep target/ out of the context");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

#[test]
fn statefulset_has_stable_storage_and_matches_the_headless_service() {
    let services = yaml_docs("deploy/k8s/service.yaml");
    let sts = yaml("deploy/k8s/statefulset.yaml");
    assert_eq!(sts["apiVersion"], "apps/v1");
    assert_eq!(sts["kind"], "StatefulSet");
    let spec = &sts["spec"];

    // serviceName names a headless Service that publishes not-ready pods (peers must resolve
    // each other before they are Ready) and selects these pods.
    let service_name = str_of(&spec["serviceName"], "spec.serviceName");
    let headless = by_kind(&services, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == service_name)
        .unwrap_or_else(|| panic!("no Service named {service_name} in service.yaml"));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let pod_labels = &spec["template"]["metadata"]["labels"];
    for (k, v) in headless["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(&pod_labels[str_of(k, "selector")], v, "Service selector does not match the pods");
    }
    for (k, v) in spec["selector"]["matchLabels"].as_mapping().expect("matchLabels") {
        assert_eq!(&pod_labels[str_of(k, "matchLabels")], v, "StatefulSet selector does not match its pods");
    }
    let svc_ports: BTreeSet<u64> =
        seq(&headless["spec"]["ports"], "Service ports").iter().filter_map(|p| p["port"].as_u64()).collect();

    let containers = seq(&spec["template"]["spec"]["containers"], "containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let ports: BTreeMap<&str, u64> = seq(&c["ports"], "container ports")
        .iter()
        .map(|p| (str_of(&p["name"], "port name"), p["containerPort"].as_u64().expect("containerPort")))
        .collect();
    for (name, port) in [("http", 8080), ("resp", 6380), ("grpc", 7380)] {
        assert_eq!(ports.get(name), Some(&port), "container port {name}");
        assert!(svc_ports.contains(&port), "headless Service lacks port {port}");
    }

    // Storage: a claim template mounted at the data dir.
    let claims = seq(&spec["volumeClaimTemplates"], "volumeClaimTemplates");
    assert_eq!(claims.len(), 1);
    let claim = str_of(&claims[0]["metadata"]["name"], "claim name");
    let mounts = seq(&c["volumeMounts"], "volumeMounts");
    let mount_of = |name: &str| mounts.iter().find(|m| m["name"] == name).map(|m| str_of(&m["mountPath"], "mountPath"));
    assert_eq!(mount_of(claim), Some(DATA_DIR));

    // Readiness is Hipache's `Host: __ping__` request on the HTTP port.
    let probe = &c["readinessProbe"]["httpGet"];
    assert_eq!(probe["port"], "http");
    assert!(seq(&probe["httpHeaders"], "httpHeaders").iter().any(|h| h["name"] == "Host" && h["value"] == "__ping__"));

    // The ConfigMap mounted at /etc/hipache-raft exists and holds a valid config whose dataDir
    // is the claim's mount (explicit, so --node-id does not move it).
    let config_vol = seq(&spec["template"]["spec"]["volumes"], "volumes")
        .iter()
        .find(|v| mount_of(str_of(&v["name"], "volume")) == Some("/etc/hipache-raft"))
        .expect("a volume mounted at /etc/hipache-raft");
    let cm_name = str_of(&config_vol["configMap"]["name"], "configMap.name");
    let cm = yaml("deploy/k8s/configmap.yaml");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], cm_name);
    let cfg = parse_config(str_of(&cm["data"]["config.json"], "config.json"), "configmap.yaml config.json");
    assert_eq!(cfg.cluster.data_dir, Path::new(DATA_DIR));

    let grace = Duration::from_secs(spec["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().expect("grace"));
    assert!(grace > cfg.server.shutdown_timeout, "terminationGracePeriodSeconds must exceed shutdownTimeout");
    assert_eq!(spec["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
}

/// Runs the container's start-up snippet with `sh`, the binary replaced by `echo`, for a few
/// pod names: node id = ordinal + 1, and every pod but 0 joins pod 0 through the headless
/// Service's DNS name.
#[test]
fn statefulset_entrypoint_derives_node_id_and_join_from_the_ordinal() {
    let sts = yaml("deploy/k8s/statefulset.yaml");
    let name = str_of(&sts["metadata"]["name"], "metadata.name");
    let service = str_of(&sts["spec"]["serviceName"], "serviceName");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        seq(&c["command"], "command").iter().map(|v| str_of(v, "command")).collect::<Vec<_>>(),
        ["/bin/sh", "-ec"]
    );
    let script = str_of(&seq(&c["args"], "args")[0], "args[0]");
    assert!(script.contains("exec hipache-raft "), "the snippet must exec the binary (PID 1 gets SIGTERM)");
    let dry = script.replace("exec hipache-raft ", "echo ");

    let run = |pod: &str, ip: &str| {
        let out = Command::new("sh")
            .args(["-ec", &dry])
            .env("POD_NAME", pod)
            .env("POD_IP", ip)
            .env("POD_NAMESPACE", "prod")
            .output()
            .expect("run sh");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let base = format!("--config {CONFIG_PATH}");
    // Each pod advertises its stable DNS name, so a new pod IP does not break the membership.
    let advertise = |n: u32| {
        let dns = format!("{name}-{n}.{service}.prod.svc");
        format!("--advertise-grpc {dns}:7380 --advertise-resp {dns}:6380")
    };
    assert_eq!(
        run(&format!("{name}-0"), "10.1.2.3"),
        (true, format!("{base} --node-id 1 --resp 10.1.2.3:6380 --grpc 10.1.2.3:7380 {}", advertise(0)))
    );
    let join = format!("--join {name}-0.{service}.prod.svc:7380");
    assert_eq!(
        run(&format!("{name}-2"), "10.1.2.4"),
        (true, format!("{base} --node-id 3 --resp 10.1.2.4:6380 --grpc 10.1.2.4:7380 {} {join}", advertise(2)))
    );
    assert_eq!(
        run(&format!("{name}-1"), "fd00::7"),
        (true, format!("{base} --node-id 2 --resp [fd00::7]:6380 --grpc [fd00::7]:7380 {} {join}", advertise(1)))
    );
    assert!(!run("no-ordinal", "10.1.2.3").0, "a pod name without an ordinal must fail");
}

#[test]
fn kustomization_lists_existing_files_and_the_pdb_keeps_a_majority() {
    let k = yaml("deploy/k8s/kustomization.yaml");
    for r in seq(&k["resources"], "resources") {
        let f = format!("deploy/k8s/{}", str_of(r, "resource"));
        assert!(repo().join(&f).is_file(), "{f} missing");
        for doc in yaml_docs(&f) {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string() && doc["metadata"]["name"].is_string(),
                "{f}"
            );
        }
    }
    let pdb = yaml("deploy/k8s/pdb.yaml");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

// ---------------------------------------------------------------------------------------------
// systemd

/// `Key=Value` lines of a unit file, by section; repeated keys keep every value.
fn unit_file(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("unit: not key=value: {line}"));
        assert!(!section.is_empty(), "unit: {line} outside a section");
        out.entry(section.clone()).or_default().entry(k.trim().to_owned()).or_default().push(v.trim().to_owned());
    }
    out
}

#[test]
fn systemd_unit_is_hardened() {
    let text = read("deploy/hipache-raft.service");
    let unit = unit_file(&text);
    let svc = &unit["Service"];
    let one = |k: &str| -> &str {
        let v = svc.get(k).unwrap_or_else(|| panic!("[Service] {k} missing"));
        assert_eq!(v.len(), 1, "[Service] {k} set more than once");
        &v[0]
    };
    for (k, v) in [
        ("Type", "simple"),
        ("User", "hipache"),
        ("StateDirectory", "hipache-raft"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(one(k), v, "[Service] {k}");
    }
    let exec = one("ExecStart");
    assert!(exec.starts_with('/') && exec.contains(" --config /etc/hipache-raft/"), "ExecStart: {exec}");
    assert!(one("ExecReload").contains("-USR1"), "ExecReload must send SIGUSR1 (reopen the access log)");
    let rw: Vec<&str> = one("ReadWritePaths").split_whitespace().collect();
    assert!(rw.contains(&DATA_DIR) && rw.contains(&"/var/log/hipache-raft"), "ReadWritePaths: {rw:?}");
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    assert!(one("LimitNOFILE").parse::<u64>().expect("LimitNOFILE") >= 65536);
    let stop = Duration::from_secs(one("TimeoutStopSec").parse().expect("TimeoutStopSec in seconds"));
    assert!(stop > default_shutdown_timeout(), "TimeoutStopSec must exceed server.shutdownTimeout");
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
}

/// `systemd-analyze verify` knows every directive and its syntax. It is required: a missing
/// tool fails the test rather than passing it unchecked (`.ci/run` installs Debian's `systemd`).
/// ExecStart is pointed at /bin/true because verify checks that the binary exists, and ours is
/// not installed under /usr/local/bin here.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok(),
        "systemd-analyze is not installed: install Debian's systemd package (bash .ci/run does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let unit =
        read("deploy/hipache-raft.service").replace("ExecStart=/usr/local/bin/hipache-raft", "ExecStart=/bin/true");
    let path = dir.path().join("hipache-raft.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("hipache-raft.service:"), "systemd-analyze verify:\n{stderr}");
}

/// The Dockerfile's build stage, as a list of (sources, destination) COPYs from the context and
/// the `cargo build` it runs.
fn build_stage() -> (Vec<(Vec<String>, String)>, Vec<String>) {
    let text = read("deploy/Dockerfile");
    let mut copies = Vec::new();
    let mut cargo = Vec::new();
    let mut froms = 0;
    // Continuation lines joined, so a RUN spread over several lines is one instruction.
    let joined = text.replace("\\\n", " ");
    for line in joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.starts_with("FROM ") {
            froms += 1;
        } else if froms == 1 && line.starts_with("COPY ") && !line.contains("--from=") {
            let mut words: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
            let dest = words.pop().expect("COPY destination");
            copies.push((words, dest));
        } else if froms == 1 && line.starts_with("RUN ") {
            if let Some(at) = line.find("cargo build") {
                let command = line[at..].split("&&").next().unwrap_or_default();
                cargo = command.split_whitespace().skip(1).map(String::from).collect();
            }
        }
    }
    (copies, cargo)
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// Builds the binary from exactly what the Dockerfile's build stage copies, so a source the
/// build needs but the Dockerfile forgets (the error pages under `static/`, once) fails here.
/// The build uses the stage's own `cargo build` arguments less `--release`: the test suite has
/// the debug dependencies at hand, and the profile does not change which files are read.
#[test]
fn dockerfile_build_stage_builds_the_binary_from_what_it_copies() {
    let (copies, cargo) = build_stage();
    assert!(
        cargo.contains(&"--locked".to_string()) && cargo.contains(&"--bin".to_string()),
        "cargo build in the build stage: {cargo:?}"
    );
    let context = tempfile::tempdir().expect("tempdir");
    for (sources, dest) in &copies {
        for src in sources {
            let target = if dest.ends_with('/') || sources.len() > 1 {
                context.path().join(dest).join(Path::new(src).file_name().unwrap())
            } else {
                context.path().join(dest)
            };
            copy_tree(&repo().join(src), &target);
        }
    }
    let args: Vec<&String> = cargo.iter().filter(|a| *a != "--release").collect();
    let out = Command::new(env!("CARGO"))
        .args(&args)
        .arg("--offline")
        .current_dir(context.path())
        .env("CARGO_TARGET_DIR", repo().join("target/dockerfile-build-stage"))
        .output()
        .expect("cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in a context holding only the Dockerfile's COPYs failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// scripts/*.sh (syntax only: starting three release nodes or a benchmark is too slow for CI)

#[test]
fn scripts_parse_and_pass_shellcheck_when_available() {
    let mut scripts: Vec<_> = std::fs::read_dir(repo().join("scripts"))
        .expect("scripts/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(scripts.iter().any(|p| p.ends_with("cluster.sh")), "{scripts:?}");
    for script in &scripts {
        let out = Command::new("bash").arg("-n").arg(script).output().expect("bash");
        assert!(out.status.success(), "bash -n {}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(script).expect("stat").permissions().mode();
            assert!(mode & 0o111 != 0, "{} must be executable", script.display());
        }
        match Command::new("shellcheck").arg(script).output() {
            Ok(out) => assert!(
                out.status.success(),
                "shellcheck {}:\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(_) => eprintln!("shellcheck not installed: skipped"),
        }
    }
}
