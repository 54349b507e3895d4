//! Why processing a virtio-scsi queue stopped and the device broke.

use crate::virtio::queue::QueueError;

/// A guest error the device cannot answer with a response code.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The rings or a chain are broken.
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// A chain's buffers could not be read or written.
    #[error("descriptor buffer access failed: {0}")]
    Buffer(#[from] std::io::Error),
    /// The device-writable part of a chain cannot hold the response.
    #[error("response buffer of {have} bytes, {need} needed")]
    ResponseTooSmall {
        /// Writable bytes in the chain.
        have: usize,
        /// Bytes of the response header.
        need: usize,
    },
}

impl ProcessError {
    /// A reader or writer over a chain could not be built.
    pub fn chain(e: virtio_queue::Error) -> Self {
        ProcessError::Queue(QueueError::Chain(e))
    }
}
