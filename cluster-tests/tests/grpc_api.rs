//! The admin gRPC API end to end, from the generated tonic client, against a 3-node cluster
//! (calls go to a follower, so forwarding is exercised too).

use std::time::Duration;

use cluster_tests::cluster::Cluster;
use futures::StreamExt;
use hipache_raft::proto::admin_v1::admin_client::AdminClient;
use hipache_raft::proto::admin_v1::*;
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;

const SECRET: &str = "grpc-test-secret";

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("x-hipache-secret", SECRET.parse().unwrap());
    req
}

async fn client(addr: &str) -> AdminClient<Channel> {
    AdminClient::connect(format!("http://{addr}")).await.unwrap()
}

fn frontend(host: &str, identifier: &str, backends: &[&str]) -> Frontend {
    Frontend {
        host: host.into(),
        identifier: identifier.into(),
        backends: backends.iter().map(|b| b.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_end_to_end() {
    let c = tokio::task::block_in_place(|| Cluster::start(3, json!({ "secret": SECRET })));
    let leader = tokio::task::block_in_place(|| c.leader(Duration::from_secs(20))).expect("leader");
    let follower = c.followers(leader)[0];
    let mut api = client(&c.members[follower].grpc()).await;

    // The secret is required.
    let err = api.cluster_status(ClusterStatusRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let put = PutFrontendRequest {
        frontend: Some(frontend("www.example.com", "app", &["http://127.0.0.1:80", "http://127.0.0.2:80"])),
        options: Some(WriteOptions { wait_for_nodes: 2, wait_timeout_ms: 2000 }),
    };
    let written = api.put_frontend(request(put)).await.unwrap().into_inner();
    assert_eq!(written.replicas_applied, 2);
    let first_index = written.applied_index;

    let got =
        api.get_frontend(request(GetFrontendRequest { host: "WWW.example.com".into() })).await.unwrap().into_inner();
    assert_eq!(got, frontend("www.example.com", "app", &["http://127.0.0.1:80", "http://127.0.0.2:80"]));

    // Put replaces identifier and backends atomically.
    let put = PutFrontendRequest {
        frontend: Some(frontend("www.example.com", "app2", &["http://127.0.0.3:80"])),
        options: None,
    };
    api.put_frontend(request(put)).await.unwrap();
    api.add_backend(request(AddBackendRequest {
        host: "www.example.com".into(),
        backend: "https://127.0.0.4:443".into(),
        options: None,
    }))
    .await
    .unwrap();
    let got =
        api.get_frontend(request(GetFrontendRequest { host: "www.example.com".into() })).await.unwrap().into_inner();
    assert_eq!(got, frontend("www.example.com", "app2", &["http://127.0.0.3:80", "https://127.0.0.4:443"]));
    api.remove_backend(request(RemoveBackendRequest {
        host: "www.example.com".into(),
        backend: "http://127.0.0.3:80".into(),
        options: None,
    }))
    .await
    .unwrap();
    api.put_frontend(request(PutFrontendRequest {
        frontend: Some(frontend("*.example.com", "wild", &["http://127.0.0.9"])),
        options: None,
    }))
    .await
    .unwrap();
    let listed =
        api.list_frontends(request(ListFrontendsRequest { pattern: String::new() })).await.unwrap().into_inner();
    let mut hosts: Vec<_> = listed.frontends.iter().map(|f| f.host.clone()).collect();
    hosts.sort();
    assert_eq!(hosts, ["*.example.com", "www.example.com"]);

    // Clear errors.
    let bad = PutFrontendRequest { frontend: Some(frontend("a.example.com", "x", &["not a url"])), options: None };
    assert_eq!(api.put_frontend(request(bad)).await.unwrap_err().code(), Code::InvalidArgument);
    let missing = api.get_frontend(request(GetFrontendRequest { host: "nope.example.com".into() })).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let missing =
        api.delete_frontend(request(DeleteFrontendRequest { host: "nope.example.com".into(), options: None })).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let orphan =
        AddBackendRequest { host: "nope.example.com".into(), backend: "http://127.0.0.1".into(), options: None };
    assert_eq!(api.add_backend(request(orphan)).await.unwrap_err().code(), Code::NotFound);

    // Dead marks written the Hipache way are listed and cleared.
    let mut resp = c.members[leader].resp();
    resp.cmd(&["SADD", "dead:www.example.com", "1"]);
    resp.cmd(&["EXPIRE", "dead:www.example.com", "30"]);
    let dead = api.list_dead(request(ListDeadRequest { host: String::new() })).await.unwrap().into_inner();
    assert_eq!(dead.dead.len(), 1);
    assert_eq!(dead.dead[0].host, "www.example.com");
    assert_eq!(dead.dead[0].backend_indexes, [1]);
    assert!(dead.dead[0].ttl_ms > 0 && dead.dead[0].ttl_ms <= 30_000);
    api.clear_dead(request(ClearDeadRequest { host: "www.example.com".into(), options: None })).await.unwrap();
    assert!(api
        .list_dead(request(ListDeadRequest { host: String::new() }))
        .await
        .unwrap()
        .into_inner()
        .dead
        .is_empty());

    // Cluster status from every node's own view.
    let status = api.cluster_status(request(ClusterStatusRequest {})).await.unwrap().into_inner();
    assert_eq!(status.nodes.len(), 3);
    assert!(status.nodes.iter().all(|n| n.reachable && n.voter && n.applied_index >= first_index));
    assert_eq!(status.nodes.iter().filter(|n| n.role == "leader").count(), 1);

    // Watch from an old index replays the retained changes in order (each with the key's value
    // as of sending), then goes live.
    let mut watch = api.watch(request(WatchRequest { from_index: first_index - 1 })).await.unwrap().into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (first.applied_index, first.key.as_str(), first.exists),
        (first_index, "frontend:www.example.com", true)
    );
    assert_eq!(first.values, vec!["app2", "https://127.0.0.4:443"]);
    let mut last = first.applied_index;
    let mut keys = vec![first.key.clone()];
    // Replay: put, put, add, remove, wildcard put, SADD, EXPIRE, DEL(dead); then silence.
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
        let e = e.unwrap();
        assert!(e.applied_index >= last, "events come in log order");
        last = e.applied_index;
        keys.push(e.key);
    }
    assert!(
        keys.contains(&"frontend:*.example.com".to_string()) && keys.contains(&"dead:www.example.com".to_string()),
        "{keys:?}"
    );
    // Resuming from the last index seen gets only what comes after.
    let mut resumed = api.watch(request(WatchRequest { from_index: last })).await.unwrap().into_inner();
    api.delete_frontend(request(DeleteFrontendRequest { host: "*.example.com".into(), options: None })).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), resumed.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((e.key.as_str(), e.exists, e.snapshot), ("frontend:*.example.com", false, false));
    assert!(e.applied_index > last);
}

/// What `grpcurl list` and `grpcurl describe` ask: the service list, then the file that defines
/// a service. Run against one reflection version's generated client.
macro_rules! reflect {
    ($version:ident, $addr:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::ServerReflectionRequest;

        let channel = Channel::from_shared(format!("http://{}", $addr)).unwrap().connect().await.unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let ask = |message| ServerReflectionRequest { host: String::new(), message_request: Some(message) };
        let questions = vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol("hipache.admin.v1.Admin".into())),
            ask(MessageRequest::FileContainingSymbol("hipache.admin.v1.NoSuchService".into())),
        ];
        let mut answers = client.server_reflection_info(futures::stream::iter(questions)).await.unwrap().into_inner();
        let services = match answers.next().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("expected a service list, got {other:?}"),
        };
        let file = match answers.next().await.unwrap().unwrap().message_response {
            Some(MessageResponse::FileDescriptorResponse(f)) => f.file_descriptor_proto.concat(),
            other => panic!("expected a file descriptor, got {other:?}"),
        };
        // tonic-reflection ends the stream with a status here, not an ErrorResponse.
        let unknown = answers.next().await.unwrap().unwrap_err().code();
        (services, file, unknown)
    }};
}

/// Reflection (what grpcurl uses) works in both protocol versions, without the cluster secret:
/// it describes the API, it does not call it.
#[tokio::test(flavor = "multi_thread")]
async fn server_reflection_describes_the_admin_api() {
    let c = tokio::task::block_in_place(|| Cluster::start(1, json!({ "secret": SECRET })));
    tokio::task::block_in_place(|| c.leader(Duration::from_secs(20))).expect("leader");
    let addr = c.members[0].grpc();
    let (v1_services, v1_file, v1_unknown) = reflect!(v1, addr);
    let (alpha_services, alpha_file, alpha_unknown) = reflect!(v1alpha, addr);
    // Each version lists the API's services and itself.
    let ours = |services: &[String]| {
        services.iter().filter(|s| !s.starts_with("grpc.reflection.")).cloned().collect::<Vec<_>>()
    };
    assert_eq!(ours(&v1_services), ["hipache.admin.v1.Admin", "hipache.raft.v1.RaftService"]);
    assert_eq!(ours(&alpha_services), ours(&v1_services));
    assert_eq!(v1_file, alpha_file);
    let file = String::from_utf8_lossy(&v1_file);
    assert!(file.contains("admin.proto") && file.contains("PutFrontend") && file.contains("Watch"), "{file}");
    assert_eq!((v1_unknown, alpha_unknown), (Code::NotFound, Code::NotFound));
}

/// Watch streams started while writes are being applied: each sees every change after its
/// starting point exactly once, in log order, and ends on every key's final value. (A stream
/// that started between the applied index and the keyspace being published apart could miss
/// a batch: both are now one state.)
#[tokio::test(flavor = "multi_thread")]
async fn watches_started_during_writes_see_every_later_change_once_in_order() {
    tokio::time::timeout(Duration::from_secs(120), watches_during_writes())
        .await
        .expect("the watch test took over 2 minutes");
}

async fn watches_during_writes() {
    let c = tokio::task::block_in_place(|| Cluster::start(1, json!({ "secret": SECRET })));
    tokio::task::block_in_place(|| c.leader(Duration::from_secs(20))).expect("leader");
    let addr = c.members[0].grpc();
    let mut api = client(&addr).await;
    const HOSTS: usize = 8;
    const WRITES: usize = 600;
    for h in 0..HOSTS {
        let put = PutFrontendRequest { frontend: Some(frontend(&format!("w{h}.test"), "app", &[])), options: None };
        api.put_frontend(request(put)).await.unwrap();
    }
    // The writer records the index each backend was added at.
    let writer = {
        let mut api = client(&addr).await;
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..WRITES {
                let host = format!("w{}.test", i % HOSTS);
                let add = AddBackendRequest {
                    host: host.clone(),
                    backend: format!("http://127.0.0.1:{}", 10_000 + i),
                    options: None,
                };
                let index = api.add_backend(request(add)).await.unwrap().into_inner().applied_index;
                written.push((format!("frontend:{host}"), index));
            }
            written
        })
    };
    // Watchers start at various moments, from various points: retained history or a dump.
    let mut watchers = Vec::new();
    for w in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let from_index = if w % 3 == 0 { 0 } else { w * 20 };
        // A connection of its own: unread streams must not use up a shared connection's
        // HTTP/2 flow-control window.
        let stream = client(&addr).await.watch(request(WatchRequest { from_index })).await.unwrap().into_inner();
        watchers.push((from_index, stream));
    }
    let written = writer.await.unwrap();
    let last = written.iter().map(|(_, i)| *i).max().unwrap();
    let mut final_lists = std::collections::HashMap::new();
    for h in 0..HOSTS {
        let f =
            api.get_frontend(request(GetFrontendRequest { host: format!("w{h}.test") })).await.unwrap().into_inner();
        final_lists.insert(format!("frontend:w{h}.test"), f.backends);
    }
    for (from_index, mut stream) in watchers {
        let mut events = Vec::new();
        while events.last().is_none_or(|e: &WatchEvent| e.applied_index < last) {
            let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("stream stalled")
                .unwrap()
                .unwrap();
            events.push(e);
        }
        // Drain what else is already there (nothing more should concern our keys).
        while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            events.push(e);
        }
        let indexes: Vec<u64> = events.iter().map(|e| e.applied_index).collect();
        assert!(indexes.windows(2).all(|w| w[0] <= w[1]), "from {from_index}: events out of log order: {indexes:?}");
        // A dump stands for everything up to its index; later changes must come as events.
        let covered =
            events.iter().filter(|e| e.snapshot).map(|e| e.applied_index).max().unwrap_or(from_index).max(from_index);
        let mut seen = std::collections::HashMap::new();
        for e in events.iter().filter(|e| !e.snapshot) {
            *seen.entry((e.key.clone(), e.applied_index)).or_insert(0) += 1;
        }
        for (key, index) in written.iter().filter(|(_, i)| *i > covered) {
            assert_eq!(
                seen.get(&(key.clone(), *index)),
                Some(&1),
                "from {from_index}: the change of {key} at {index} seen once"
            );
        }
        for (key, list) in &final_lists {
            let last_seen = events.iter().rev().find(|e| &e.key == key).expect("every key appears");
            let values: Vec<String> =
                last_seen.values.iter().skip(1).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
            assert_eq!(&values, list, "from {from_index}: the last event of {key} holds its final value");
        }
    }
}

/// A follower that falls so far behind that it catches up by installing the leader's snapshot
/// cannot send its live watchers the changes the snapshot covers one by one. Before, its
/// streams went on from the snapshot's index as if nothing had been skipped; now they end
/// with ABORTED, and resuming gives a dump holding every key.
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_on_a_follower_that_installs_a_snapshot_is_told_to_resume() {
    tokio::time::timeout(Duration::from_secs(120), watch_across_a_snapshot_install())
        .await
        .expect("the watch test took over 2 minutes");
}

async fn watch_across_a_snapshot_install() {
    let c = tokio::task::block_in_place(|| Cluster::start(3, json!({ "secret": SECRET, "snapshotThreshold": 20 })));
    let leader = tokio::task::block_in_place(|| c.leader(Duration::from_secs(20))).expect("leader");
    let follower = c.followers(leader)[0];
    let mut api = client(&c.members[leader].grpc()).await;
    let put =
        |h: usize| PutFrontendRequest { frontend: Some(frontend(&format!("s{h}.test"), "app", &[])), options: None };
    let first = api.put_frontend(request(put(0))).await.unwrap().into_inner().applied_index;
    let watch = WatchRequest { from_index: first };
    let mut stream = client(&c.members[follower].grpc()).await.watch(request(watch)).await.unwrap().into_inner();

    // The follower sleeps while the leader writes 300 frontends and purges its log.
    let pid = c.members[follower].process.as_ref().unwrap().pid();
    cluster_tests::node::signal(pid, "STOP");
    const HOSTS: usize = 300;
    for h in 1..HOSTS {
        api.put_frontend(request(put(h))).await.unwrap();
    }
    let purged = tokio::task::block_in_place(|| {
        cluster_tests::node::eventually(Duration::from_secs(20), || {
            let info = cluster_tests::cluster::raft_info(&mut c.members[leader].resp());
            info.get("raft_purged_index").and_then(|p| p.parse::<u64>().ok()).is_some_and(|p| p > first + 10)
        })
    });
    assert!(purged, "the leader purged its log");
    cluster_tests::node::signal(pid, "CONT");

    // Every host written must reach the watcher: as an event, or, after the stream says to
    // resume (once per snapshot the follower installs), in the dump.
    let mut seen = std::collections::HashSet::new();
    let mut last = first;
    let mut resumes = 0;
    let all_seen =
        |seen: &std::collections::HashSet<String>| (0..HOSTS).all(|h| seen.contains(&format!("frontend:s{h}.test")));
    while !all_seen(&seen) {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(e))) => {
                assert!(e.snapshot || e.applied_index >= last, "events in log order: {e:?} after {last}");
                last = e.applied_index;
                seen.insert(e.key);
            }
            Ok(Some(Err(status))) => {
                assert_eq!(status.code(), Code::Aborted, "{status:?}");
                assert!(status.message().contains("resume with from_index"), "{}", status.message());
                assert!(resumes < 5, "the follower kept replacing its state");
                resumes += 1;
                let resume = WatchRequest { from_index: last };
                stream = client(&c.members[follower].grpc()).await.watch(request(resume)).await.unwrap().into_inner();
            }
            Ok(None) | Err(_) => {
                let missing: Vec<usize> =
                    (0..HOSTS).filter(|h| !seen.contains(&format!("frontend:s{h}.test"))).collect();
                panic!("the stream ended or went quiet after {resumes} resumes without hosts {missing:?}");
            }
        }
    }
    assert!(resumes > 0, "the follower caught up without installing a snapshot: the test did not test it");
}
