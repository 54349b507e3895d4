//! Vectored file I/O straight between a descriptor chain's buffers and a
//! host file (`preadv`/`pwritev` on guest memory), so that bulk data such
//! as a disk read is never zeroed, copied or allocated on the host.
//!
//! A chain is split by direction (the driver puts its readable buffers
//! first, then the device-writable ones, virtio 1.2 section 2.7.4.2); a
//! [`ChainBuffers`] is one direction's buffers after a skipped header, as
//! guest memory slices checked against guest RAM when they are collected.
//! The guest may change the memory under a transfer; the kernel copies
//! into or out of it like any other user memory, so nothing on the host
//! depends on what it holds.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use virtio_queue::DescriptorChain;
use vm_memory::{GuestMemoryBackend, VolatileSlice};

use super::GuestMemory;

/// Most iovecs handed to one `preadv`/`pwritev` (the kernel's `UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;

/// Which of a chain's buffers a [`ChainBuffers`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The driver's buffers the device reads (data-out).
    DeviceReadable,
    /// The buffers the device writes (data-in).
    DeviceWritable,
}

/// Why a chain's buffers could not be collected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainIoError {
    /// A descriptor points outside guest RAM.
    #[error("descriptor at {addr:#x} (+{len}) is outside guest memory")]
    OutsideMemory {
        /// Guest physical address of the descriptor.
        addr: u64,
        /// Its length in bytes.
        len: u32,
    },
    /// The buffers' lengths add up past what the host can address.
    #[error("descriptor lengths overflow")]
    Overflow,
}

/// One direction's buffers of a chain, after a skipped header.
pub struct ChainBuffers<'m> {
    slices: Vec<VolatileSlice<'m, ()>>,
    len: usize,
}

impl std::fmt::Debug for ChainBuffers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainBuffers")
            .field("slices", &self.slices.len())
            .field("len", &self.len)
            .finish()
    }
}

impl<'m> ChainBuffers<'m> {
    /// The `direction` buffers of `chain`, without their first `skip`
    /// bytes (a header handled elsewhere). Fewer than `skip` bytes leave
    /// no buffers.
    pub fn collect(
        chain: &DescriptorChain<&'m GuestMemory>,
        mem: &'m GuestMemory,
        direction: Direction,
        skip: usize,
    ) -> Result<Self, ChainIoError> {
        let mut to_skip = skip;
        let mut slices = Vec::new();
        let mut len = 0usize;
        let descriptors = chain
            .clone()
            .filter(|d| d.is_write_only() == (direction == Direction::DeviceWritable));
        for desc in descriptors {
            let outside = ChainIoError::OutsideMemory {
                addr: desc.addr().0,
                len: desc.len(),
            };
            let whole = desc.len() as usize;
            if to_skip >= whole {
                to_skip -= whole;
                continue;
            }
            let start = desc
                .addr()
                .0
                .checked_add(to_skip as u64)
                .ok_or(ChainIoError::Overflow)?;
            let count = whole - to_skip;
            to_skip = 0;
            len = len.checked_add(count).ok_or(ChainIoError::Overflow)?;
            for slice in mem.get_slices(vm_memory::GuestAddress(start), count) {
                slices.push(slice.map_err(|_| outside.clone())?);
            }
        }
        Ok(ChainBuffers { slices, len })
    }

    /// Bytes the buffers hold.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffers hold nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills the first `len` bytes of the buffers from `file` at `offset`.
    /// Reading past the end of the file is `UnexpectedEof`; asking for more
    /// than the buffers hold is `InvalidInput`, and nothing is read.
    pub fn read_from(&self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        self.transfer(len, |iovecs, done| {
            let at = file_offset(offset, done)?;
            // SAFETY: every iovec points into a guest memory slice that
            // `self` borrows (so the mapping outlives the call) and stays
            // within that slice's length; the kernel writes at most the
            // iovecs' total length.
            let n =
                unsafe { libc::preadv(file.as_raw_fd(), iovecs.as_ptr(), iovec_count(iovecs), at) };
            syscall_result(n)
        })
    }

    /// Writes the first `len` bytes of the buffers to `file` at `offset`.
    /// Asking for more than the buffers hold is `InvalidInput`, and nothing
    /// is written.
    pub fn write_to(&self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        self.transfer(len, |iovecs, done| {
            let at = file_offset(offset, done)?;
            // SAFETY: as in `read_from`; the kernel only reads the iovecs.
            let n = unsafe {
                libc::pwritev(file.as_raw_fd(), iovecs.as_ptr(), iovec_count(iovecs), at)
            };
            syscall_result(n)
        })
    }

    /// Runs `io` until `len` bytes have moved, resuming after short
    /// transfers and interruptions. `io` gets the iovecs of what is left and
    /// how much is done, and returns how many bytes it moved (0 is the end
    /// of the file).
    fn transfer(
        &self,
        len: usize,
        mut io: impl FnMut(&[libc::iovec], usize) -> io::Result<usize>,
    ) -> io::Result<()> {
        if len > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes asked of {} bytes of buffers", self.len),
            ));
        }
        let mut done = 0;
        while done < len {
            let (guards, iovecs) = self.iovecs(done, len - done);
            match io(&iovecs, done) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            drop(guards);
        }
        Ok(())
    }

    /// The iovecs of `len` bytes starting `from` bytes into the buffers (at
    /// most [`MAX_IOVECS`] of them), and the guards that keep their
    /// pointers valid.
    fn iovecs(
        &self,
        from: usize,
        len: usize,
    ) -> (
        Vec<vm_memory::volatile_memory::PtrGuardMut>,
        Vec<libc::iovec>,
    ) {
        let mut guards = Vec::new();
        let mut iovecs = Vec::new();
        let mut skip = from;
        let mut left = len;
        for slice in &self.slices {
            if left == 0 || iovecs.len() == MAX_IOVECS {
                break;
            }
            if skip >= slice.len() {
                skip -= slice.len();
                continue;
            }
            let take = (slice.len() - skip).min(left);
            let guard = slice.ptr_guard_mut();
            iovecs.push(libc::iovec {
                // `skip < slice.len()`, so the pointer stays in the slice.
                iov_base: guard.as_ptr().wrapping_add(skip).cast(),
                iov_len: take,
            });
            guards.push(guard);
            skip = 0;
            left -= take;
        }
        (guards, iovecs)
    }
}

fn file_offset(offset: u64, done: usize) -> io::Result<libc::off_t> {
    offset
        .checked_add(done as u64)
        .and_then(|o| libc::off_t::try_from(o).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file offset overflows"))
}

fn iovec_count(iovecs: &[libc::iovec]) -> libc::c_int {
    // At most MAX_IOVECS (1024) entries.
    iovecs.len() as libc::c_int
}

fn syscall_result(n: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};

    use virtio_queue::QueueOwnedT;
    use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;

    fn memory() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("memory")
    }

    /// A chain of `(addr, len, writable)` buffers, popped from a queue.
    fn with_chain<R>(
        mem: &GuestMemory,
        buffers: &[(u64, u32, bool)],
        f: impl FnOnce(DescriptorChain<&GuestMemory>) -> R,
    ) -> R {
        let vq = MockSplitQueue::new(mem, 16);
        let descs: Vec<RawDescriptor> = buffers
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| {
                let last = i + 1 == buffers.len();
                let flags = if w { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, i as u16 + 1))
            })
            .collect();
        vq.add_desc_chains(&descs, 0).expect("chain");
        let mut q: virtio_queue::Queue = vq.create_queue().expect("queue");
        let chain = q.iter(mem).expect("iter").next().expect("a chain");
        f(chain)
    }

    fn image(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(bytes).expect("write");
        f
    }

    #[test]
    fn reads_a_file_across_split_buffers_after_the_header() {
        let mem = memory();
        let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let file = image(&data);
        // A readable request, then a 16-byte response header and data-in
        // split 1000 + 2000 over two writable buffers.
        let bufs = [
            (0x1000, 64, false),
            (0x2000, 16 + 1000, true),
            (0x8000, 2000, true),
        ];
        with_chain(&mem, &bufs, |chain| {
            let b = ChainBuffers::collect(&chain, &mem, Direction::DeviceWritable, 16)
                .expect("buffers");
            assert_eq!(b.len(), 3000);
            b.read_from(&file, 0, 3000).expect("read");
        });
        let mut got = vec![0u8; 3000];
        mem.read_slice(&mut got[..1000], GuestAddress(0x2000 + 16))
            .expect("first");
        mem.read_slice(&mut got[1000..], GuestAddress(0x8000))
            .expect("second");
        assert_eq!(got, data);
        let mut header = [0xffu8; 16];
        mem.read_slice(&mut header, GuestAddress(0x2000))
            .expect("header");
        assert_eq!(header, [0u8; 16], "the skipped header is untouched");
    }

    #[test]
    fn writes_the_readable_buffers_to_a_file_at_an_offset() {
        let mem = memory();
        mem.write_slice(&[7u8; 100], GuestAddress(0x1000 + 8))
            .expect("fill");
        mem.write_slice(&[9u8; 50], GuestAddress(0x3000))
            .expect("fill");
        let bufs = [
            (0x1000, 108, false),
            (0x3000, 50, false),
            (0x5000, 16, true),
        ];
        let mut file = image(&[0u8; 400]);
        with_chain(&mem, &bufs, |chain| {
            let b =
                ChainBuffers::collect(&chain, &mem, Direction::DeviceReadable, 8).expect("buffers");
            assert_eq!(b.len(), 150);
            b.write_to(&file, 200, 150).expect("write");
        });
        let mut back = Vec::new();
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.read_to_end(&mut back).expect("read back");
        assert_eq!(&back[..200], &[0u8; 200][..]);
        assert_eq!(&back[200..300], &[7u8; 100][..]);
        assert_eq!(&back[300..350], &[9u8; 50][..]);
        assert_eq!(&back[350..], &[0u8; 50][..]);
    }

    #[test]
    fn asking_past_the_buffers_moves_nothing() {
        let mem = memory();
        let file = image(&[5u8; 4096]);
        with_chain(&mem, &[(0x1000, 100, true)], |chain| {
            let b =
                ChainBuffers::collect(&chain, &mem, Direction::DeviceWritable, 0).expect("buffers");
            let err = b.read_from(&file, 0, 101).expect_err("too long");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        });
        let mut got = [1u8; 100];
        mem.read_slice(&mut got, GuestAddress(0x1000))
            .expect("read");
        assert_eq!(got, [0u8; 100]);
    }

    #[test]
    fn reading_past_the_end_of_the_file_is_unexpected_eof() {
        let mem = memory();
        let file = image(&[5u8; 100]);
        with_chain(&mem, &[(0x1000, 512, true)], |chain| {
            let b =
                ChainBuffers::collect(&chain, &mem, Direction::DeviceWritable, 0).expect("buffers");
            let err = b.read_from(&file, 0, 512).expect_err("short file");
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn a_buffer_outside_guest_memory_is_refused() {
        let mem = memory();
        with_chain(
            &mem,
            &[(0x1000, 16, false), (0xff_f000, 0x2000, true)],
            |chain| {
                let err = ChainBuffers::collect(&chain, &mem, Direction::DeviceWritable, 0)
                    .expect_err("outside");
                assert!(matches!(err, ChainIoError::OutsideMemory { .. }), "{err}");
            },
        );
    }

    #[test]
    fn a_header_longer_than_the_buffers_leaves_none() {
        let mem = memory();
        with_chain(&mem, &[(0x1000, 16, true)], |chain| {
            let b = ChainBuffers::collect(&chain, &mem, Direction::DeviceWritable, 64)
                .expect("buffers");
            assert!(b.is_empty());
        });
    }
}
