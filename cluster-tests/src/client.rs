//! A RESP client for fault tests: every call ends within its timeout and says whether the
//! command reached the node, so a worker can record `Fail` (surely not applied) apart from
//! `Info` (may have been applied).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hipache_raft::keyspace::Reply;
use hipache_raft::resp::encode::parse_reply;

use crate::node::encode_command;

/// Why a call has no reply.
#[derive(Debug)]
pub enum CallError {
    /// Nothing was sent (the connection could not be made): the command did not run.
    NotSent(String),
    /// Sent, but the reply did not come (timeout, reset, closed, garbage): it may have run.
    Unknown(String),
}

pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, CallError> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| CallError::NotSent(e.to_string()))?;
        let setup = stream
            .set_read_timeout(Some(timeout))
            .and(stream.set_write_timeout(Some(timeout)))
            .and(stream.set_nodelay(true));
        setup.map_err(|e| CallError::NotSent(e.to_string()))?;
        Ok(Conn { stream, buf: Vec::new() })
    }

    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, CallError> {
        self.stream.write_all(&encode_command(args)).map_err(|e| CallError::Unknown(e.to_string()))?;
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(CallError::Unknown(format!("malformed reply: {e}"))),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(CallError::Unknown("connection closed".into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(CallError::Unknown(e.to_string())),
            }
        }
    }
}
