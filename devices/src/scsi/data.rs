//! Where a command's bulk data phase happens: the seam between a LUN,
//! which knows the image and the byte range, and the transport, which
//! knows the initiator's buffers.
//!
//! READ and WRITE move their data between the image and the initiator's
//! buffers through [`DataBuffers`], so a transport that can reach the
//! buffers directly (virtio-scsi does, with vectored I/O on guest memory)
//! moves each byte once. Small data-in (INQUIRY, MODE SENSE, ...) still
//! comes back in [`super::Outcome::data`].

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The initiator's buffers for one command's bulk data.
pub trait DataBuffers {
    /// Fills the first `len` bytes of the data-in buffers from `file` at
    /// `offset`. Fails without writing past the buffers if they are
    /// shorter than `len`.
    fn read_in(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()>;

    /// Writes the first `len` bytes of the data-out buffers to `file` at
    /// `offset`. Fails if the buffers are shorter than `len`.
    fn write_out(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()>;
}

/// Data-phase buffers held in host memory: data-out given as a slice,
/// data-in collected into a vector. For callers without guest buffers
/// (tests, tools).
#[derive(Debug, Default)]
pub struct HeldData<'a> {
    /// The initiator's data-out.
    pub out: &'a [u8],
    /// What a READ put in the data-in buffers.
    pub input: Vec<u8>,
}

impl<'a> HeldData<'a> {
    /// Buffers with `out` as the data-out and no data-in yet.
    pub fn new(out: &'a [u8]) -> Self {
        HeldData {
            out,
            input: Vec::new(),
        }
    }
}

impl DataBuffers for HeldData<'_> {
    fn read_in(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        self.input.resize(len, 0);
        file.read_exact_at(&mut self.input, offset)
    }

    fn write_out(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        let data = self.out.get(..len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes of data-out asked, {} given", self.out.len()),
            )
        })?;
        file.write_all_at(data, offset)
    }
}
