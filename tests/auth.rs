//! Authentication as a matrix, over real sockets, each cell with its documented answer: on
//! RESP no password, a wrong one and the right one for `default` (`requirepass`), and a
//! read-only user of `cluster.users` (reads answered, every write refused `-NOPERM`, also
//! pipelined and inside MULTI); on gRPC a missing, a wrong and the right `cluster.secret`.

mod common;
mod proxy_support;

use common::{bulk, Node};
use hipache_raft::keyspace::Reply;
use hipache_raft::proto::admin_v1::admin_client::AdminClient;
use hipache_raft::proto::admin_v1::{Frontend, GetFrontendRequest, PutFrontendRequest};
use proxy_support::start_node;
use serde_json::json;
use tonic::Code;

const PASSWORD: &str = "s3cret-pass";
const READER: &str = "r3ader-pass";
const SECRET: &str = "cluster-s3cret";

fn node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(
        dir.path(),
        json!({ "cluster": {
            "requirepass": PASSWORD,
            "secret": SECRET,
            "users": { "reader": { "password": READER, "readonly": true } },
        } }),
    );
    (dir, node)
}

fn err(text: &str) -> Reply {
    Reply::Error(text.into())
}

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

#[test]
fn resp_none_wrong_right_and_read_only() {
    let (_dir, node) = node();
    // None: every command but AUTH/HELLO/QUIT/RESET is refused.
    let mut c = node.resp();
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));
    assert_eq!(c.cmd(&["RPUSH", "frontend:a.test", "app"]), err(NOAUTH));
    // Wrong: the password, a user's password, an unknown user; still unauthenticated after.
    for wrong in
        [&["AUTH", "nope"][..], &["AUTH", "default", READER], &["AUTH", "reader", PASSWORD], &["AUTH", "ghost", "x"]]
    {
        assert_eq!(c.cmd(wrong), err(WRONGPASS), "{wrong:?}");
    }
    assert_eq!(c.cmd(&["GET", "k"]), err(NOAUTH));
    // Right, both forms: everything is allowed.
    assert_eq!(c.cmd(&["AUTH", PASSWORD]), Reply::Status("OK".into()));
    assert_eq!(c.cmd(&["RPUSH", "frontend:a.test", "app", "http://127.0.0.1:9"]), Reply::Int(2));
    let mut d = node.resp();
    assert_eq!(d.cmd(&["AUTH", "default", PASSWORD]), Reply::Status("OK".into()));
    assert_eq!(d.cmd(&["LLEN", "frontend:a.test"]), Reply::Int(2));

    // The read-only user reads, and is refused every write, in every way a write can come.
    let mut r = node.resp();
    assert_eq!(r.cmd(&["AUTH", "reader", READER]), Reply::Status("OK".into()));
    assert_eq!(r.cmd(&["LRANGE", "frontend:a.test", "0", "0"]), Reply::Array(vec![bulk("app")]));
    assert_eq!(r.cmd(&["KEYS", "*"]), Reply::Array(vec![bulk("frontend:a.test")]));
    let noperm = |cmd: &str| err(&format!("NOPERM User reader has no permissions to run the '{cmd}' command"));
    assert_eq!(r.cmd(&["RPUSH", "frontend:a.test", "x"]), noperm("rpush"));
    assert_eq!(r.cmd(&["DEL", "frontend:a.test"]), noperm("del"));
    assert_eq!(r.cmd(&["PUBLISH", "dead", "x"]), noperm("publish"));
    assert_eq!(r.cmd(&["FLUSHALL"]), noperm("flushall"));
    // Pipelined: each write refused in its place, the read between them answered.
    let pipeline = [
        common::encode_command(&["SADD", "dead:a.test", "0"]),
        common::encode_command(&["LLEN", "frontend:a.test"]),
        common::encode_command(&["LPUSH", "frontend:a.test", "y"]),
    ]
    .concat();
    r.send_raw(&pipeline);
    assert_eq!(r.read_reply(), noperm("sadd"));
    assert_eq!(r.read_reply(), Reply::Int(2));
    assert_eq!(r.read_reply(), noperm("lpush"));
    // Inside MULTI the refusal discards the transaction, as any command that fails to queue.
    assert_eq!(r.cmd(&["MULTI"]), Reply::Status("OK".into()));
    assert_eq!(r.cmd(&["RPUSH", "frontend:a.test", "z"]), noperm("rpush"));
    assert!(matches!(r.cmd(&["EXEC"]), Reply::Error(e) if e.starts_with("EXECABORT")));
    // Nothing the reader sent changed anything.
    assert_eq!(
        d.cmd(&["LRANGE", "frontend:a.test", "0", "-1"]),
        Reply::Array(vec![bulk("app"), bulk("http://127.0.0.1:9")])
    );
    assert_eq!(d.cmd(&["EXISTS", "dead:a.test"]), Reply::Int(0));
    // Authenticating as default again lifts the restriction on that connection.
    assert_eq!(r.cmd(&["AUTH", PASSWORD]), Reply::Status("OK".into()));
    assert_eq!(r.cmd(&["RPUSH", "frontend:a.test", "w"]), Reply::Int(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_missing_wrong_and_right_secret() {
    let (_dir, node) = tokio::task::block_in_place(node);
    let grpc = node.listening["grpc"].as_str().unwrap().to_string();
    let mut api = AdminClient::connect(format!("http://{grpc}")).await.unwrap();
    let put = || PutFrontendRequest {
        frontend: Some(Frontend {
            host: "g.test".into(),
            identifier: "g".into(),
            backends: vec!["http://127.0.0.1:9".into()],
        }),
        options: None,
    };
    let with = |secret: Option<&str>, mut req: tonic::Request<PutFrontendRequest>| {
        if let Some(s) = secret {
            req.metadata_mut().insert("x-hipache-secret", s.parse().unwrap());
        }
        req
    };
    let missing = api.put_frontend(with(None, tonic::Request::new(put()))).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(missing.message().contains("requires a secret"), "{}", missing.message());
    let wrong = api.put_frontend(with(Some("guess"), tonic::Request::new(put()))).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(wrong.message().contains("wrong cluster secret"), "{}", wrong.message());
    // Nothing was written by the refused calls.
    let mut get = tonic::Request::new(GetFrontendRequest { host: "g.test".into() });
    get.metadata_mut().insert("x-hipache-secret", SECRET.parse().unwrap());
    assert_eq!(api.get_frontend(get).await.unwrap_err().code(), Code::NotFound);
    api.put_frontend(with(Some(SECRET), tonic::Request::new(put()))).await.unwrap();
    let mut get = tonic::Request::new(GetFrontendRequest { host: "g.test".into() });
    get.metadata_mut().insert("x-hipache-secret", SECRET.parse().unwrap());
    assert_eq!(api.get_frontend(get).await.unwrap().into_inner().identifier, "g");
    // Past `cluster.grpcMaxMessageSize` (4 MiB by default) a request is refused, not buffered.
    let huge = PutFrontendRequest {
        frontend: Some(Frontend { host: "big.test".into(), identifier: "x".repeat(5 << 20), backends: vec![] }),
        options: None,
    };
    let refused = api.put_frontend(with(Some(SECRET), tonic::Request::new(huge))).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("message length too large"), "{}", refused.message());
}
