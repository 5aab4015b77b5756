//! gRPC services, one per file; `serve` mounts them with the peer service.

pub mod admin;
pub mod cluster;
pub mod convert;
pub mod fs;
pub mod import;
pub mod kv;
pub mod object;
pub mod queue;
pub mod tokens;
