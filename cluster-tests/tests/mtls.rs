//! `cluster.tls`: nodes talk gRPC over mutual TLS; a node whose certificate the cluster CA did
//! not sign cannot join.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cluster_tests::cluster::Cluster;
use cluster_tests::node::{base_config, binary, bulk};
use hipache_raft::keyspace::Reply;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::json;

/// Writes a CA and a node certificate for 127.0.0.1 signed by it; returns the `cluster.tls`
/// section that uses them.
fn pki(dir: &Path, name: &str) -> serde_json::Value {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let path = |f: &str| dir.join(format!("{name}-{f}"));
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    json!({ "cert": path("cert.pem"), "key": path("key.pem"), "ca": [path("ca.pem")] })
}

#[test]
fn cluster_over_mutual_tls_refuses_foreign_certificates() {
    let pki_dir = tempfile::tempdir().unwrap();
    let tls = pki(pki_dir.path(), "cluster");
    let c = Cluster::start(3, json!({ "tls": tls }));
    let leader = c.leader(Duration::from_secs(20)).expect("a leader over TLS");
    // Forwarding from a follower also goes over TLS.
    let follower = c.followers(leader)[0];
    let mut f = c.members[follower].resp();
    assert_eq!(f.cmd(&["RPUSH", "frontend:tls.example.com", "app"]), Reply::Int(1));
    assert_eq!(f.cmd(&["WAIT", "2", "2000"]), Reply::Int(2));
    assert_eq!(c.members[leader].resp().cmd(&["LINDEX", "frontend:tls.example.com", "0"]), bulk("app"));

    // The CLI with the cluster's certificate works …
    let status = Command::new(binary())
        .args(["cluster", "--addr", &c.members[0].grpc()])
        .args(["--tls-cert", tls["cert"].as_str().unwrap(), "--tls-key", tls["key"].as_str().unwrap()])
        .args(["--tls-ca", tls["ca"][0].as_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert_eq!(String::from_utf8_lossy(&status.stdout).lines().filter(|l| l.starts_with(char::is_numeric)).count(), 3);

    // … a node with a certificate from another CA cannot join.
    let foreign = pki(pki_dir.path(), "foreign");
    let dir = c.dir.path().join("intruder");
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = base_config(&dir);
    config["cluster"]["nodeId"] = json!(9);
    config["cluster"]["tls"] = foreign;
    config["cluster"]["join"] = json!([c.members[0].grpc()]);
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .current_dir(&dir)
        .env("HIPACHE_RAFT_JOIN_TIMEOUT", "3")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot join"), "{stderr}");
}
