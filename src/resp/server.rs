//! Accepts RESP connections and runs each one: read frames, dispatch, write replies.
//!
//! Replies to everything already buffered are written in one go, so pipelines cost one
//! write per batch. A protocol error is answered and the connection closed, as Redis does;
//! other connections are unaffected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::decode::{decode, Limits};
use super::encode::encode;
use super::session::{Flow, Session};
use crate::pubsub;
use crate::raft::RaftNode;

/// Most commands taken from the read buffer at once: the proposer's batch size, so one chunk
/// of a long pipeline is one Raft entry, and the replies held in memory stay bounded.
const PIPELINE_CHUNK: usize = crate::raft::MAX_BATCH;

/// Bytes read per call, and most buffered before a chunk of the pipeline is run.
const READ_SIZE: usize = 16 * 1024;
const PIPELINE_BYTES: usize = 1024 * 1024;

/// Most capacity a connection's empty buffers keep while it waits. A long-lived connection (a
/// health checker, an admin shell) that once wrote a large reply (`KEYS *`, `LRANGE` of a long
/// list) or read a large bulk would otherwise hold that memory until it closes; Redis too
/// gives back idle clients' large buffers. The input keeps room for a pipeline's reads
/// (`PIPELINE_BYTES`): starting it afresh between the chunks of a long pipeline cost
/// `redis-cli --pipe` 4 % in regrowing it.
const OUTPUT_KEEP: usize = 64 * 1024;
const INPUT_KEEP: usize = 2 * PIPELINE_BYTES;

/// Listener settings from the `cluster` config section.
#[derive(Debug, Clone, Default)]
pub struct RespOptions {
    pub requirepass: Option<String>,
    pub max_bulk_len: Option<usize>,
    /// Clients connected at once (`cluster.maxclients`); 0 means no limit.
    pub maxclients: u64,
    /// Bytes of pub/sub messages a subscriber may have waiting (`cluster.pubsubBufferLimit`);
    /// 0 means no limit.
    pub pubsub_buffer_limit: usize,
    /// Users besides `default` (`cluster.users`), for `AUTH <user> <password>`.
    pub users: Vec<User>,
}

/// A user of `AUTH <name> <password>`; a read-only one is refused every command that changes
/// the keyspace or publishes (`-NOPERM`), as a Redis ACL user with only `+@read`.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub readonly: bool,
}

/// What every connection shares.
pub(super) struct Shared {
    pub node: Arc<RaftNode>,
    pub opts: RespOptions,
    pub next_id: AtomicU64,
    pub connected: AtomicU64,
    pub started: std::time::Instant,
    pub port: u16,
}

/// Serves RESP on `listener` until `shutdown` flips to true.
pub async fn serve(listener: TcpListener, node: Arc<RaftNode>, opts: RespOptions, mut shutdown: watch::Receiver<bool>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let shared = Arc::new(Shared {
        node,
        opts,
        next_id: AtomicU64::new(1),
        connected: AtomicU64::new(0),
        started: std::time::Instant::now(),
        port,
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut stream, peer)) => {
                    let shared = shared.clone();
                    // Counted here, not in the task, so a burst of connections cannot all
                    // pass the check before any of them is counted.
                    let connected = shared.connected.fetch_add(1, Ordering::Relaxed);
                    if shared.opts.maxclients != 0 && connected >= shared.opts.maxclients {
                        shared.connected.fetch_sub(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            // Redis's own answer, then the connection is closed.
                            let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                        });
                        tracing::debug!(%peer, "resp client refused: maxclients reached");
                        continue;
                    }
                    tokio::spawn(async move {
                        if let Err(e) = run(stream, shared.clone()).await {
                            tracing::debug!(%peer, error = %e, "resp connection ended");
                        }
                        shared.connected.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn run(mut stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let limits = Limits { max_bulk_len: shared.opts.max_bulk_len.unwrap_or(64 * 1024 * 1024), ..Limits::default() };
    let queue_limit = match shared.opts.pubsub_buffer_limit {
        0 => usize::MAX,
        n => n,
    };
    let (tx, mut messages) = pubsub::queue(queue_limit);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let mut session = Session::new(id, shared, tx);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    // The peer closed after sending: what it sent is still answered, then the loop ends.
    let mut eof = false;
    let result = 'conn: loop {
        // Run every complete command already buffered (a pipeline: its writes go to the log
        // together), then flush their replies at once.
        let mut commands = Vec::new();
        let mut malformed = None;
        while commands.len() < PIPELINE_CHUNK {
            match decode(&mut input, &limits) {
                Ok(Some(argv)) => commands.push(argv),
                Ok(None) => break,
                Err(e) => {
                    malformed = Some(e);
                    break;
                }
            }
        }
        let more = commands.len() == PIPELINE_CHUNK;
        let mut flow = session.handle_pipeline(commands, &mut output).await;
        if let (Flow::Continue, Some(e)) = (flow, malformed) {
            encode(&e.reply(), session.protocol(), &mut output);
            flow = Flow::Close;
        }
        if !output.is_empty() {
            if let Err(e) = stream.write_all(&output).await {
                break Err(e);
            }
            output.clear();
            shrink(&mut output, OUTPUT_KEEP);
        }
        if flow == Flow::Close {
            break Ok(());
        }
        if more {
            continue;
        }
        if eof {
            break Ok(());
        }
        input.reserve(READ_SIZE);
        // After `reserve`: it is what takes back the space of the commands consumed, so only
        // then does the capacity say how much the buffer holds.
        shrink(&mut input, INPUT_KEEP);
        tokio::select! {
            read = stream.read_buf(&mut input) => match read {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            },
            Some(msg) = messages.recv() => {
                if session.deliver(msg, &mut output) == Flow::Close {
                    break Ok(());
                }
            }
        }
        // Take whatever else of the pipeline has already arrived, so its writes share entries.
        while input.len() < PIPELINE_BYTES {
            input.reserve(READ_SIZE);
            match stream.try_read_buf(&mut input) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => break 'conn Err(e),
            }
        }
    };
    session.close();
    result
}

/// Starts `buf` afresh when it is empty and holds more than `keep`.
fn shrink(buf: &mut BytesMut, keep: usize) {
    if buf.is_empty() && buf.capacity() > keep {
        *buf = BytesMut::with_capacity(READ_SIZE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_buffer_gives_back_what_it_grew_to_and_a_busy_one_keeps_it() {
        let mut output = BytesMut::with_capacity(8 * OUTPUT_KEEP);
        output.extend_from_slice(&[b'x'; 4096]);
        shrink(&mut output, OUTPUT_KEEP);
        assert!(output.capacity() >= 8 * OUTPUT_KEEP, "a buffer with data in it is kept");
        output.clear();
        shrink(&mut output, OUTPUT_KEEP);
        assert!(output.capacity() <= OUTPUT_KEEP && output.capacity() >= READ_SIZE);

        // A large bulk consumed through `split_to` (as `decode` does): the space comes back
        // with `reserve`, and then goes.
        let mut input = BytesMut::with_capacity(4 * INPUT_KEEP);
        input.extend_from_slice(&vec![b'y'; 4 * INPUT_KEEP - 100]);
        drop(input.split_to(4 * INPUT_KEEP - 100));
        input.reserve(READ_SIZE);
        shrink(&mut input, INPUT_KEEP);
        assert!(input.capacity() <= OUTPUT_KEEP);

        // A pipeline's worth stays for the next chunk.
        let mut input = BytesMut::with_capacity(PIPELINE_BYTES + READ_SIZE);
        input.reserve(READ_SIZE);
        shrink(&mut input, INPUT_KEEP);
        assert!(input.capacity() >= PIPELINE_BYTES);
    }
}
