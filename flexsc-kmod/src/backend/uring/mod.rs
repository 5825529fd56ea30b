//! The `uring` backend (being written).

use std::io;

use crate::area::SyscallArea;
use crate::backend::{Backend, CoreBackend};
use crate::config::Config;
use crate::sync::Arc;

/// io_uring per posting core.
#[derive(Debug)]
pub struct UringBackend {}

impl UringBackend {
    /// Not yet.
    pub fn start(_area: Arc<SyscallArea>, _config: &Config) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "uring backend not built yet",
        ))
    }
}

impl Backend for UringBackend {
    fn name(&self) -> &'static str {
        "uring"
    }
    fn attach(&self, _core: usize) -> io::Result<Box<dyn CoreBackend>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "uring backend not built yet",
        ))
    }
    fn shutdown(&self) {}
}
