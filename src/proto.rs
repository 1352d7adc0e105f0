//! Code generated from `proto/` (see build.rs).

/// Node-to-node Raft transport and internal calls.
pub mod raft_v1 {
    tonic::include_proto!("hipache.raft.v1");
}

/// The admin API for programs.
pub mod admin_v1 {
    tonic::include_proto!("hipache.admin.v1");

    /// Encoded descriptors for gRPC server reflection (`grpcurl list`).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("admin_descriptor");
}
